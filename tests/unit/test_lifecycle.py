"""The lifecycle family (new / active / lapsed): hand-computed cases and the reasons they carry."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import pytest

from engine.rules.lifecycle import Condition, Decision, LifecycleParams, evaluate
from features.catalogue import snapshot
from features.config import FeatureConfig
from features.state import CustomerState

T0 = 1_700_000_000.0
DAY = 86_400.0
DEFAULT = LifecycleParams()
FEATURES = FeatureConfig()


def decide(state: CustomerState, as_of: float, params: LifecycleParams) -> Decision:
    """The lifecycle decision for a hand-built state at ``as_of`` (through the feature snapshot)."""
    return evaluate(snapshot("c-1", state, FEATURES, as_of), params)


def customer(
    first_ts: float,
    purchases: tuple[float, ...] = (),
    last_ts: float | None = None,
    events: int | None = None,
) -> CustomerState:
    """A state written by hand: first seen at ``first_ts``, purchases of 10.00 at the given times."""
    times = [first_ts, *purchases] + ([last_ts] if last_ts is not None else [])
    return CustomerState(
        first_ts=first_ts,
        last_ts=max(times),
        events=events if events is not None else len(times),
        orders=len(purchases),
        revenue_minor=1000 * len(purchases),
        last_purchase_ts=max(purchases) if purchases else None,
        first_purchase_ts=min(purchases) if purchases else None,
    )


@dataclass(frozen=True)
class Case:
    state: CustomerState
    as_of: float
    params: LifecycleParams
    segment: str
    conditions: list[tuple[str, str, float | None, float | None]]
    text: str


CASES: dict[str, Case] = {
    "new at tenure 0 without orders": Case(
        customer(T0),
        T0,
        DEFAULT,
        "new",
        [("tenure_days", "<", 30, 0), ("orders", "<", 2, 0)],
        "lifecycle=new because tenure_days=0 < 30 and orders=0 < 2",
    ),
    "new at tenure 0 with one order": Case(
        customer(T0, (T0,)),
        T0,
        DEFAULT,
        "new",
        [("tenure_days", "<", 30, 0), ("orders", "<", 2, 1)],
        "lifecycle=new because tenure_days=0 < 30 and orders=1 < 2",
    ),
    "new until just before 30 days without purchase": Case(
        customer(T0, last_ts=T0 + 20 * DAY),
        T0 + 29.5 * DAY,
        DEFAULT,
        "new",
        [("tenure_days", "<", 30, 29.5), ("orders", "<", 2, 0)],
        "lifecycle=new because tenure_days=29.5 < 30 and orders=0 < 2",
    ),
    "two orders in the first week are active": Case(
        customer(T0, (T0 + 1 * DAY, T0 + 6 * DAY)),
        T0 + 6 * DAY,
        DEFAULT,
        "active",
        [("recency_days", "<=", 30, 0)],
        "lifecycle=active because recency_days=0 <= 30",
    ),
    "two orders in the first week, a day later": Case(
        customer(T0, (T0 + 1 * DAY, T0 + 6 * DAY)),
        T0 + 7 * DAY,
        DEFAULT,
        "active",
        [("recency_days", "<=", 30, 1)],
        "lifecycle=active because recency_days=1 <= 30",
    ),
    "last purchase exactly 30.0 days ago is still active": Case(
        customer(T0, (T0,)),
        T0 + 30 * DAY,
        DEFAULT,
        "active",
        [("recency_days", "<=", 30, 30)],
        "lifecycle=active because recency_days=30 <= 30",
    ),
    "one order long ago is lapsed": Case(
        customer(T0, (T0,)),
        T0 + 45 * DAY,
        DEFAULT,
        "lapsed",
        [("recency_days", ">", 30, 45), ("tenure_days", ">=", 30, 45)],
        "lifecycle=lapsed because recency_days=45 > 30 and tenure_days=45 >= 30",
    ),
    "never purchased, 30 days after first seen": Case(
        customer(T0, last_ts=T0 + 29 * DAY, events=5),
        T0 + 30 * DAY,
        DEFAULT,
        "lapsed",
        [("recency_days", "is", None, None), ("tenure_days", ">=", 30, 30)],
        "lifecycle=lapsed because recency_days is none and tenure_days=30 >= 30",
    ),
    "never purchased, 90 days after first seen": Case(
        customer(T0),
        T0 + 90 * DAY,
        DEFAULT,
        "lapsed",
        [("recency_days", "is", None, None), ("tenure_days", ">=", 30, 90)],
        "lifecycle=lapsed because recency_days is none and tenure_days=90 >= 30",
    ),
    "recent purchase with fractional recency": Case(
        customer(T0 - 40 * DAY, (T0 - 40 * DAY, T0)),
        T0 + 3.25 * DAY,
        DEFAULT,
        "active",
        [("recency_days", "<=", 30, 3.25)],
        "lifecycle=active because recency_days=3.25 <= 30",
    ),
    "recency reported unrounded, shown to six decimals": Case(
        customer(T0 - 60 * DAY, (T0,)),
        T0 + 8 * 3600,  # a third of a day
        DEFAULT,
        "active",
        [("recency_days", "<=", 30, 8 * 3600 / 86_400)],
        "lifecycle=active because recency_days=0.333333 <= 30",
    ),
    # custom thresholds
    "new_days=60, active_days=7: two orders then silence is lapsed by orders": Case(
        customer(T0, (T0, T0 + 1 * DAY)),
        T0 + 20 * DAY,
        LifecycleParams(new_days=60, active_days=7),
        "lapsed",
        [("recency_days", ">", 7, 19), ("orders", ">=", 2, 2)],
        "lifecycle=lapsed because recency_days=19 > 7 and orders=2 >= 2",
    ),
    "new_days=60, active_days=7: one order at day 20 is still new": Case(
        customer(T0, (T0,)),
        T0 + 20 * DAY,
        LifecycleParams(new_days=60, active_days=7),
        "new",
        [("tenure_days", "<", 60, 20), ("orders", "<", 2, 1)],
        "lifecycle=new because tenure_days=20 < 60 and orders=1 < 2",
    ),
    "new_days=7: one order ten days ago is active": Case(
        customer(T0, (T0,)),
        T0 + 10 * DAY,
        LifecycleParams(new_days=7, active_days=30),
        "active",
        [("recency_days", "<=", 30, 10)],
        "lifecycle=active because recency_days=10 <= 30",
    ),
    "active_days=0.5: exactly twelve hours is active": Case(
        customer(T0 - 100 * DAY, (T0 - 50 * DAY, T0)),
        T0 + 0.5 * DAY,
        LifecycleParams(active_days=0.5),
        "active",
        [("recency_days", "<=", 0.5, 0.5)],
        "lifecycle=active because recency_days=0.5 <= 0.5",
    ),
    "active_days=0.5: eighteen hours is lapsed": Case(
        customer(T0 - 100 * DAY, (T0 - 50 * DAY, T0)),
        T0 + 0.75 * DAY,
        LifecycleParams(active_days=0.5),
        "lapsed",
        [("recency_days", ">", 0.5, 0.75), ("tenure_days", ">=", 30, 100.75)],
        "lifecycle=lapsed because recency_days=0.75 > 0.5 and tenure_days=100.75 >= 30",
    ),
    "new_days=1: tenure exactly one day without orders is lapsed": Case(
        customer(T0),
        T0 + 1 * DAY,
        LifecycleParams(new_days=1),
        "lapsed",
        [("recency_days", "is", None, None), ("tenure_days", ">=", 1, 1)],
        "lifecycle=lapsed because recency_days is none and tenure_days=1 >= 1",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_segment_and_reason(case: Case) -> None:
    decision = decide(case.state, case.as_of, case.params)
    assert decision.family == "lifecycle"
    assert decision.segment == case.segment
    assert decision.rule == f"lifecycle.{case.segment}"
    reason = decision.reason()
    assert reason == {
        "rule": f"lifecycle.{case.segment}",
        "conditions": [
            {"name": name, "op": op, "threshold": threshold, "value": value}
            for name, op, threshold, value in case.conditions
        ],
        "text": case.text,
    }


OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _holds(condition: dict[str, Any]) -> bool:
    if condition["op"] == "is":
        return condition["value"] is condition["threshold"] is None
    return OPS[condition["op"]](condition["value"], condition["threshold"])


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_carried_conditions_hold_for_their_values(case: Case) -> None:
    reason = decide(case.state, case.as_of, case.params).reason()
    assert all(_holds(c) for c in reason["conditions"]), reason


def test_thirty_days_and_one_second_is_lapsed() -> None:
    decision = decide(customer(T0, (T0,)), T0 + 30 * DAY + 1, DEFAULT)
    assert decision.segment == "lapsed"
    assert decision.rule == "lifecycle.lapsed"
    recency, not_new = decision.conditions
    assert (recency.name, recency.op, recency.threshold) == ("recency_days", ">", 30)
    assert recency.value == pytest.approx(30 + 1 / DAY, abs=1e-3)
    assert (not_new.name, not_new.op, not_new.threshold) == ("tenure_days", ">=", 30)


def test_just_under_thirty_days_without_orders_is_new() -> None:
    decision = decide(customer(T0), T0 + 30 * DAY - 1, DEFAULT)
    assert decision.segment == "new"


@pytest.mark.parametrize(
    ("state", "as_of"),
    [
        (customer(T0, (T0,)), T0 + 30 * DAY + 1),  # lapsed, recency just over 30
        (customer(T0), T0 + 30 * DAY - 1),  # new, tenure just under 30
    ],
    ids=["lapsed-by-one-second", "new-by-one-second"],
)
def test_conditions_hold_next_to_the_thresholds(state: CustomerState, as_of: float) -> None:
    reason = decide(state, as_of, DEFAULT).reason()
    assert all(_holds(c) for c in reason["conditions"]), reason


@pytest.mark.parametrize(
    ("features", "params", "segment", "text"),
    [
        (
            {"tenure_days": 0.0, "frequency": 0, "recency_days": None},
            DEFAULT,
            "new",
            "lifecycle=new because tenure_days=0 < 30 and orders=0 < 2",
        ),
        (
            {"tenure_days": 12.5, "frequency": 1, "recency_days": 12.5},
            DEFAULT,
            "new",
            "lifecycle=new because tenure_days=12.5 < 30 and orders=1 < 2",
        ),
        (
            {"tenure_days": 12.5, "frequency": 2, "recency_days": 0.25},
            DEFAULT,
            "active",
            "lifecycle=active because recency_days=0.25 <= 30",
        ),
        (
            {"tenure_days": 400.0, "frequency": 9, "recency_days": 30.0},
            DEFAULT,
            "active",
            "lifecycle=active because recency_days=30 <= 30",
        ),
        (
            {"tenure_days": 400.0, "frequency": 9, "recency_days": 30.5},
            DEFAULT,
            "lapsed",
            "lifecycle=lapsed because recency_days=30.5 > 30 and tenure_days=400 >= 30",
        ),
        (
            {"tenure_days": 31.0, "frequency": 0, "recency_days": None},
            DEFAULT,
            "lapsed",
            "lifecycle=lapsed because recency_days is none and tenure_days=31 >= 30",
        ),
        (
            {"tenure_days": 10.0, "frequency": 3, "recency_days": 8.0},
            LifecycleParams(60, 7),
            "lapsed",
            "lifecycle=lapsed because recency_days=8 > 7 and orders=3 >= 2",
        ),
        (
            {"tenure_days": 10.123456, "frequency": 1, "recency_days": 1.0},
            LifecycleParams(new_days=10),
            "active",
            "lifecycle=active because recency_days=1 <= 30",
        ),
    ],
)
def test_evaluate_on_feature_values(
    features: dict[str, Any], params: LifecycleParams, segment: str, text: str
) -> None:
    decision = evaluate(features, params)  # type: ignore[arg-type]
    assert decision.segment == segment
    assert decision.reason()["text"] == text


def test_default_thresholds() -> None:
    assert (DEFAULT.new_days, DEFAULT.active_days) == (30.0, 30.0)


def test_condition_text_forms() -> None:
    assert Condition("recency_days", "<=", 30, 3.2).text() == "recency_days=3.2 <= 30"
    assert Condition("recency_days", "is", None, None).text() == "recency_days is none"
    assert Condition("orders", ">=", 2, 5).text() == "orders=5 >= 2"
    assert Condition("x", "<", 0.25, None).text() == "x=none < 0.25"


def test_decision_without_conditions() -> None:
    assert Decision("fam", "seg", "fam.seg").reason() == {
        "rule": "fam.seg",
        "conditions": [],
        "text": "fam=seg because no condition",
    }
