"""``segflow lift``'s table from outcome records: rates by hand, truth covered, SRM, dedup."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.activation.experiments.assignment import ExperimentSpec, Variant
from engine.activation.lift_table import ALL_SEGMENTS, lift_table
from engine.activation.outcomes import Outcome
from engine.cli.main import cli

SPEC = ExperimentSpec("offer", (Variant("plain", 1.0), Variant("discount", 1.0)), holdout_percent=20)
TRUE_RATES = {"control": 0.05, "plain": 0.05, "discount": 0.09}
SHARES = {"control": 0.2, "plain": 0.4, "discount": 0.4}


def outcome(i: int, group: str, variant: str | None, converted: bool, segment: str = "lapsing") -> Outcome:
    return Outcome(
        outcome_id=f"d{i}",
        customer_id=f"c{i}",
        action="winback",
        channel="email",
        group=group,
        experiment="offer",
        variant=variant,
        probability=0.4,
        policy="ab",
        family="lifecycle",
        segment=segment,
        window_ms=(0, 1),
        converted=converted,
        revenue=20.0 if converted else 0.0,
        outcome_ts_ms=1,
        reward="purchase",
    )


def simulated(n: int, seed: int, drop_control: float = 0.0) -> list[Outcome]:
    rng = random.Random(seed)
    found = []
    for i in range(n):
        arm = rng.choices(list(SHARES), weights=list(SHARES.values()))[0]
        if arm == "control" and rng.random() < drop_control:
            continue
        converted = rng.random() < TRUE_RATES[arm]
        found.append(outcome(i, "control" if arm == "control" else "treated", arm, converted))
    return found


def test_rates_and_lift_are_the_counts_and_the_interval_covers_the_truth() -> None:
    records = simulated(20_000, seed=3)
    table = lift_table(records, {"offer": SPEC})
    rows = {r.arm: r for r in table.rows if r.segment == ALL_SEGMENTS}
    control = [o for o in records if o.group == "control"]
    control_rate = sum(o.converted for o in control) / len(control)
    for arm in ("plain", "discount"):
        mine = [o for o in records if o.variant == arm]
        rate = sum(o.converted for o in mine) / len(mine)
        lift = rows[arm].lift
        assert (lift.exposures, lift.rate, lift.control_rate) == (len(mine), rate, control_rate)
        assert lift.absolute_lift == pytest.approx(rate - control_rate)
        assert lift.interval.covers(TRUE_RATES[arm] - TRUE_RATES["control"])
        expected_revenue = 20.0 * sum(o.converted for o in mine) - len(mine) * 20.0 * control_rate
        assert lift.incremental_revenue == pytest.approx(expected_revenue)
    assert not table.ratio_checks["offer"].flagged


def test_a_sample_ratio_mismatch_is_flagged() -> None:
    table = lift_table(simulated(20_000, seed=3, drop_control=0.2), {"offer": SPEC})
    assert table.ratio_checks["offer"].flagged


def test_repeated_outcomes_change_nothing() -> None:
    records = simulated(5_000, seed=5)
    once = lift_table(records, {"offer": SPEC})
    twice = lift_table(records + records[:1_000], {"offer": SPEC})
    assert twice.duplicates == 1_000 and once.duplicates == 0
    assert [r.lift for r in twice.rows] == [r.lift for r in once.rows]


def test_the_cli_reads_outcome_lines_and_reports_errors_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.jsonl"
    path.write_text("".join(json.dumps(o.to_wire()) + "\n" for o in simulated(2_000, seed=1)))
    result = CliRunner().invoke(cli, ["lift", "--file", str(path), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["outcomes"] == 2_000 and {r["arm"] for r in document["rows"]} == {"plain", "discount"}
    path.write_text('{"v": 1, "outcome_id": "x"}\n')
    result = CliRunner().invoke(cli, ["lift", "--file", str(path)])
    assert result.exit_code != 0 and f"{path}:1: outcome lacks" in result.output


def test_a_bandits_ratio_check_reads_only_the_holdout_split() -> None:
    # A bandit sent 90% of the treated decisions to one arm: against the declared 40/40 weights
    # that is a mismatch, but the only fixed split of a bandit is control (20%) vs treated (80%).
    rng = random.Random(5)
    records = []
    for i in range(10_000):
        if rng.random() < 0.2:
            records.append(outcome(i, "control", "control", rng.random() < 0.05))
        else:
            arm = "discount" if rng.random() < 0.9 else "plain"
            records.append(outcome(i, "treated", arm, rng.random() < TRUE_RATES[arm]))
    assert lift_table(records, {"offer": SPEC}).ratio_checks["offer"].flagged
    check = lift_table(records, {"offer": SPEC}, bandits={"offer"}).ratio_checks["offer"]
    assert not check.flagged and check.p_value > 0.001
    assert check.expected == pytest.approx({"control": 0.2 * len(records), "treated": 0.8 * len(records)})
