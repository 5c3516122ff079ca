"""``segflow import transactions`` on the real stack: a classic 1990s file, RFM worked out by hand.

A ``CustomerID,PurchaseDate,OrderTotal`` file (10 customers, 27 purchases, 1997-01-10..1998-06-15,
dates ``%d/%m/%Y``) is imported with the real command, and one real worker process (the shipped
rules, ``engine/rules/default_rules.yaml``) segments the customers. Their final RFM segments must
be the ones worked out below by hand; and producing the same purchases as hand-written JSON
lines (``segflow produce``'s path) must give the same feature states and memberships.

Why the hand computation is exact (README: "RFM quintiles", "By time alone"):

* One partition, idle advance off (an hour): the watermark is the newest event time minus the
  lateness (3 days), nothing else. The last purchase is C03's on 1998-06-15 (F), so time stops at
  W = 1998-06-12. Every other purchase is on or before 1998-04-30, more than 40 days before F.
* A customer is judged again by time alone at least every 7 days (``score_churn`` is rescored
  every SEGFLOW_RESCORE_DAYS, and the shipped rules read it), so everyone but C03 was last judged
  at some T in (W - 7 days, W]. Such a T reads the population snapshot of day(T - 3 days) - 1,
  on or after 1998-05-31; the population of every such day was recorded when F's purchase moved
  the watermark past it, before F's purchase was applied. So every final decision reads the
  same population: the 10 customers with every purchase but F's (C03 counts with 1 order, 60).
  C03 is judged at F itself, against that same population.
* Quintiles of 10 customers (``engine.snapshots.cuts``): the cuts are the values of 0-based rank
  1, 3, 5 and 7 in ascending order, and a value's quintile is 1 + (cuts below it). With 10
  distinct values that is 1 + rank // 2. R ranks the day of the last purchase (later is better);
  all last-purchase days are 15+ days apart, so the R quintile of a customer is that rank's, at
  any moment of the final window (R cuts slide by less than a day).

Population (last purchase, orders, revenue in whole units) and the quintiles:

=====  ==========  ======  =======  ==============  =====  ======  =====
id     last        orders  revenue  R (rank)        F      M       recency at W (days)
=====  ==========  ======  =======  ==============  =====  ======  =====
C01    1997-05-20  2       75       1 (0)           3      3       388
C02    1997-11-10  6       300      1 (1)           5      4       214
C03    1998-01-05  1       60       2 (2)           1      2       (judged at F)
C04    1998-01-20  4       520      2 (3)           4      5       143
C05    1998-02-10  2       90       3 (4)           3      3       122
C06    1998-02-25  1       25       3 (5)           1      1       107
C07    1998-03-15  1       45       4 (6)           1      2       89
C08    1998-03-30  3       180      4 (7)           4      4       74
C09    1998-04-15  1       20       5 (8)           1      1       58
C10    1998-04-30  5       800      5 (9)           5      5       43
=====  ==========  ======  =======  ==============  =====  ======  =====

F: orders sorted 1,1,1,1,2,2,3,4,5,6: cuts (1, 1, 2, 4), so 1 -> 1, 2 -> 3, 3 -> 4, 4 -> 4, 5 and 6 -> 5.
M: revenue sorted 20 (C09's 20.99, floored), 25, 45, 60, 75, 90, 180, 300, 520, 800: cuts
(25, 60, 90, 300), so 1 + rank // 2.

The shipped rfm family, first match wins, in the window's recencies (none within 7 days of 180
or 365):

* C01: recency > 365 -> Lost.                          C02: 180 < recency -> Hibernating.
* C04: R2, F4 -> At Risk (r <= 2 and 3 <= f <= 4).       C05: R3, F3 -> Need Attention.
* C06: R3, F1 -> About to Sleep.                        C07: R4, F1 -> Promising.
* C08: R4, F4 -> Loyal Customers (r >= 3, f >= 4).       C09: R5, F1 -> New Customers.
* C10: R5, F5, M5 -> Champions.
* C03 at F: recency 0 -> R5 (every cut is a recency above 0); 2 orders -> F3 (2 > 1, 1);
  revenue 310 > 300 -> M5: R5 with F3 -> Potential Loyalists.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from determinism_outcome import Outcome
from determinism_runs import namespaced_runs, replay, worker_run

from engine.settings import Settings
from engine.topics import ensure_topics
from engine.worker_process import settings_env

pytestmark = pytest.mark.integration

# (customer, purchase date dd/mm/yyyy, amount): the file's rows, not in date order.
PURCHASES = [
    ("C01", "10/01/1997", "40.00"),
    ("C02", "15/01/1997", "50"),
    ("C04", "05/02/1997", "100"),
    ("C10", "01/03/1997", "150"),
    ("C02", "20/03/1997", "50"),
    ("C02", "10/05/1997", "50"),
    ("C01", "20/05/1997", "35.00"),
    ("C04", "10/06/1997", "120"),
    ("C02", "01/07/1997", "50"),
    ("C10", "01/08/1997", "150"),
    ("C02", "15/09/1997", "50"),
    ("C04", "01/10/1997", "150"),
    ("C02", "10/11/1997", "50"),
    ("C08", "10/11/1997", "60"),
    ("C05", "01/12/1997", "45.50"),
    ("C10", "01/12/1997", "200"),
    ("C03", "05/01/1998", "60.00"),
    ("C04", "20/01/1998", "150"),
    ("C05", "10/02/1998", "44.50"),
    ("C08", "20/02/1998", "60"),
    ("C06", "25/02/1998", "25.00"),
    ("C10", "01/03/1998", "150"),
    ("C07", "15/03/1998", "45"),
    ("C08", "30/03/1998", "60"),
    ("C09", "15/04/1998", "20.99"),
    ("C10", "30/04/1998", "150"),
    ("C03", "15/06/1998", "250.00"),
]
CUSTOMERS = sorted({c for c, _, _ in PURCHASES})
MODEL_PERIOD_SECONDS = 365 * 86_400.0
EXPECTED_RFM = {
    "C01": "Lost",
    "C02": "Hibernating",
    "C03": "Potential Loyalists",
    "C04": "At Risk",
    "C05": "Need Attention",
    "C06": "About to Sleep",
    "C07": "Promising",
    "C08": "Loyal Customers",
    "C09": "New Customers",
    "C10": "Champions",
}


@pytest.fixture(scope="module")
def classic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("import") / "transactions.csv"
    rows = "".join(f"{c},{d},{a}\n" for c, d, a in sorted(PURCHASES, key=lambda p: p[0]))
    path.write_text("CustomerID,PurchaseDate,OrderTotal\n" + rows)
    return path


@pytest.fixture(scope="module")
def same_as_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same purchases written by hand as schema-v1 JSON lines, in event-time order."""
    events = []
    for n, (customer, day, amount) in enumerate(PURCHASES):
        moment = datetime.strptime(day, "%d/%m/%Y").replace(tzinfo=UTC)
        number = float(amount) if "." in amount else int(amount)
        attrs = {"amount": number, "currency": "EUR", "product": "unspecified"}
        events.append(
            {"event_id": f"s-{n}", "customer_id": customer, "type": "purchase", "ts": moment, "attrs": attrs}
        )
    events.sort(key=lambda e: e["ts"])  # stable: the file's order among equal times, as the import
    path = tmp_path_factory.mktemp("stream") / "events.jsonl"
    lines = [json.dumps({**e, "ts": e["ts"].strftime("%Y-%m-%dT%H:%M:%SZ")}) for e in events]
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def run_settings(stack_settings: Settings) -> Iterator[Callable[[str], Settings]]:
    """One partition, no idle advance, a model period of a year; the runs' topics and keys go after.

    In a replay each model period costs worker -> learner round trips (README: "What waits on
    what"): these 520 days took ~3 minutes with daily periods, ~25 s with 30-day ones and ~6 s
    with yearly ones. The RFM segments read no model score.
    """
    update = {
        "events_partitions": 1,
        "changes_partitions": 1,
        "idle_advance_seconds": 3600.0,
        "model_period_seconds": MODEL_PERIOD_SECONDS,
    }
    yield from namespaced_runs(stack_settings, "imp", update)


def import_with_the_cli(settings: Settings, path: Path) -> int:
    """``segflow import transactions`` in a child process with the run's settings."""
    asyncio.run(ensure_topics(settings))
    done = subprocess.run(
        [sys.executable, "-m", "engine", "import", "transactions", str(path), "--date-format", "%d/%m/%Y"],
        env={**_plain_env(), **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"{path}: 27 rows, 27 purchases of 10 customers, 1997-01-10..1998-06-15\n" in done.stdout
    assert "Traceback" not in done.stderr and "producing" in done.stderr  # the progress bar
    return int(done.stdout.split("produced ")[1].split()[0])


def _plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}


@pytest.fixture(scope="module")
def imported(
    run_settings: Callable[[str], Settings], classic_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    logs = tmp_path_factory.mktemp("imported")
    return worker_run(run_settings("csv"), classic_csv, CUSTOMERS, logs, publish=import_with_the_cli)


def test_the_imported_file_gives_the_rfm_segments_worked_out_by_hand(imported: Outcome) -> None:
    assert imported.notes["segflow_events_applied_total"] == len(PURCHASES), imported.notes
    assert imported.notes["segflow_events_dead_lettered_total"] == 0, imported.notes
    rfm = {cid: members["rfm"][0] for cid, members in imported.memberships.items()}
    assert rfm == EXPECTED_RFM
    c03 = imported.states["C03"]
    assert c03 is not None and (c03.orders, c03.revenue_minor) == (2, 31_000)


def test_importing_equals_streaming_the_same_events(
    imported: Outcome,
    run_settings: Callable[[str], Settings],
    same_as_jsonl: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    streamed = worker_run(run_settings("jsonl"), same_as_jsonl, CUSTOMERS, tmp_path_factory.mktemp("jsonl"))
    assert streamed.states == imported.states
    assert streamed.memberships == imported.memberships


def test_a_stream_from_1970_01_01_is_segmented(
    run_settings: Callable[[str], Settings], tmp_path: Path
) -> None:
    """The lowest event times (RFC 3339 from 1970-01-01, epoch ms from 1970-02-18) go through the
    pipeline (days and model periods near 0 and below it), replayed without Kafka."""
    day_ms = 86_400_000
    events = [
        {"event_id": "a0", "customer_id": "a", "type": "purchase", "ts": "1970-01-01T00:00:00Z"},
        {"event_id": "b0", "customer_id": "b", "type": "purchase", "ts": "1970-01-03T00:00:00Z"},
    ]
    events += [
        {"event_id": f"x{i}", "customer_id": "ab"[i % 2], "type": "purchase", "ts": (49 + 9 * i) * day_ms}
        for i in range(6)
    ]
    for event in events:
        event["attrs"] = {"amount": 10, "currency": "EUR", "product": "p"}
    path = tmp_path / "1970.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    outcome = asyncio.run(replay(run_settings("r1970"), path, ["a", "b"]))
    assert outcome.notes["applied"] == len(events)
    assert {cid: state.orders for cid, state in outcome.states.items() if state} == {"a": 4, "b": 4}
    assert all("rfm" in members for members in outcome.memberships.values()), outcome.memberships
