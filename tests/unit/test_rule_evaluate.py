"""Family resolution with priority, hysteresis and dwell; reasons and labels; next_due."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from engine.rules.evaluate import (
    FamilyDecision,
    Membership,
    changed_decisions,
    evaluate_family,
    evaluate_rules,
    explain_membership,
    next_due,
)
from engine.rules.loader import DEFAULT_RULES_PATH, load_rules, parse_rules
from engine.rules.variables import known_variables
from features.catalogue import catalogue
from features.config import FeatureConfig
from models.registry import model_specs

DAY = 86_400.0
T0 = 1_800_000_000.0
FEATURES = [spec.name for spec in catalogue(FeatureConfig())] + ["days_since_last_activity"]
KNOWN = known_variables(FEATURES, [spec.name for spec in model_specs(FeatureConfig().products)])

RULES = parse_rules(
    """
version: "t"
families:
  - name: tier
    segments:
      - name: gold
        enter: "monetary >= 1000"
        exit: "monetary < 900"
        min_dwell_days: 2
        labels:
          - when: "frequency >= 10"
            text: "Gold regular"
      - name: silver
        when: "monetary >= 500"
        label: "Silver tier"
      - name: bronze
        enter: "monetary >= 100"
        exit: "monetary < 50"
  - name: plain
    segments:
      - name: any
        when: "frequency >= 1"
""",
    "t.yaml",
    KNOWN,
)
TIER = RULES.families[0]


def decide(variables: Mapping[str, object], current: Membership | None, as_of: float) -> FamilyDecision:
    return evaluate_family(TIER, variables, current, as_of)


def test_first_match_wins_for_a_new_customer() -> None:
    decision = decide({"monetary": 600}, None, T0)
    assert (decision.previous, decision.segment, decision.label, decision.since) == (
        None,
        "silver",
        "Silver tier",
        T0,
    )
    assert decision.changed
    assert decision.membership() == Membership("silver", T0)
    assert decision.reason == {
        "rule": "tier.silver",
        "conditions": [{"name": "monetary", "op": ">=", "threshold": 500, "value": 600}],
        "text": "tier=silver because monetary=600 >= 500",
    }


def test_no_segment_and_unchanged() -> None:
    decision = decide({"monetary": 10}, None, T0)
    assert (decision.segment, decision.label, decision.since, decision.changed) == (None, None, None, False)
    assert decision.membership() is None


def test_hysteresis_keeps_the_segment_inside_the_band() -> None:
    gold = Membership("gold", T0)
    later = T0 + 5 * DAY
    stay = decide({"monetary": 950}, gold, later)  # enter no longer holds, exit does not hold yet
    assert (stay.segment, stay.since, stay.changed) == ("gold", T0, False)
    leave = decide({"monetary": 899}, gold, later)
    assert (leave.previous, leave.segment, leave.since) == ("gold", "silver", later)
    assert leave.reason["rule"] == "tier.silver"


def test_dwell_keeps_the_segment_even_when_exit_holds() -> None:
    gold = Membership("gold", T0)
    assert decide({"monetary": 0}, gold, T0 + 2 * DAY - 1).segment == "gold"
    after = decide({"monetary": 0}, gold, T0 + 2 * DAY)
    assert (after.segment, after.since, after.label) == (None, None, None)
    assert after.reason == {
        "rule": "tier.gold.exit",
        "conditions": [{"name": "monetary", "op": "<", "threshold": 900, "value": 0}],
        "text": "tier=none because monetary=0 < 900",
    }


def test_a_higher_priority_candidate_preempts_only_after_the_dwell() -> None:
    rules = parse_rules(
        """
version: "t"
families:
  - name: f
    segments:
      - name: top
        when: "frequency >= 10"
      - name: sticky
        enter: "monetary >= 100"
        exit: "monetary < 10"
        min_dwell_days: 3
""",
        "t.yaml",
        KNOWN,
    )
    family = rules.families[0]
    sticky = Membership("sticky", T0)
    both = {"frequency": 12, "monetary": 500}
    assert evaluate_family(family, both, sticky, T0 + 1 * DAY).segment == "sticky"
    moved = evaluate_family(family, both, sticky, T0 + 3 * DAY)
    assert (moved.previous, moved.segment, moved.since) == ("sticky", "top", T0 + 3 * DAY)


def test_a_lower_priority_candidate_never_preempts_a_retained_segment() -> None:
    silver = Membership("silver", T0)
    # monetary 150: silver's enter no longer holds, so its default exit (not enter) holds -> bronze.
    assert decide({"monetary": 150}, silver, T0 + DAY).segment == "bronze"
    bronze = Membership("bronze", T0)
    # bronze is retained (exit monetary < 50 does not hold) but silver has higher priority: moves up.
    assert decide({"monetary": 600}, bronze, T0 + DAY).segment == "silver"
    # gold retained by the band while silver's enter holds: silver has lower priority, gold stays.
    assert decide({"monetary": 950}, Membership("gold", T0), T0 + 9 * DAY).segment == "gold"


def test_a_segment_removed_from_the_rules_counts_as_none() -> None:
    gone = Membership("platinum", T0 - DAY)
    decision = decide({"monetary": 10}, gone, T0)
    assert (decision.previous, decision.segment, decision.changed) == ("platinum", None, True)
    assert decision.reason["rule"] == "tier.platinum.exit"
    assert "no longer in the rules" in decision.reason["text"]
    entered = decide({"monetary": 600}, gone, T0)
    assert (entered.previous, entered.segment, entered.since) == ("platinum", "silver", T0)


def test_labels_first_matching_when_else_label_else_name() -> None:
    assert decide({"monetary": 2000, "frequency": 12}, None, T0).label == "Gold regular"
    assert decide({"monetary": 2000, "frequency": 1}, None, T0).label == "gold"
    assert decide({"monetary": 200}, None, T0).label == "bronze"


def test_evaluate_rules_gives_one_decision_per_family_in_order() -> None:
    memberships = {"plain": Membership("any", T0 - DAY)}
    decisions = evaluate_rules(RULES, {"monetary": 600, "frequency": 2}, memberships, T0)
    assert [(d.family, d.segment, d.since, d.changed) for d in decisions] == [
        ("tier", "silver", T0, True),
        ("plain", "any", T0 - DAY, False),
    ]


@pytest.mark.parametrize("monetary", [0, 60, 99, 100, 499, 500, 899, 900, 999, 1000, 5000])
@pytest.mark.parametrize("current", [None, "gold", "silver", "bronze", "platinum"])
@pytest.mark.parametrize("days_in", [0.5, 3.0])  # inside and past gold's 2-day dwell
def test_changed_decisions_are_the_changing_ones_of_every_way(
    monetary: int, current: str | None, days_in: float
) -> None:
    # Every way the resolution goes: dwell, hysteresis band, preemption, leaving, a removed segment.
    memberships = {} if current is None else {"tier": Membership(current, T0 - days_in * DAY)}
    memberships["plain"] = Membership("any", T0 - DAY)
    variables = {"monetary": monetary, "frequency": 0 if monetary < 100 else 3}
    expected = [d for d in evaluate_rules(RULES, variables, memberships, T0) if d.changed]
    assert changed_decisions(RULES, variables, memberships, T0) == expected


def test_explain_membership_gives_what_keeps_the_customer_in() -> None:
    gold = Membership("gold", T0)
    assert explain_membership(TIER, gold, {"monetary": 0}, T0 + DAY)["rule"] == "tier.gold.dwell"
    reason = explain_membership(TIER, gold, {"monetary": 950}, T0 + 3 * DAY)
    assert reason["text"] == "tier=gold because monetary=950 >= 900"


# -- next_due ------------------------------------------------------------------------------------

GROWING = ("recency_days", "days_since_last_activity", "tenure_days")


def growing_crossing(variables: Mapping[str, float | None], as_of: float, calls: list | None = None):
    """A fake clock model: the GROWING variables rise by 1 per day, everything else is fixed."""

    def crossing(name: str, threshold: float | None) -> float | None:
        if calls is not None:
            calls.append((name, threshold))
        value = variables.get(name)
        if name not in GROWING or value is None:
            return None
        if threshold is None:
            return as_of + 1.0  # changes continuously; the fake says "soon"
        if threshold > value:
            return as_of + (threshold - value) * DAY
        return None

    return crossing


@pytest.fixture(scope="module")
def defaults():
    return load_rules(DEFAULT_RULES_PATH, KNOWN)


def test_next_due_active_customer_crosses_the_14_day_threshold(defaults) -> None:
    variables = {"tenure_days": 400.0, "days_since_last_activity": 3.0, "recency_days": 3.0}
    memberships = {"lifecycle": Membership("active", T0 - 3 * DAY)}
    # recency_days 3 -> 180 (hibernating) is later; tenure is past 30; so 14 days is next: +11 days.
    due = next_due(defaults, variables, memberships, T0, growing_crossing(variables, T0))
    assert due == pytest.approx(T0 + 11 * DAY)


def test_next_due_includes_the_end_of_a_dwell(defaults) -> None:
    variables = {"tenure_days": 400.0, "days_since_last_activity": 3.0, "recency_days": 3.0}
    memberships = {
        "lifecycle": Membership("active", T0 - 3 * DAY),
        "churn_risk": Membership("Likely to Churn", T0 - 1 * DAY),  # 3-day dwell ends at T0 + 2 days
    }
    due = next_due(defaults, variables, memberships, T0, growing_crossing(variables, T0))
    assert due == pytest.approx(T0 + 2 * DAY)
    expired = {"churn_risk": Membership("Likely to Churn", T0 - 5 * DAY)}  # dwell over: not due
    assert next_due(defaults, variables, expired, T0, growing_crossing(variables, T0)) == pytest.approx(
        T0 + 11 * DAY
    )


def test_next_due_is_none_when_nothing_changes_with_time(defaults) -> None:
    assert next_due(defaults, {}, {}, T0, lambda _name, _threshold: None) is None
    assert next_due(defaults, {}, {}, T0, lambda _name, _threshold: T0) is None  # not after as_of


def test_next_due_asks_for_thresholds_and_for_any_change_in_non_trivial_uses(defaults) -> None:
    calls: list = []
    next_due(defaults, {}, {}, T0, growing_crossing({}, T0, calls))
    asked = set(calls)
    assert {("days_since_last_activity", 14.0), ("days_since_last_activity", 30.0)} <= asked
    assert {("tenure_days", 30.0), ("recency_days", 180.0), ("recency_days", 365.0)} <= asked
    assert ("score_churn", 0.7) in asked
    # "balance_mortgage == None": time alone never makes a value defined, so nothing to ask
    assert not any(name == "balance_mortgage" for name, _ in asked)
    (exit_threshold,) = [t for n, t in asked if n == "score_churn" and t is not None and 0.6 < t < 0.66]
    assert exit_threshold == pytest.approx(0.65)
    assert len(calls) == len(asked)  # each point asked once


def test_next_due_uses_none_for_variables_inside_expressions() -> None:
    rules = parse_rules(
        'version: "t"\nfamilies:\n  - name: f\n    segments:\n'
        '      - name: s\n        when: "min(recency_days, tenure_days) > 10 and frequency > monetary"\n',
        "t.yaml",
        KNOWN,
    )
    assert set(rules.crossing_points) == {
        ("recency_days", None),
        ("tenure_days", None),
        ("frequency", None),
        ("monetary", None),
    }
