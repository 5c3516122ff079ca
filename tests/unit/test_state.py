"""CustomerState: applying events, order independence, R/F/M at a moment, money in minor units.

Expectations are recomputed from the raw events in the test (min/max, counts, Decimal sums,
day indexes as ``ts // 86400``), never read back from the code under test.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.catalogue import snapshot
from features.config import FeatureConfig
from features.event import Event
from features.state import CustomerState, apply_event, to_minor_units

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z, UTC day index 19675
DAY = 86_400.0
CONFIG = FeatureConfig()  # allowed lateness 3 days, engagement half-life 14 days
LATENESS = 3 * DAY

ATTRS: dict[str, dict[str, Any]] = {
    "login": {},
    "session": {},
    "page_view": {"page": "/"},
    "app_click": {"element": "b"},
    "call_center": {"reason": "billing"},
}


def ev(event_id: str, event_type: str, ts: float, amount: Any = None, **attrs: Any) -> Event:
    if event_type == "purchase":
        attrs = {"amount": amount, "currency": "EUR", "product": "p", **attrs}
    elif not attrs:
        attrs = dict(ATTRS.get(event_type, {}))
    return Event(event_id=event_id, customer_id="c-1", type=event_type, ts=ts, attrs=attrs)


def cents(amount: Any) -> int:
    """Half-even cents of the decimal amount as written, with Decimal arithmetic."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def day(ts: float) -> int:
    return int(ts // 86_400)


def fold(events: list[Event], config: FeatureConfig = CONFIG) -> CustomerState:
    state = None
    for event in events:
        state, _ = apply_event(state, event, config)
    assert state is not None
    return state


def core(state: CustomerState) -> dict[str, Any]:
    return {
        "first_ts": state.first_ts,
        "last_ts": state.last_ts,
        "events": state.events,
        "late_dropped": state.late_dropped,
        "orders": state.orders,
        "revenue_minor": state.revenue_minor,
        "first_purchase_ts": state.first_purchase_ts,
        "last_purchase_ts": state.last_purchase_ts,
        "last_login_ts": state.last_login_ts,
    }


def expected_core(events: list[Event]) -> dict[str, Any]:
    """The order-free fields recomputed from raw events (none of them too late)."""
    purchases = [e for e in events if e.type == "purchase"]
    logins = [e for e in events if e.type == "login"]
    return {
        "first_ts": min(e.ts for e in events),
        "last_ts": max(e.ts for e in events),
        "events": len(events),
        "late_dropped": 0,
        "orders": len(purchases),
        "revenue_minor": sum(cents(e.attrs["amount"]) for e in purchases),
        "first_purchase_ts": min((e.ts for e in purchases), default=None),
        "last_purchase_ts": max((e.ts for e in purchases), default=None),
        "last_login_ts": max((e.ts for e in logins), default=None),
    }


# --- apply_event on hand-written sequences ---------------------------------------------------


def test_first_event_creates_the_state() -> None:
    state, applied = apply_event(None, ev("e1", "session", T0), CONFIG)
    assert applied is True
    assert core(state) == {
        "first_ts": T0,
        "last_ts": T0,
        "events": 1,
        "late_dropped": 0,
        "orders": 0,
        "revenue_minor": 0,
        "first_purchase_ts": None,
        "last_purchase_ts": None,
        "last_login_ts": None,
    }
    assert state.session_days == {19675: 1}
    assert state.purchase_days == {}


def test_first_event_a_purchase() -> None:
    state, applied = apply_event(None, ev("e1", "purchase", T0, 12.34), CONFIG)
    assert applied
    assert (state.orders, state.revenue_minor) == (1, 1234)
    assert (state.first_purchase_ts, state.last_purchase_ts) == (T0, T0)
    assert state.purchase_days == {19675: [1, 1234]}


MIXED = [
    ev("e1", "login", T0 + 100),
    ev("e2", "purchase", T0 + 50, 19.99),
    ev("e3", "purchase", T0 + 300, 0.01),
    ev("e4", "page_view", T0 + 10),
    ev("e5", "purchase", T0 + 2 * DAY, 100),
    ev("e6", "login", T0 - DAY),
]


def test_mixed_sequence_out_of_time_order() -> None:
    state = fold(MIXED)
    # by hand: 1999 + 1 + 10000 cents; purchases at +50, +300, +2d; events from -1d to +2d
    assert core(state) == {
        "first_ts": T0 - DAY,
        "last_ts": T0 + 2 * DAY,
        "events": 6,
        "late_dropped": 0,
        "orders": 3,
        "revenue_minor": 12_000,
        "first_purchase_ts": T0 + 50,
        "last_purchase_ts": T0 + 2 * DAY,
        "last_login_ts": T0 + 100,
    }
    assert core(state) == expected_core(MIXED)
    # T0 + 300 s is still UTC day 19675 (22:18:20); +2 days is 19677; -1 day is 19674
    assert state.purchase_days == {19675: [2, 2000], 19677: [1, 10_000]}
    assert state.login_days == {19674: 1, 19675: 1}


def test_each_step_of_the_sequence() -> None:
    state = None
    for n, event in enumerate(MIXED, start=1):
        state, applied = apply_event(state, event, CONFIG)
        assert applied
        assert core(state) == expected_core(MIXED[:n])


def test_apply_event_mutates_and_returns_the_same_state() -> None:
    state = fold([ev("e1", "login", T0)])
    same, applied = apply_event(state, ev("e2", "purchase", T0 + 1, 1), CONFIG)
    assert same is state
    assert applied
    assert state.orders == 1


def test_sums_that_float_addition_gets_order_dependent() -> None:
    # as floats, (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3); in cents both orders give 60
    assert (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3)
    forward = [ev("e1", "purchase", T0, 0.1), ev("e2", "purchase", T0, 0.2), ev("e3", "purchase", T0, 0.3)]
    assert fold(forward).revenue_minor == 60
    assert fold(forward[::-1]).revenue_minor == 60
    amounts = [0.7, 19.99, 0.01, 1e-2, 0, 7, 1e3]
    events = [ev(f"e{i}", "purchase", T0 + i, a) for i, a in enumerate(amounts)]
    assert fold(events).revenue_minor == 70 + 1999 + 1 + 1 + 0 + 700 + 100_000


def test_redelivery_is_not_deduplicated_here() -> None:
    # deduplication is the store's job (by offset); apply_event counts what it is given.
    event = ev("e1", "purchase", T0, 2.5)
    state = fold([event, event])
    assert (state.orders, state.revenue_minor, state.events) == (2, 500, 2)


def test_engagement_is_decayed_sum_of_weights() -> None:
    # default weights: login 1.0, purchase 2.0, page_view 0.2; call_center has no weight
    events = [
        ev("e1", "login", T0),
        ev("e2", "purchase", T0 + 7 * DAY, 5),
        ev("e3", "page_view", T0 + 14 * DAY),
        ev("e4", "call_center", T0 + 15 * DAY),
    ]
    state = fold(events)
    # as of the last weighted event (+14 d): 1.0 * 2^-1 + 2.0 * 2^-0.5 + 0.2
    expected = 0.5 + 2.0 * 2**-0.5 + 0.2
    assert state.engagement_ts == T0 + 14 * DAY
    assert state.engagement == pytest.approx(expected, rel=1e-12)
    # in reverse (with a lateness wide enough that nothing is dropped) the same score results
    wide = FeatureConfig(allowed_lateness_seconds=30 * DAY)
    assert fold(events[::-1], wide).engagement == pytest.approx(expected, rel=1e-12)


# --- lateness ---------------------------------------------------------------------------------


def test_event_more_than_allowed_lateness_behind_is_dropped() -> None:
    state = fold([ev("e1", "purchase", T0, 10)])
    before = state.to_dict()
    same, applied = apply_event(state, ev("e2", "purchase", T0 - LATENESS - 0.001, 99), CONFIG)
    assert same is state
    assert applied is False
    after = state.to_dict()
    assert after.pop("late_dropped") == 1
    before.pop("late_dropped")
    assert after == before


def test_event_exactly_allowed_lateness_behind_is_applied() -> None:
    state = fold([ev("e1", "purchase", T0, 10)])
    _, applied = apply_event(state, ev("e2", "purchase", T0 - LATENESS, 1), CONFIG)
    assert applied
    assert (state.orders, state.revenue_minor, state.first_ts) == (2, 1100, T0 - LATENESS)


def test_lateness_is_measured_from_the_newest_event() -> None:
    events = [ev("e1", "login", T0), ev("e2", "login", T0 + 10 * DAY), ev("e3", "login", T0 + 8 * DAY)]
    state = fold(events)
    assert (state.events, state.late_dropped) == (3, 0)
    _, applied = apply_event(state, ev("e4", "login", T0 + 5 * DAY), CONFIG)  # 5 days behind
    assert not applied
    assert (state.events, state.late_dropped, state.first_ts) == (3, 1, T0)


def test_zero_lateness_drops_anything_older() -> None:
    config = FeatureConfig(allowed_lateness_seconds=0)
    state = fold([ev("e1", "login", T0)], config)
    assert apply_event(state, ev("e2", "login", T0), config)[1] is True
    assert apply_event(state, ev("e3", "login", T0 - 0.001), config)[1] is False


# --- order independence ----------------------------------------------------------------------

FEATURES = ["payments", "budgeting", "export", "charts", "alerts"]
CAMPAIGNS = ["spring", "summer", "winter"]
PRODUCTS = ["savings", "mortgage"]


@st.composite
def any_event(draw: st.DrawFn, i: int, span_ms: int) -> Event:
    event_type = draw(
        st.sampled_from(
            [
                "purchase",
                "login",
                "session",
                "page_view",
                "app_click",
                "call_center",
                "feature_used",
                "support_ticket",
                "product_holding",
                "campaign_response",
            ]
        )
    )
    ts = T0 + draw(st.integers(min_value=0, max_value=span_ms)) / 1000
    if draw(st.integers(0, 4)) == 0:
        ts = T0  # many exact ties on purpose
    if event_type == "purchase":
        minor = draw(st.integers(min_value=0, max_value=10**9))
        return ev(f"e{i}", event_type, ts, draw(st.sampled_from([minor / 100, minor // 100])))
    attrs: dict[str, Any]
    if event_type == "feature_used":
        attrs = {"feature": draw(st.sampled_from(FEATURES))}
    elif event_type == "support_ticket":
        attrs = {
            "ticket_id": draw(st.sampled_from(["T1", "T2"])),
            "status": draw(st.sampled_from(["opened", "closed"])),
            "severity": draw(st.sampled_from(["low", "medium", "high", "critical"])),
        }
    elif event_type == "product_holding":
        attrs = {
            "product": draw(st.sampled_from(PRODUCTS)),
            "balance": draw(st.integers(-(10**6), 10**6)) / 100,
        }
    elif event_type == "campaign_response":
        campaign = draw(st.sampled_from(CAMPAIGNS))
        attrs = {
            "campaign": campaign,
            "variant": f"V-{campaign}",  # one variant per campaign and customer
            "outcome": draw(st.sampled_from(["delivered", "opened", "clicked", "converted", "unsubscribed"])),
        }
    else:
        attrs = dict(ATTRS[event_type])
    return ev(f"e{i}", event_type, ts, **attrs)


@st.composite
def event_lists(draw: st.DrawFn, span_ms: int = int(LATENESS * 1000)) -> list[Event]:
    n = draw(st.integers(min_value=1, max_value=25))
    return [draw(any_event(i, span_ms)) for i in range(n)]


def assert_same_state(a: CustomerState, b: CustomerState) -> None:
    left, right = a.to_dict(), b.to_dict()
    assert left.pop("engagement") == pytest.approx(right.pop("engagement"), rel=1e-9, abs=1e-12)
    assert left == right


@settings(max_examples=100, deadline=None)
@given(data=st.data(), events=event_lists())
def test_any_permutation_within_the_lateness_gives_the_same_state(
    data: st.DataObject, events: list[Event]
) -> None:
    shuffled = data.draw(st.permutations(events))
    state = fold(events)
    assert_same_state(fold(shuffled), state)
    assert core(state) == expected_core(events)


@settings(max_examples=60, deadline=None)
@given(events=event_lists(span_ms=int(30 * DAY * 1000)))
def test_every_event_is_applied_or_counted_late(events: list[Event]) -> None:
    state = None
    applied_events = []
    for event in events:
        state, applied = apply_event(state, event, CONFIG)
        if applied:
            applied_events.append(event)
        else:
            # too late means: older than the newest event so far by more than the lateness
            assert event.ts < max(e.ts for e in applied_events) - LATENESS
    assert state is not None
    assert state.events == len(applied_events)
    assert state.late_dropped == len(events) - len(applied_events)
    assert core(state) | {"late_dropped": 0} == expected_core(applied_events)


@settings(max_examples=40, deadline=None)
@given(events=event_lists(), split=st.integers(min_value=1, max_value=25))
def test_folding_from_a_stored_state_equals_folding_everything(events: list[Event], split: int) -> None:
    split = min(split, len(events))
    stored = CustomerState.from_dict(fold(events[:split]).to_dict())
    for event in events[split:]:
        stored, _ = apply_event(stored, event, CONFIG)
    assert_same_state(stored, fold(events))


def test_feature_cap_is_order_independent() -> None:
    config = FeatureConfig(max_tracked_features=4)
    events = [ev(f"e{i}", "feature_used", T0 + i, feature=f"f{i}") for i in range(4)]
    events.append(ev("e9", "feature_used", T0 + 9, feature="payments"))
    forward = snapshot("c-1", fold(events, config), config)["distinct_features_used"]
    backward = snapshot("c-1", fold(events[::-1], config), config)["distinct_features_used"]
    assert forward == backward


def test_campaign_tie_is_order_independent() -> None:
    a = ev("e1", "campaign_response", T0, campaign="x", variant="A", outcome="clicked")
    b = ev("e2", "campaign_response", T0, campaign="x", variant="B", outcome="clicked")
    assert fold([a, b]).campaigns == fold([b, a]).campaigns


# --- R/F/M at a moment (the catalogue's rfm group) --------------------------------------------


def test_rfm_of_a_customer_with_orders() -> None:
    state = fold(MIXED)
    as_of = T0 + 2 * DAY + 2.5 * DAY
    features = snapshot("c-1", state, CONFIG, as_of)
    assert features["recency_days"] == pytest.approx(2.5)  # last purchase at +2 d
    assert features["tenure_days"] == pytest.approx(5.5)  # first seen at -1 d
    assert features["frequency"] == 3
    assert features["monetary"] == 120.0
    assert features["avg_order_value"] == pytest.approx(40.0)


def test_rfm_without_orders() -> None:
    state = fold([ev("e1", "login", T0), ev("e2", "session", T0 + DAY)])
    features = snapshot("c-1", state, CONFIG, T0 + 10 * DAY)
    assert features["recency_days"] is None
    assert features["avg_order_value"] is None
    assert features["frequency"] == 0
    assert features["monetary"] == 0.0
    assert features["tenure_days"] == 10.0


def test_rfm_defaults_to_the_latest_event() -> None:
    state = fold([ev("e1", "purchase", T0, 3), ev("e2", "login", T0 + 20 * DAY)])
    features = snapshot("c-1", state, CONFIG)
    assert features.as_of == T0 + 20 * DAY
    assert features["recency_days"] == 20.0  # from the latest purchase, not the latest event
    assert features["tenure_days"] == 20.0


def test_rfm_at_the_first_event() -> None:
    features = snapshot("c-1", fold([ev("e1", "purchase", T0, 3)]), CONFIG, T0)
    assert (features["recency_days"], features["tenure_days"], features["frequency"]) == (0.0, 0.0, 1)
    assert (features["monetary"], features["avg_order_value"]) == (3.0, 3.0)


def test_rfm_before_the_latest_event_is_refused() -> None:
    state = fold([ev("e1", "purchase", T0, 3)])
    with pytest.raises(ValueError, match="earlier than"):
        snapshot("c-1", state, CONFIG, T0 - 1)


def test_rfm_monetary_from_cents() -> None:
    state = fold([ev(f"e{i}", "purchase", T0, 10.01) for i in range(3)])
    features = snapshot("c-1", state, CONFIG, T0)
    assert features["monetary"] == 30.03
    assert features["avg_order_value"] == pytest.approx(10.01)


def test_purchase_windows_count_whole_utc_days() -> None:
    # 30-day window as of day D counts days D-29..D; T0 is day 19675
    events = [
        ev("e1", "purchase", T0, 1),  # day 19675
        ev("e2", "purchase", T0 + 2 * DAY, 2),  # day 19677
    ]
    state = fold(events)
    at_day_19704 = (19704 + 0.5) * DAY  # window 19675..19704 sees both
    at_day_19705 = (19705 + 0.5) * DAY  # window 19676..19705 sees only the second
    assert snapshot("c-1", state, CONFIG, at_day_19704)["orders_30d"] == 2
    assert snapshot("c-1", state, CONFIG, at_day_19704)["revenue_30d"] == 3.0
    assert snapshot("c-1", state, CONFIG, at_day_19705)["orders_30d"] == 1
    assert snapshot("c-1", state, CONFIG, at_day_19705)["revenue_30d"] == 2.0


# --- to_minor_units --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0, 0),
        (0.0, 0),
        (1, 100),
        (12.34, 1234),
        (0.29, 29),  # 0.29 * 100 == 28.999999999999996 in binary
        (19.99, 1999),
        (1.1, 110),
        (4.35, 435),
        (99_999_999.99, 9_999_999_999),
        # exactly representable halves of a cent: half-even
        (0.125, 12),
        (0.375, 38),
        (0.625, 62),
        (0.875, 88),
        (-0.125, -12),
    ],
)
def test_to_minor_units(amount: float, expected: int) -> None:
    assert to_minor_units(amount) == expected
    assert isinstance(to_minor_units(amount), int)


@given(st.integers(min_value=0, max_value=10**11))
def test_two_decimal_amounts_are_exact(minor: int) -> None:
    amount = float(Decimal(minor) / 100)
    assert to_minor_units(amount) == minor == cents(amount)


@pytest.mark.parametrize(("amount", "expected"), [(1.015, 102), (0.575, 58), (1.225, 122), (0.545, 54)])
def test_half_cent_amounts_round_half_even(amount: float, expected: int) -> None:
    assert cents(amount) == expected  # the expectation, recomputed with Decimal
    assert to_minor_units(amount) == expected


# --- serialisation ---------------------------------------------------------------------------


def test_to_dict_from_dict_round_trip() -> None:
    state = fold(MIXED)
    data = state.to_dict()
    assert {k: data[k] for k in core(state)} == expected_core(MIXED)
    restored = CustomerState.from_dict(data)
    assert restored == state
    assert restored is not state


def test_from_dict_rejects_unknown_keys() -> None:
    data = fold(MIXED).to_dict()
    data["lifetime_value"] = 1
    with pytest.raises(TypeError, match="lifetime_value"):
        CustomerState.from_dict(data)


def test_from_dict_requires_the_times() -> None:
    with pytest.raises(TypeError, match="first_ts"):
        CustomerState.from_dict({"last_ts": T0})


def test_day_index_of_t0() -> None:
    # the constant the hand-written buckets above rely on
    assert day(T0) == 19675 == math.floor(T0 / DAY)
