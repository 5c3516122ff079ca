"""The shipped default rules against expectations written by hand, independently of the rule code."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from engine.rules.evaluate import Membership, evaluate_family
from engine.rules.loader import DEFAULT_RULES_PATH, load_rules
from engine.rules.model import Family, RuleSet
from engine.rules.variables import known_variables
from features.catalogue import catalogue
from features.config import FeatureConfig
from models.registry import model_specs

DAY = 86_400.0
T0 = 1_800_000_000.0
FEATURES = [spec.name for spec in catalogue(FeatureConfig())] + ["days_since_last_activity"]
KNOWN = known_variables(FEATURES, [spec.name for spec in model_specs(FeatureConfig().products)])

# The RFM map by recency quintile (rows) and frequency quintile (columns f=1..5), before the
# monetary and recency-days exceptions checked in `expected_rfm`.
RFM_MAP = {
    5: ["New Customers", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
    4: ["Promising", "Potential Loyalists", "Potential Loyalists", "Loyal Customers", "Loyal Customers"],
    3: ["About to Sleep", "About to Sleep", "Need Attention", "Loyal Customers", "Loyal Customers"],
    2: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
    1: ["Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"],
}


def expected_rfm(r: int, f: int, m: int, recency_days: float) -> str:
    if recency_days > 365 or (r == 1 and f <= 2 and m <= 2):
        return "Lost"
    if recency_days > 180:
        return "Hibernating"
    segment = RFM_MAP[r][f - 1]
    if segment == "Champions" and m <= 3:
        return "Loyal Customers"
    return segment


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(DEFAULT_RULES_PATH, KNOWN)


def family(rules: RuleSet, name: str) -> Family:
    found = rules.family(name)
    assert found is not None
    return found


def segment_of(fam: Family, variables: Mapping[str, object], current: Membership | None = None) -> str | None:
    return evaluate_family(fam, variables, current, T0).segment


def test_families_and_segment_names_in_order(rules: RuleSet) -> None:
    assert rules.version == "segments-2026.12.3"
    names = {f.name: [s.name for s in f.segments] for f in rules.families}
    assert names == {
        "rfm": [
            "Lost",
            "Hibernating",
            "Champions",
            "Loyal Customers",
            "Can't Lose Them",
            "At Risk",
            "Need Attention",
            "About to Sleep",
            "Potential Loyalists",
            "New Customers",
            "Promising",
        ],
        "lifecycle": ["new", "active", "lapsing", "churned"],
        "churn_risk": ["Likely to Churn"],
        "next_best_action": ["Service Recovery", "Retain High-Value Depositor", "Cross-sell Mortgage"],
    }
    assert family(rules, "rfm").key_features == ("recency_days", "frequency", "monetary")
    assert family(rules, "next_best_action").key_features == (
        "total_balance",
        "open_tickets",
        "call_center_30d",
        "key_feature_adoption",
    )


@pytest.mark.parametrize("recency_days", [0.5, 180.0, 180.5, 365.0, 365.5])
def test_rfm_map_for_every_quintile_combination(rules: RuleSet, recency_days: float) -> None:
    rfm = family(rules, "rfm")
    for r in range(1, 6):
        for f in range(1, 6):
            for m in range(1, 6):
                variables = {"r_score": r, "f_score": f, "m_score": m, "recency_days": recency_days}
                assert segment_of(rfm, variables) == expected_rfm(r, f, m, recency_days), (r, f, m)


def test_rfm_without_scores_is_no_segment(rules: RuleSet) -> None:
    rfm = family(rules, "rfm")
    assert segment_of(rfm, {"r_score": None, "f_score": None, "m_score": None, "recency_days": None}) is None
    assert segment_of(rfm, {"recency_days": 10.0}) is None
    assert segment_of(rfm, {"recency_days": 400.0}) == "Lost"  # recency alone, before ranking


@pytest.mark.parametrize(
    ("tenure_days", "days_since_last_activity", "expected"),
    [
        (0.0, 0.0, "new"),
        (29.99, 45.0, "new"),
        (30.0, 0.0, "active"),
        (400.0, 14.0, "active"),
        (400.0, 14.000001, "lapsing"),
        (400.0, 30.0, "lapsing"),
        (400.0, 30.000001, "churned"),
        (400.0, 300.0, "churned"),
        (400.0, None, "churned"),  # never logged in nor bought, no longer new: churned
    ],
)
def test_lifecycle_boundaries(
    rules: RuleSet, tenure_days: float, days_since_last_activity: float | None, expected: str | None
) -> None:
    variables = {"tenure_days": tenure_days, "days_since_last_activity": days_since_last_activity}
    assert segment_of(family(rules, "lifecycle"), variables) == expected


def test_churn_risk_hysteresis_and_dwell(rules: RuleSet) -> None:
    churn = family(rules, "churn_risk")
    scores = [0.69, 0.71, 0.62, 0.68, 0.72, 0.66, 0.69, 0.71, 0.65, 0.66, 0.64, 0.69, 0.70]
    # day:     0     1     2     3     4     5     6     7     8     9    10    11    12
    membership: Membership | None = None
    changes = []
    for day, score in enumerate(scores):
        decision = evaluate_family(churn, {"score_churn": score}, membership, T0 + day * DAY)
        if decision.changed:
            changes.append((day, decision.previous, decision.segment))
        membership = decision.membership()
    # Enters at 0.71 on day 1; 0.62 on day 2 is inside the 3-day dwell; 0.68..0.65 stay inside the
    # band; 0.64 (< 0.65) on day 10 leaves; 0.69 does not re-enter, 0.70 does.
    assert changes == [
        (1, None, "Likely to Churn"),
        (10, "Likely to Churn", None),
        (12, None, "Likely to Churn"),
    ]


def test_churn_risk_reasons(rules: RuleSet) -> None:
    churn = family(rules, "churn_risk")
    entered = evaluate_family(churn, {"score_churn": 0.8}, None, T0)
    assert entered.reason["text"] == "churn_risk=Likely to Churn because score_churn=0.8 >= 0.7"
    left = evaluate_family(churn, {"score_churn": 0.5}, Membership("Likely to Churn", T0), T0 + 4 * DAY)
    assert left.reason["rule"] == "churn_risk.Likely to Churn.exit"
    assert left.reason["text"] == "churn_risk=none because score_churn=0.5 < 0.65"


BANK = {
    "open_tickets": 0,
    "worst_open_severity": 0,
    "tickets_30d": 0,
    "call_center_30d": 0,
    "total_balance": 0.0,
    "score_churn": 0.1,
    "score_propensity_mortgage": 0.1,
    "balance_mortgage": None,
    "balance_savings": None,
    "key_feature_adoption": 0.0,
}


def nba(rules: RuleSet, current: Membership | None = None, as_of: float = T0, **changes: object):
    return evaluate_family(family(rules, "next_best_action"), {**BANK, **changes}, current, as_of)


@pytest.mark.parametrize(
    ("changes", "segment", "label"),
    [
        ({}, None, None),
        ({"open_tickets": 1, "worst_open_severity": 3}, "Service Recovery", "Service Recovery"),
        ({"open_tickets": 1, "worst_open_severity": 2}, None, None),
        ({"open_tickets": 0, "worst_open_severity": 4}, None, None),
        ({"tickets_30d": 2}, "Service Recovery", "Service Recovery"),
        ({"call_center_30d": 2}, "Service Recovery", "Unhappy after Recent Contacts"),
        ({"call_center_30d": 1}, None, None),
        (
            {"total_balance": 50_000.0, "score_churn": 0.5, "key_feature_adoption": 0.3},
            "Retain High-Value Depositor",
            "High-Value but Feature Underutilizer",
        ),
        (
            {"total_balance": 50_000.0, "score_churn": 0.5, "key_feature_adoption": 0.5},
            "Retain High-Value Depositor",
            "Retain High-Value Depositor",
        ),
        ({"total_balance": 49_999.0, "score_churn": 0.9}, None, None),
        (
            {"total_balance": 90_000.0, "score_churn": 0.9, "call_center_30d": 3},
            "Service Recovery",
            "Unhappy after Recent Contacts",
        ),
        (
            {"total_balance": 60_000.0, "score_churn": 0.6, "score_propensity_mortgage": 0.9},
            "Retain High-Value Depositor",
            "High-Value but Feature Underutilizer",
        ),
        (
            {"total_balance": 10_000.0, "score_propensity_mortgage": 0.3},
            "Cross-sell Mortgage",
            "Cross-sell Mortgage",
        ),
        (
            {
                "total_balance": 20_000.0,
                "score_propensity_mortgage": 0.4,
                "balance_savings": 5_000.0,
                "key_feature_adoption": 0.5,
            },
            "Cross-sell Mortgage",
            "Engaged Saver without a Mortgage",
        ),
        (
            {"total_balance": 20_000.0, "score_propensity_mortgage": 0.4, "key_feature_adoption": 0.9},
            "Cross-sell Mortgage",
            "Cross-sell Mortgage",
        ),
        ({"total_balance": 9_999.0, "score_propensity_mortgage": 0.9}, None, None),
        ({"total_balance": 20_000.0, "score_propensity_mortgage": 0.29}, None, None),
        ({"total_balance": 20_000.0, "score_propensity_mortgage": 0.9, "balance_mortgage": 1.0}, None, None),
        ({"total_balance": 20_000.0, "score_propensity_mortgage": None}, None, None),
    ],
)
def test_next_best_action_priority_and_labels(
    rules: RuleSet, changes: dict, segment: str | None, label: str | None
) -> None:
    decision = nba(rules, **changes)
    assert (decision.segment, decision.label) == (segment, label)


def test_cross_sell_mortgage_hysteresis_and_dwell(rules: RuleSet) -> None:
    entered = nba(rules, total_balance=20_000.0, score_propensity_mortgage=0.35)
    assert entered.segment == "Cross-sell Mortgage"
    member = entered.membership()
    # Within the 7-day dwell nothing moves it out, not even buying the mortgage.
    inside = nba(rules, member, T0 + 6.9 * DAY, total_balance=20_000.0, balance_mortgage=150_000.0)
    assert (inside.segment, inside.changed) == ("Cross-sell Mortgage", False)
    after = T0 + 7 * DAY
    # Inside the band (0.25 <= propensity < 0.30), it stays; below 0.25 it leaves.
    band = nba(rules, member, after, total_balance=20_000.0, score_propensity_mortgage=0.26)
    assert band.segment == "Cross-sell Mortgage"
    low = nba(rules, member, after, total_balance=20_000.0, score_propensity_mortgage=0.24)
    assert (low.segment, low.reason["rule"]) == (None, "next_best_action.Cross-sell Mortgage.exit")
    bought = nba(
        rules, member, after, total_balance=20_000.0, score_propensity_mortgage=0.9, balance_mortgage=1.0
    )
    assert bought.segment is None
    assert "balance_mortgage=1 != none" in bought.reason["text"]
    # A service problem takes priority once the dwell is over.
    upset = nba(rules, member, after, total_balance=20_000.0, score_propensity_mortgage=0.9, tickets_30d=2)
    assert (upset.previous, upset.segment) == ("Cross-sell Mortgage", "Service Recovery")
