"""Bandit decisions in the planner: arms drawn from the sealed snapshot's tallies, probabilities logged.

Expected values are worked out here by hand: the decision point is sha256 of the msgpack of
["segflow-bandit", decision id] read as a fraction (the documented formula), exploration gives
1/K to each arm, and epsilon-greedy's allocation with a floor f is f + (1 - K f)(eps/K + (1 - eps)
[greedy]). The snapshot a decision reads is chosen by its event time, and only that.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from activation_data import change, rules

from engine.activation.bandit_arms import BanditArms
from engine.activation.experiments.assignment import global_control, in_holdout
from engine.activation.ledger import ActionLedger
from engine.activation.planner import ActionPlanner
from engine.codecs import decode_msgpack
from engine.stream.batch_records import ACTION, TALLY
from features.event import Event
from models.outcome_messages import OutcomeTally, decode_outcome

DAY = 86_400.0
T0 = 1_767_614_400.0  # 2026-01-05T12:00Z

ACTIVATION = """\
  global_control_percent: 5
  actions:
    - name: winback
      channel: email
      attribution_days: 2
      experiment:
        name: offer
        holdout_percent: 10
        policy: epsilon_greedy
        bandit: {min_rewards: 20, floor: 0.01, epsilon: 0.1}
        variants: {plain: 1, discount: 1}
"""


def point(decision_id: str) -> float:
    digest = hashlib.sha256(msgpack.packb(["segflow-bandit", decision_id], use_bin_type=True)).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Snapshots:
    """Version k holds ``tallies[k]``; a moment reads the version of its day minus one."""

    def __init__(self, tallies: dict[int, list[OutcomeTally]]) -> None:
        self.tallies = tallies
        self.read: list[float] = []

    def __call__(self, moment: float) -> Any:
        self.read.append(moment)
        version = int(moment // DAY) - 1
        return SimpleNamespace(
            version=version, snapshot=SimpleNamespace(outcomes=self.tallies.get(version, []))
        )


def treated(variant: str, outcomes: int, conversions: int) -> OutcomeTally:
    return OutcomeTally("winback", "offer", "risky", "treated", variant, outcomes, conversions, 0.0)


def decide_all(planner: ActionPlanner, customers: list[str], ts: float) -> list[dict[str, Any]]:
    made = []
    for customer in customers:
        entries = planner.on_change(ActionLedger(), change(customer, ts))
        made += [decode_msgpack(e.payload) for e in entries if e.kind == ACTION]
    return made


CUSTOMERS = [f"c{i}" for i in range(2000)]


def test_while_exploring_every_arm_has_one_over_k_and_the_point_picks_it() -> None:
    rule_set = rules(ACTIVATION)
    experiment = rule_set.activation.actions["winback"].experiment
    assert experiment is not None
    snapshots = Snapshots({})  # no tallies yet: every arm below min_rewards
    planner = ActionPlanner(lambda: rule_set, lambda: 0.0, BanditArms(snapshots))
    made = decide_all(planner, CUSTOMERS, T0)
    assert len(made) == len(CUSTOMERS)
    for decision in made:
        cid = decision["customer_id"]
        if global_control(cid, 0.05, epoch="0"):
            assert decision["decision"] == "global_control" and decision["variant"] is None
        elif in_holdout(experiment, cid):
            assert (decision["decision"], decision["variant"]) == ("control", "control")
        else:
            expected = "plain" if point(decision["action_id"]) < 0.5 else "discount"
            assert (decision["decision"], decision["variant"]) == ("send", expected)
            assert decision["probability"] == pytest.approx(0.95 * 0.9 * 0.5, abs=1e-9)
            assert decision["policy"] == "epsilon_greedy"


def test_the_sealed_tallies_move_traffic_to_the_better_arm_by_event_time() -> None:
    rule_set = rules(ACTIVATION)
    day = int(T0 // DAY)
    # Version day-1 (read on day `day`): discount converts 30%, plain 5%; the version before it has
    # too few outcomes and still explores.
    snapshots = Snapshots(
        {day - 2: [treated("plain", 5, 1)], day - 1: [treated("plain", 40, 2), treated("discount", 40, 12)]}
    )
    planner = ActionPlanner(lambda: rule_set, lambda: 0.0, BanditArms(snapshots))
    floor, eps = 0.01, 0.1
    greedy = floor + (1 - 2 * floor) * (eps / 2 + 1 - eps)  # 0.941
    other = floor + (1 - 2 * floor) * (eps / 2)  # 0.059
    sent = [d for d in decide_all(planner, CUSTOMERS, T0) if d["decision"] == "send"]
    assert snapshots.read and all(int(m // DAY) == day for m in snapshots.read)
    for decision in sent:
        expected = "discount" if point(decision["action_id"]) >= other else "plain"
        assert decision["variant"] == expected
        share = greedy if expected == "discount" else other
        assert decision["probability"] == pytest.approx(0.95 * 0.9 * share, abs=1e-9)
    share = sum(d["variant"] == "discount" for d in sent) / len(sent)
    assert abs(share - greedy) < 4 * (greedy * (1 - greedy) / len(sent)) ** 0.5
    # A day earlier the decision reads the version with 5 outcomes: exploring, 1/2 each.
    earlier = [d for d in decide_all(planner, CUSTOMERS[:300], T0 - DAY) if d["decision"] == "send"]
    assert earlier and all(d["probability"] == pytest.approx(0.95 * 0.9 * 0.5, abs=1e-9) for d in earlier)


def test_outcomes_reach_the_learner_with_their_arm_and_group() -> None:
    rule_set = rules(ACTIVATION)
    planner = ActionPlanner(lambda: rule_set, lambda: 0.0, BanditArms(Snapshots({})))
    messages = []
    for customer in CUSTOMERS[:200]:
        ledger = ActionLedger()
        decisions = [decode_msgpack(e.payload) for e in planner.on_change(ledger, change(customer, T0))]
        buy = Event(f"p-{customer}", customer, "purchase", T0 + 3600, {"amount": 20.0})
        entries = planner.on_event(ledger, customer, buy) if customer.endswith("7") else []
        entries += planner.advance(ledger, customer, T0 + 3 * DAY)
        tallies = [decode_outcome(e.payload) for e in entries if e.kind == TALLY]
        assert len(tallies) == 1, customer  # one decision, one outcome, converted or not
        (decision,), (tally,) = decisions, tallies
        group = "treated" if decision["decision"] == "send" else decision["decision"]
        assert (tally.outcome_id, tally.group) == (decision["action_id"], group)
        assert tally.variant == (decision["variant"] if group == "treated" else "")
        assert tally.converted == customer.endswith("7")
        assert tally.due_ts == (T0 + 3600 if tally.converted else T0 + 2 * DAY)
        assert tally.revenue == (20.0 if tally.converted else 0.0)
        messages.append(tally)
    assert {m.group for m in messages} == {"treated", "control", "global_control"}
