"""Delayed labels: resolved only once matured, by the documented rules (hand-worked cases)."""

from __future__ import annotations

from typing import Any

import pytest

from features.event import Event
from models.labels import LabelRules

DAY = 86_400.0
T0 = 1_767_225_600.0
RULES = LabelRules(churn_days=30, clv_days=90, propensity_days=30)


def ev(kind: str, day: float, **attrs: Any) -> Event:
    return Event(f"e{day}", "c1", kind, T0 + day * DAY, attrs)


def start(model: str) -> Any:
    return RULES.start(model, T0, {"f": 1.0}, 0.4, holdout=False)


def test_churn_is_negative_when_active_again_before_the_deadline() -> None:
    pending = start("churn")
    assert RULES.on_event(pending, ev("page_view", 3, page="/")) is None  # not activity
    assert RULES.on_time(pending, T0 + 29.9 * DAY) is None
    label = RULES.on_event(pending, ev("login", 12))
    assert label is not None and label.y_true == 0.0 and label.resolved_ts == T0 + 12 * DAY
    assert label.y_pred == 0.4 and label.x == {"f": 1.0}


def test_churn_is_positive_only_once_the_watermark_passes_the_deadline() -> None:
    pending = start("churn")
    assert RULES.on_time(pending, T0 + 30 * DAY - 1) is None
    label = RULES.on_time(pending, T0 + 30 * DAY)
    assert label is not None and label.y_true == 1.0 and label.resolved_ts == T0 + 30 * DAY


def test_events_at_or_before_the_prediction_or_after_the_deadline_do_not_count() -> None:
    pending = start("churn")
    assert RULES.on_event(pending, ev("login", 0)) is None  # the moment of the prediction itself
    assert RULES.on_event(pending, ev("login", -1)) is None  # a late event from before
    assert RULES.on_event(pending, ev("login", 31)) is None  # after the deadline


def test_clv_sums_revenue_in_the_horizon_and_resolves_at_it() -> None:
    pending = start("clv")
    for day, amount in ((1, 10.0), (45, 20.5), (90, 4.5), (91, 100.0), (-2, 7.0)):
        assert (
            RULES.on_event(pending, ev("purchase", day, amount=amount, currency="EUR", product="p")) is None
        )
    assert RULES.on_time(pending, T0 + 89 * DAY) is None
    label = RULES.on_time(pending, T0 + 90 * DAY)
    assert label is not None and label.y_true == pytest.approx(35.0)


def test_propensity_is_positive_on_a_purchase_of_that_product_only() -> None:
    pending = start("propensity_mortgage")
    assert RULES.on_event(pending, ev("purchase", 2, amount=1, currency="EUR", product="savings")) is None
    label = RULES.on_event(pending, ev("purchase", 5, amount=1, currency="EUR", product="mortgage"))
    assert label is not None and label.y_true == 1.0


def test_propensity_is_negative_when_the_horizon_passes() -> None:
    pending = start("propensity_savings")
    label = RULES.on_time(pending, T0 + 31 * DAY)
    assert label is not None and label.y_true == 0.0 and label.resolved_ts == T0 + 30 * DAY


def test_unknown_model_has_no_rule() -> None:
    with pytest.raises(ValueError, match="no label rule"):
        RULES.start("upsell", T0, {}, 0.0, holdout=False)


def test_pending_round_trips_through_plain_data() -> None:
    pending = start("clv")
    pending.realised = 12.5
    assert type(pending).from_dict(pending.to_dict()) == pending
