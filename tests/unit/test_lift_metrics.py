"""Lift gauges from a sealed snapshot's outcome tallies, checked against a published table.

Outcomes go through the learner exactly as workers send them (copies included), are sealed into
a snapshot, and the metrics page's lines are parsed back. The expected interval is Newcombe
(1998), Table II, example (a): 56/70 against 48/80 gives 0.0524 to 0.3339 (method 10); the rates
are the counts themselves.
"""

from __future__ import annotations

import re

import pytest
from activation_data import rules

from engine.activation.lift_metrics import lift_lines
from engine.ops.metric_names import BY_NAME
from models.config import ModelConfig
from models.learner import Learner, encode_snapshot
from models.outcome_messages import OUTCOME_KIND, OUTCOME_SCHEMA, OutcomeMessage, encode_outcome
from models.registry import model_specs
from models.snapshots import decode_snapshot

DAY = 86_400.0
T0 = 1_767_225_600.0
KEY = b"k"
CONFIG = ModelConfig(specs=tuple(model_specs(("savings",), 5, 8, 5)), input_names=("a", "b"))

ACTIVATION = """\
  global_control_percent: 5
  actions:
    - name: winback
      channel: email
      experiment:
        name: offer
        holdout_percent: 50
        variants: {plain: 1}
"""


def messages(group: str, variant: str, n: int, converted: int, start: int) -> list[OutcomeMessage]:
    return [
        OutcomeMessage(
            schema=OUTCOME_SCHEMA,
            kind=OUTCOME_KIND,
            outcome_id=f"d{start + i}",
            action="winback",
            experiment="offer" if group != "global_control" else "",
            policy="ab",
            group=group,
            variant=variant,
            segment="risky",
            converted=i < converted,
            revenue=10.0 if i < converted else 0.0,
            due_ts=T0 + (i % 5) * 3600.0,
        )
        for i in range(n)
    ]


def gauges(lines: list[str]) -> dict[tuple[str, str], float]:
    found = {}
    for line in lines:
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match and not line.startswith("#"):
            found[(match[1], match[2] or "")] = float(match[3])
    return found


def test_the_gauges_of_a_sealed_snapshot_match_newcombes_table() -> None:
    treated = messages("treated", "plain", 70, 56, 0)
    control = messages("control", "", 80, 48, 100)
    held = messages("global_control", "", 40, 20, 200)
    learner = Learner(CONFIG, DAY, KEY)
    for m in treated + control + held + treated[:9]:  # copies are dropped by id
        learner.offer(encode_outcome(m))
    (_, snapshot), *_ = learner.seal_through(int(T0 // DAY))
    decoded = decode_snapshot(encode_snapshot(snapshot), KEY)
    got = gauges(lift_lines(decoded, rules(ACTIVATION)))
    arm = 'comparison="experiment",name="offer",segment="*",arm="plain"'
    assert got[("segflow_lift_snapshot_version", "")] == int(T0 // DAY)
    assert got[("segflow_lift_exposures", arm)] == 70
    assert got[("segflow_lift_control_exposures", arm)] == 80
    assert got[("segflow_lift_treated_rate", arm)] == pytest.approx(56 / 70)
    assert got[("segflow_lift_control_rate", arm)] == pytest.approx(48 / 80)
    assert got[("segflow_lift_absolute", arm)] == pytest.approx(0.2)
    assert got[("segflow_lift_absolute_low", arm)] == pytest.approx(0.0524, abs=5e-5)
    assert got[("segflow_lift_absolute_high", arm)] == pytest.approx(0.3339, abs=5e-5)
    assert got[("segflow_lift_incremental_revenue", arm)] == pytest.approx(560 - 70 * 480 / 80)
    # 70 treated against 80 control under a declared 50/50 split: no mismatch.
    assert got[("segflow_lift_sample_ratio_flagged", 'experiment="offer"')] == 0
    assert 0.001 < got[("segflow_lift_sample_ratio_p", 'experiment="offer"')] < 1
    # Every treated decision of the action against the global control group (20/40).
    held_arm = 'comparison="global_control",name="winback",segment="*",arm="treated"'
    assert got[("segflow_lift_control_rate", held_arm)] == pytest.approx(0.5)
    assert got[("segflow_lift_exposures", held_arm)] == 70
    # Every gauge is one engine/ops/metric_names.py documents, with its labels.
    for name, labels in got:
        assert name in BY_NAME, name
        assert {part.split("=")[0] for part in labels.split(",") if part} == set(BY_NAME[name].labels)


def test_before_any_sealed_outcome_only_the_version_is_shown() -> None:
    assert gauges(lift_lines(None, rules(ACTIVATION))) == {("segflow_lift_snapshot_version", ""): -1}
