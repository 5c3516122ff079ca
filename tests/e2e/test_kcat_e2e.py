"""End to end on the real broker and Redis, driven by kcat (a Kafka client none of us wrote).

kcat produces JSON events (schema v1 accepts JSON on the wire) to the events topic of a real
`segflow worker` process, then reads the segment changes and dead letters back. The expected
transitions are worked out by hand from the input below and the shipped rules
(engine/rules/default_rules.yaml), not by the code under test.

The lifecycle family, first match wins (no dwell, no hysteresis):

    new      tenure_days < 30
    active   days_since_last_activity <= 14      (activity = login or purchase; not page_view)
    lapsing  days_since_last_activity <= 30
    churned  days_since_last_activity > 30, or no activity at all

Besides the events, time moves customers on: every second the worker "ticks" the customers of
a partition whose next threshold crossing (in event time) is at or before the partition's
watermark = newest event time of the partition - 3 days of allowed lateness. A crossing of
``x > 30`` (or ``x < 30`` turning false) falls due just after the threshold (1 ms), so a tick
change has event time ``T0 + day * DAY_MS + 1 or 2 ms`` and a ``cause`` {tick, partition,
watermark}.

To make which ticks happen deterministic:

* every record goes to partition 0 (kcat -p 0), so one watermark moves every customer on (with
  key partitioning, which customers share a partition would decide which ticks happen);
* the events come in two phases. In phase A, every customer's events precede the one event
  (bob, day 40) that moves the watermark past their crossings (before it the watermark is at
  most day 10 - 3 = 7, and nobody's lifecycle segment can change by time before day 30: tenure
  is under 30 days until then). The test then waits for phase A's tick changes before phase B,
  so a phase B event never races a tick of phase A.
* every event but the too-late one is at or above its partition's watermark when it arrives,
  so nothing depends on how an event below the watermark of its partition is treated.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from engine.settings import Settings
from engine.topics import ensure_topics
from engine.worker_process import free_port, settings_env, start_worker, stop_worker

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PARTITION = 0
RULES_VERSION = "segments-2026.12.3"
MODELS = {
    "churn",
    "clv",
    *(f"propensity_{p}" for p in ("mortgage", "credit_card", "savings", "current_account", "insurance")),
}
LIFECYCLE_KEY_FEATURES = ("tenure_days", "days_since_last_activity")
# The condition of each lifecycle segment's `when` that a change into it is explained by.
ENTERED_BECAUSE = {
    "new": ("tenure_days", "<", 30),
    "active": ("days_since_last_activity", "<=", 14),
    "lapsing": ("days_since_last_activity", "<=", 30),
    "churned": ("days_since_last_activity", ">", 30),
}


def ev(eid: str, customer: str, kind: str, day: float, **attrs: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": eid,
        "customer_id": customer,
        "type": kind,
        "ts": T0 + int(day * DAY_MS),
    }
    if kind == "purchase":
        attrs = {"currency": "EUR", "product": "savings", **attrs}
    if attrs:
        event["attrs"] = attrs
    return event


def at_day(day: int) -> float:
    """Event time of the start of ``day`` in epoch seconds (as the store keeps it)."""
    return (T0 + day * DAY_MS) / 1000


def tick(day: int) -> str:
    """The cause of a change that time alone made, just after day ``day``'s threshold."""
    return f"tick@day{day}"


# Phase A. Until bob's day-40 login the newest event time is day 10 (watermark day 7): ticks
# may re-score customers, but no lifecycle segment changes (everyone is new until day 30).
PHASE_A = [
    ev("a1", "alice", "login", 0),  # alice: tenure 0 -> new
    ev("b1", "bob", "purchase", 0, amount=10),  # bob: -> new
    ev("a2", "alice", "purchase", 1, amount=20),  # alice: tenure 1, still new
    ev("c1", "carol", "login", 0),  # carol: -> new
    ev("a3", "alice", "purchase", 2, amount=5),  # alice: tenure 2, still new; last activity day 2
    ev("d1", "dave", "purchase", 0, amount=7.5),  # dave: -> new
    ev("d2", "dave", "purchase", 10, amount=7.5),  # dave: tenure 10, still new; last activity day 10
    # bob: before his day-40 login he is moved on to day 40 as a tick would have: just after day
    #   30 his tenure is 30 and his day-0 purchase over 30 days ago -> churned; then the login:
    #   activity 0 days ago -> active. The watermark becomes day 37:
    #   alice (last activity day 2): at day 30 tenure reaches 30 with activity 28 days ago
    #     -> lapsing; at day 32 activity passes 30 days -> churned.
    #   carol (login day 0): just after day 30 tenure is 30 and activity over 30 days ago
    #     -> churned.
    #   dave (last purchase day 10): at day 30 tenure 30, activity 20 days ago -> lapsing; his
    #     next crossing (activity 30 days ago) is day 40, past the watermark.
    #   bob was judged at day 40 by his own event: nothing of his is due before day 54.
    ev("b2", "bob", "login", 40),
]
# Phase B, sent once phase A's ticks are out.
PHASE_B = [
    # carol: tenure 38, but a page view is no activity: still 38 days -> still churned. (Day 38,
    # not earlier: the watermark is day 37 here.)
    ev("c2", "carol", "page_view", 38, page="/home"),
    ev("b3", "bob", "purchase", 41, amount=3),  # bob: activity 0 days ago, still active
    # alice: tenure 70, activity 0 days ago -> active. The watermark becomes day 67:
    #   dave: at day 40 activity passes 30 days -> churned.
    #   bob (last activity day 41): at day 55 activity passes 14 days -> lapsing; day 71 (churned)
    #     is past the watermark.
    #   carol stays churned; alice was judged at day 70 by her own event.
    ev("a4", "alice", "login", 70),
    ev("a5", "alice", "purchase", 60, amount=1),  # 10 days behind day 70: too late, DLQ only
]
# (from, to, cause, tenure_days, days_since_last_activity), per customer in order.
EXPECTED_A = {
    "alice": [
        (None, "new", "a1", 0.0, 0.0),
        ("new", "lapsing", tick(30), 30.0, 28.0),
        ("lapsing", "churned", tick(32), 32.0, 30.0),
    ],
    "bob": [
        (None, "new", "b1", 0.0, 0.0),
        ("new", "churned", tick(30), 30.0, 30.0),
        ("churned", "active", "b2", 40.0, 0.0),
    ],
    "carol": [(None, "new", "c1", 0.0, 0.0), ("new", "churned", tick(30), 30.0, 30.0)],
    "dave": [(None, "new", "d1", 0.0, 0.0), ("new", "lapsing", tick(30), 30.0, 20.0)],
}
EXPECTED_B = {
    "alice": [("churned", "active", "a4", 70.0, 0.0)],
    "bob": [("active", "lapsing", tick(55), 55.0, 14.0)],
    "dave": [("lapsing", "churned", tick(40), 40.0, 30.0)],
}
MALFORMED = [
    ("alice", "{this is not json"),
    ("erin", json.dumps({"event_id": "m2", "type": "login", "ts": T0})),  # no customer_id
    ("erin", json.dumps(ev("m3", "erin", "purchase", 1, amount="ten"))),  # wrong type
]
EVENT_TS = {e["event_id"]: e["ts"] for e in PHASE_A + PHASE_B}


def kcat_produce(settings: Settings, lines: list[tuple[str, str]]) -> None:
    body = "".join(f"{key}\t{value}\n" for key, value in lines)
    subprocess.run(
        # Idempotence keeps the partition in send order even when a just-created topic makes
        # the first sends fail and retry (without it a CI run saw alice's day-70 login land
        # before her day-2 purchase, which then was too late).
        [
            "kcat",
            "-P",
            "-X",
            "enable.idempotence=true",
            "-b",
            settings.kafka_bootstrap,
            "-t",
            settings.events_topic,
            "-p",
            str(PARTITION),
            "-K",
            "\t",
        ],
        input=body.encode(),
        check=True,
        timeout=60,
    )


def kcat_read(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """All records of ``topic``; kcat frames each payload as '<size>:<bytes>' (binary-safe)."""
    out = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            settings.kafka_bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%S:%s",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    records, position = [], 0
    while position < len(out):
        colon = out.index(b":", position)
        size = int(out[position:colon])
        records.append(msgpack.unpackb(out[colon + 1 : colon + 1 + size]))
        position = colon + 1 + size
    return records


def lines_of(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["customer_id"], json.dumps(e)) for e in events]


def cause_of(change: dict[str, Any]) -> str:
    """The causing event's id, or tick@day<N> for a change time made just after day N."""
    cause = change["cause"]
    if "event_id" in cause:
        assert set(cause) == {"event_id", "partition", "offset"}
        assert change["event_ts"] == EVENT_TS[cause["event_id"]]
        return str(cause["event_id"])
    assert set(cause) == {"tick", "partition", "watermark"}
    # A tick is judged at the moment it fell due, which the watermark had reached.
    assert change["event_ts"] == cause["tick"] <= cause["watermark"]
    day, rest = divmod(cause["tick"] - T0, DAY_MS)
    assert 0 < rest <= 2, f"a tick should fall due just after a whole day, got {cause}"
    return tick(day)


def lifecycle_rows(changes: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    got: dict[str, list[tuple[Any, ...]]] = {}
    for change in changes:
        if change["family"] != "lifecycle":
            continue
        features = change["features"]
        assert set(features) == set(LIFECYCLE_KEY_FEATURES)
        row = (change["from"], change["to"], cause_of(change), *(features[f] for f in LIFECYCLE_KEY_FEATURES))
        got.setdefault(change["customer_id"], []).append(row)
    return got


def joined(*phases: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for phase in phases:
        for customer, rows in phase.items():
            out.setdefault(customer, []).extend(rows)
    return out


def count(expected: dict[str, list[tuple[Any, ...]]]) -> int:
    return sum(len(rows) for rows in expected.values())


def wait_for(
    settings: Settings,
    worker: subprocess.Popen[bytes],
    log: Path,
    changes: int,
    letters: int,
    timeout: float = 120,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read the output topics until ``changes`` lifecycle changes and ``letters`` dead letters are
    out, then once more after a few ticks (so a change too many would be seen as well)."""
    deadline = time.monotonic() + timeout
    while True:
        assert worker.poll() is None, f"worker exited; its log ends:\n{log.read_text()[-3000:]}"
        got = kcat_read(settings, settings.changes_topic)
        dead = kcat_read(settings, settings.dlq_topic)
        done = sum(1 for c in got if c["family"] == "lifecycle") >= changes and len(dead) >= letters
        if done or time.monotonic() > deadline:
            break
        time.sleep(1)
    time.sleep(3)
    return kcat_read(settings, settings.changes_topic), kcat_read(settings, settings.dlq_topic)


def test_kcat_events_in_segment_changes_and_dead_letters_out(isolated_settings: Settings) -> None:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed (apt-get install kcat); .ci/run installs it")
    # A handful of labels: with the default readiness guard no model would reach the rules or
    # `explain` (tests/integration/test_readiness_gate.py covers that); here a model that learned
    # a label is ready, so the scores' path through change events and explain is checked.
    ready_at_once = {"model_ready_min_labels": 0, "model_ready_require_auc": False}
    settings = isolated_settings.model_copy(update={"web_port": free_port(), **ready_at_once})
    asyncio.run(ensure_topics(settings))
    log = settings.stack_dir / "test-logs" / f"{settings.app_id}.log"
    worker = start_worker(settings, log)
    try:
        kcat_produce(settings, lines_of(PHASE_A[:3]) + MALFORMED + lines_of(PHASE_A[3:]))
        changes, letters = wait_for(settings, worker, log, count(EXPECTED_A), len(MALFORMED))
        assert lifecycle_rows(changes) == EXPECTED_A
        assert len(letters) == len(MALFORMED)

        kcat_produce(settings, lines_of(PHASE_B))
        everything = joined(EXPECTED_A, EXPECTED_B)
        changes, letters = wait_for(settings, worker, log, count(everything), len(MALFORMED) + 1)
        explained = json.loads(
            subprocess.run(
                [sys.executable, "-m", "engine", "explain", "alice", "--json"],
                env={**os.environ, **settings_env(settings)},
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout
        )
    finally:
        stop_worker(worker)

    assert lifecycle_rows(changes) == everything
    for change in changes:
        assert change["v"] == 2 and change["rules_version"] == RULES_VERSION
        # The population snapshot of the day before the watermark's day, as a UTC date.
        watermark_day = (change["event_ts"] - 3 * 86_400_000) // 86_400_000
        expected_day = time.strftime("%Y-%m-%d", time.gmtime((watermark_day - 1) * 86_400))
        assert change["population_version"] == expected_day
        assert change["cause"]["partition"] == PARTITION
        # Only models that learned a label have scores. The first labels (predictions of day 0,
        # 30-day horizon) are due on day 30, in the snapshot of day 30, which a decision reads
        # from day 34 on; clv's horizon (90 days) is beyond the stream.
        assert set(change["scores"]) <= MODELS - {"clv"}
        if change["event_ts"] < T0 + 34 * 86_400_000:
            assert change["scores"] == {}
        model_day = (change["event_ts"] - 3 * 86_400_000) // 86_400_000 - 1
        assert change["model_version"] == time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(model_day * 86_400))
        if change["family"] != "lifecycle":
            continue
        assert change["label"] == change["to"]  # lifecycle segments have no label texts
        reason = change["reason"]
        assert reason["rule"] == f"lifecycle.{change['to']}"
        assert reason["text"].startswith(f"lifecycle={change['to']} because")
        name, op, threshold = ENTERED_BECAUSE[change["to"]]
        [condition] = reason["conditions"]
        assert (condition["name"], condition["op"], condition["threshold"]) == (name, op, threshold)
        assert condition["value"] == pytest.approx(change["features"][name], abs=1e-6)
    assert len({c["change_id"] for c in changes}) == len(changes)
    # No customer reported a balance, a ticket or a call: no next-best action ever applies.
    assert not [c for c in changes if c["family"] == "next_best_action"]

    reasons = sorted(letter["reason"] for letter in letters)
    assert len(reasons) == 4
    assert any(r.startswith("too late: 10.000 days behind") for r in reasons)
    assert any(r.startswith("bad JSON") for r in reasons)
    assert any("missing customer_id" in r for r in reasons)
    assert any("attrs.amount of purchase must be a number" in r for r in reasons)
    assert {letter["raw"] for letter in letters} == {value.encode() for _, value in MALFORMED} | {
        json.dumps(PHASE_B[-1]).encode()
    }
    [late] = [letter for letter in letters if letter["reason"].startswith("too late")]

    # `segflow explain` shows what the store holds, worked out by hand from alice's events:
    # login day 0, purchases of 20 and 5 on days 1 and 2, login day 70 (judged then), and the
    # day-60 purchase dropped as too late.
    assert explained["customer_id"] == "alice"
    assert explained["as_of"] == "2026-03-12T00:00:00Z"  # day 70
    features = explained["features"]
    assert features["frequency"] == 2 and features["monetary"] == 25.0
    assert features["recency_days"] == 68.0 and features["tenure_days"] == 70.0
    assert features["days_since_last_activity"] == 0.0 and features["days_since_last_login"] == 0.0
    assert features["logins_30d"] == 1 and features["orders_90d"] == 2  # days 41..70; days -19..70
    assert features["total_balance"] == 0.0
    assert features["late_events_dropped"] == 1
    assert set(explained["scores"]) == MODELS - {"clv"}  # clv learned nothing yet: 90-day horizon

    segments = explained["segments"]
    assert set(segments) == {"rfm", "lifecycle", "churn_risk", "next_best_action"}
    lifecycle = segments["lifecycle"]
    assert lifecycle["segment"] == lifecycle["label"] == "active"
    assert lifecycle["since"] == at_day(70)  # her day-70 login put her there
    # What keeps her active: the exit (not the `when`) is false because of this fact.
    assert lifecycle["reason"]["rule"] == "lifecycle.active"
    assert lifecycle["reason"]["text"] == "lifecycle=active because days_since_last_activity=0 <= 14"
    assert segments["next_best_action"]["segment"] is None
    assert segments["next_best_action"]["reason"]["text"] == "in no segment of this family"

    # Predictions (at most one pending per model, at most one per 7 days): all seven models
    # predicted at her first event (day 0). Her day-1 purchase answered churn (active again:
    # negative) and propensity_savings (bought savings: positive); the watermark (day 37)
    # passed day 30, resolving the other propensities as negatives. On day 70 (more than 7 days
    # after day 0) every model without a pending prediction predicted again, due 30 days later;
    # clv (90 days) still waits for day 90.
    pending = {name: (row["made"], row["due"]) for name, row in explained["pending_predictions"].items()}
    assert pending == {"clv": (at_day(0), at_day(90))} | {
        name: (at_day(70), at_day(100)) for name in MODELS - {"clv"}
    }
    # Her last record was the too-late purchase: its offset is applied (it changed a counter).
    assert explained["applied_offsets"] == {str(PARTITION): late["offset"]}
    assert explained["pending_outbox"] == 0
