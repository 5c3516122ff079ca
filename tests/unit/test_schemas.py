"""Event schema v1: valid and invalid envelopes, the reasons a dead letter carries, wire round trip.

Expected values are written out by hand here (the tables below restate the schema), not taken
from ``engine.schemas``; the only thing read from the module is what is under test.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.schemas import ATTRIBUTE_SPECS, InvalidEvent, event_to_wire, validate_event
from features.event import Event

TS_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
TS_S = 1_700_000_000.0

# A minimal valid attrs map per event type, written from the schema documentation.
VALID_ATTRS: dict[str, dict[str, Any]] = {
    "purchase": {"amount": 19.99, "currency": "EUR", "product": "basic"},
    "login": {},
    "session": {},
    "feature_used": {"feature": "export"},
    "support_ticket": {"ticket_id": "T-1", "status": "opened", "severity": "high"},
    "page_view": {"page": "/pricing"},
    "app_click": {"element": "buy-button"},
    "call_center": {"reason": "billing"},
    "product_holding": {"product": "savings", "balance": 1200.5},
    "campaign_response": {"campaign": "spring", "variant": "A", "outcome": "clicked"},
    "score": {"model": "rf_churn", "value": 0.83, "version": "rf-2026-11-30"},
}

# (type, attribute, kind, required, choices, non_negative) as the schema documents them.
ATTRIBUTE_TABLE: list[tuple[str, str, str, bool, tuple[str, ...], bool]] = [
    ("purchase", "amount", "number", True, (), True),
    ("purchase", "currency", "str", True, (), False),
    ("purchase", "product", "str", True, (), False),
    ("login", "channel", "str", False, (), False),
    ("session", "duration_s", "number", False, (), True),
    ("feature_used", "feature", "str", True, (), False),
    ("support_ticket", "ticket_id", "str", True, (), False),
    ("support_ticket", "status", "str", True, ("opened", "closed"), False),
    ("support_ticket", "severity", "str", True, ("low", "medium", "high", "critical"), False),
    ("page_view", "page", "str", True, (), False),
    ("app_click", "element", "str", True, (), False),
    ("call_center", "reason", "str", True, (), False),
    ("product_holding", "product", "str", True, (), False),
    ("product_holding", "balance", "number", True, (), False),
    ("campaign_response", "campaign", "str", True, (), False),
    ("campaign_response", "variant", "str", True, (), False),
    (
        "campaign_response",
        "outcome",
        "str",
        True,
        ("delivered", "opened", "clicked", "converted", "unsubscribed"),
        False,
    ),
    ("score", "model", "str", True, (), False),
    ("score", "value", "number", True, (), False),
    ("score", "version", "str", True, (), False),
    ("score", "as_of", "number", False, (), False),
]

ALL_TYPES_TEXT = (
    "purchase, login, session, feature_used, support_ticket, page_view, app_click, "
    "call_center, product_holding, campaign_response, score"
)


def envelope(event_type: str = "login", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": event_type,
        "ts": TS_MS,
        "attrs": dict(VALID_ATTRS[event_type]),
    }
    base.update(overrides)
    return base


def with_attrs(event_type: str, **changes: Any) -> dict[str, Any]:
    attrs = dict(VALID_ATTRS[event_type])
    attrs.update(changes)
    return envelope(event_type, attrs=attrs)


def without_attr(event_type: str, name: str) -> dict[str, Any]:
    attrs = dict(VALID_ATTRS[event_type])
    del attrs[name]
    return envelope(event_type, attrs=attrs)


def without_key(key: str, event_type: str = "login") -> dict[str, Any]:
    env = envelope(event_type)
    del env[key]
    return env


def reason_of(env: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        validate_event(env, **kwargs)
    return str(info.value)


# --- the tables themselves --------------------------------------------------------------------


def test_attribute_specs_match_the_documented_table() -> None:
    documented = {
        (t, name, kind, required, choices, nonneg)
        for t, name, kind, required, choices, nonneg in ATTRIBUTE_TABLE
    }
    actual = {
        (t, name, spec.kind, spec.required, spec.choices, spec.non_negative)
        for t, specs in ATTRIBUTE_SPECS.items()
        for name, spec in specs.items()
    }
    assert actual == documented
    assert set(VALID_ATTRS) == set(ATTRIBUTE_SPECS)


# --- valid envelopes --------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(VALID_ATTRS))
def test_valid_envelope_of_every_type(event_type: str) -> None:
    event = validate_event(envelope(event_type))
    assert event == Event(
        event_id="e-1",
        customer_id="c-1",
        type=event_type,
        ts=TS_S,
        attrs=VALID_ATTRS[event_type],
    )


@pytest.mark.parametrize(
    ("event_type", "attrs"),
    [
        ("login", {"channel": "web"}),
        ("session", {"duration_s": 0}),
        ("session", {"duration_s": 12.5}),
        ("purchase", {"amount": 0, "currency": "EUR", "product": "free"}),
        ("purchase", {"amount": 5, "currency": "EUR", "product": "int-amount"}),
        ("product_holding", {"product": "loan", "balance": -2500.75}),  # balance may be negative
        ("support_ticket", {"ticket_id": "T-9", "status": "closed", "severity": "low"}),
        ("support_ticket", {"ticket_id": "T-9", "status": "opened", "severity": "critical"}),
        ("campaign_response", {"campaign": "c", "variant": "B", "outcome": "unsubscribed"}),
    ],
)
def test_valid_attribute_variants(event_type: str, attrs: dict[str, Any]) -> None:
    assert validate_event(envelope(event_type, attrs=attrs)).attrs == attrs


def test_version_is_optional_and_defaults_to_1() -> None:
    assert validate_event(without_key("v")).type == "login"


@pytest.mark.parametrize("attrs", [None, {}])
def test_missing_or_null_attrs_is_an_empty_map_for_types_without_required_attrs(attrs: Any) -> None:
    env = envelope("login", attrs=attrs)
    assert validate_event(env).attrs == {}
    assert validate_event(without_key("attrs")).attrs == {}


def test_extra_attrs_are_kept_unchecked() -> None:
    env = with_attrs("purchase", coupon="SPRING", items=[1, 2], note=None)
    event = validate_event(env)
    assert event.attrs == {
        "amount": 19.99,
        "currency": "EUR",
        "product": "basic",
        "coupon": "SPRING",
        "items": [1, 2],
        "note": None,
    }


def test_ids_of_128_characters_are_accepted() -> None:
    event = validate_event(envelope(event_id="e" * 128, customer_id="c" * 128))
    assert (event.event_id, event.customer_id) == ("e" * 128, "c" * 128)


# --- event time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected_seconds"),
    [
        (TS_MS, TS_S),
        (TS_MS + 123, TS_S + 0.123),
        (float(TS_MS), TS_S),
        ("2023-11-14T22:13:20Z", TS_S),
        ("2023-11-14T22:13:20.250Z", TS_S + 0.25),
        ("2023-11-14T22:13:20+00:00", TS_S),
        ("2023-11-15T00:13:20+02:00", TS_S),
        ("2023-11-14T17:13:20-05:00", TS_S),
        ("2023-11-15T03:43:20+05:30", TS_S),
    ],
)
def test_ts_forms(ts: Any, expected_seconds: float) -> None:
    assert validate_event(envelope(ts=ts)).ts == pytest.approx(expected_seconds, abs=1e-6)


def _epoch_ms(year: int) -> int:
    return round(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)


# The lowest epoch number read as milliseconds: below it, a number is a time before 2100 in seconds.
SECONDS_LIMIT = 4_102_444_800
SECONDS = "looks like epoch seconds, not milliseconds (read as milliseconds it is in early 1970)"
MICROSECONDS = "looks like epoch microseconds, not milliseconds (read as milliseconds it is after 2100)"


def test_ts_range_bounds_are_inclusive() -> None:
    high = _epoch_ms(2100)
    assert validate_event(envelope(ts="1970-01-01T00:00:00Z")).ts == 0
    assert validate_event(envelope(ts="1969-12-31T23:00:00-01:00")).ts == 0
    assert validate_event(envelope(ts=SECONDS_LIMIT)).ts == SECONDS_LIMIT / 1000
    assert validate_event(envelope(ts=high)).ts == high / 1000
    assert validate_event(envelope(ts="2100-01-01T00:00:00Z")).ts == high / 1000
    before = "1969-12-31T23:59:59Z"
    assert reason_of(envelope(ts=before)) == f"ts {before!r} is outside 1970-01-01..2100-01-01"
    assert reason_of(envelope(ts=SECONDS_LIMIT - 1)) == f"ts {SECONDS_LIMIT - 1} {SECONDS}"
    assert reason_of(envelope(ts=high + 1)) == f"ts {high + 1} {MICROSECONDS}"
    assert "is outside 1970-01-01..2100-01-01" in reason_of(envelope(ts="2100-01-01T00:00:00.001Z"))


def test_a_huge_epoch_number_is_quoted_shortly_in_its_reason() -> None:
    # A JSON integer of 300 digits is finite (within the float range) but far outside 2100; its
    # reason is a dead letter's and a log line's, so it quotes the number cut short.
    huge = 10**300
    reason = reason_of(envelope(ts=huge))
    assert reason.startswith("ts 1000") and reason.endswith(
        "is outside 1970-01-01..2100-01-01 (epoch milliseconds expected)"
    )
    assert len(reason) < 160
    assert len(reason_of(envelope(ts=-huge))) < 160


def test_times_of_the_1970s_to_1990s_are_event_times() -> None:
    for text, year in (("1997-12-01T00:00:00Z", 1997), ("1975-06-30T12:00:00+02:00", 1975)):
        millis = round(datetime.fromisoformat(text).timestamp() * 1000)
        assert datetime.fromtimestamp(validate_event(envelope(ts=text)).ts, tz=UTC).year == year
        assert validate_event(envelope(ts=millis)).ts == millis / 1000


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        # epoch seconds instead of milliseconds would land in 1970: told by magnitude
        (1_700_000_000, f"ts 1700000000 {SECONDS}"),
        (880_934_400, f"ts 880934400 {SECONDS}"),  # 1997-12-01 in seconds
        (0, f"ts 0 {SECONDS}"),
        # microseconds would land after 2100
        (TS_MS * 1000, f"ts {TS_MS * 1000} {MICROSECONDS}"),
        (TS_MS * 1_000_000, "is outside 1970-01-01..2100-01-01 (epoch milliseconds expected)"),
        (-1, "ts -1 is outside 1970-01-01..2100-01-01 (epoch milliseconds expected)"),
        ("1969-12-31T23:59:59Z", "ts '1969-12-31T23:59:59Z' is outside 1970-01-01..2100-01-01"),
        (True, "ts must be epoch milliseconds or an RFC 3339 string, got a boolean"),
        (False, "ts must be epoch milliseconds or an RFC 3339 string, got a boolean"),
        (None, "ts must be epoch milliseconds or an RFC 3339 string, got NoneType"),
        ([TS_MS], "ts must be epoch milliseconds or an RFC 3339 string, got list"),
        (math.nan, "ts must be finite"),
        (math.inf, "ts must be finite"),
        ("2023-11-14T22:13:20", "ts '2023-11-14T22:13:20' has no time zone"),
        ("2023-11-14", "ts '2023-11-14' has no time zone"),
        ("yesterday", "ts 'yesterday' is not an RFC 3339 timestamp"),
        ("", "ts '' is not an RFC 3339 timestamp"),
        ("1700000000000", "ts '1700000000000' is not an RFC 3339 timestamp"),
    ],
)
def test_bad_ts(ts: Any, reason: str) -> None:
    assert reason in reason_of(envelope(ts=ts))


def test_missing_ts() -> None:
    assert reason_of(without_key("ts")) == "missing ts"


def test_lowercase_z_is_rfc3339() -> None:
    assert validate_event(envelope(ts="2023-11-14T22:13:20z")).ts == TS_S


# --- envelope-level errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ([], "event must be a map, got list"),
        ("event", "event must be a map, got str"),
        (None, "event must be a map, got NoneType"),
        (envelope(v=2), "unsupported schema version 2 (this worker reads v1)"),
        (envelope(v=0), "unsupported schema version 0 (this worker reads v1)"),
        (envelope(v="1"), "unsupported schema version '1' (this worker reads v1)"),
        (without_key("event_id"), "missing event_id"),
        (envelope(event_id=None), "missing event_id"),
        (envelope(event_id=7), "event_id must be a string, got int"),
        (envelope(event_id=""), "event_id must be 1-128 characters"),
        (envelope(event_id="e" * 129), "event_id must be 1-128 characters"),
        (without_key("customer_id"), "missing customer_id"),
        (envelope(customer_id=None), "missing customer_id"),
        (envelope(customer_id=42), "customer_id must be a string, got int"),
        (envelope(customer_id=True), "customer_id must be a string, got bool"),
        (envelope(customer_id=""), "customer_id must be 1-128 characters"),
        (envelope(customer_id="c" * 129), "customer_id must be 1-128 characters"),
        (envelope(type="refund"), f"unknown type 'refund'; expected one of {ALL_TYPES_TEXT}"),
        (envelope(type="Purchase"), "unknown type 'Purchase'"),
        (without_key("type"), "unknown type None"),
        (envelope(attrs=["channel", "web"]), "attrs must be a map, got list"),
        (envelope(attrs="channel=web"), "attrs must be a map, got str"),
        (envelope(attrs=3), "attrs must be a map, got int"),
    ],
)
def test_invalid_envelopes(env: Any, reason: str) -> None:
    assert reason in reason_of(env)


def test_null_attrs_still_requires_the_required_ones() -> None:
    assert reason_of(envelope("purchase", attrs=None)) == "missing attrs.amount for purchase"


@pytest.mark.parametrize("bad_type", [["purchase"], {"name": "purchase"}])
def test_unhashable_type_is_an_invalid_event(bad_type: Any) -> None:
    assert "unknown type" in reason_of(envelope(type=bad_type))


# --- per-attribute errors, for every attribute of every type ----------------------------------


REQUIRED = [(t, name) for t, name, _kind, required, _c, _n in ATTRIBUTE_TABLE if required]
STRINGS = [(t, name) for t, name, kind, _r, _c, _n in ATTRIBUTE_TABLE if kind == "str"]
NUMBERS = [(t, name) for t, name, kind, _r, _c, _n in ATTRIBUTE_TABLE if kind == "number"]
NON_NEGATIVE = [(t, name) for t, name, _k, _r, _c, nonneg in ATTRIBUTE_TABLE if nonneg]
CHOICES = [(t, name, choices) for t, name, _k, _r, choices, _n in ATTRIBUTE_TABLE if choices]


@pytest.mark.parametrize(("event_type", "name"), REQUIRED)
def test_missing_required_attribute(event_type: str, name: str) -> None:
    assert reason_of(without_attr(event_type, name)) == f"missing attrs.{name} for {event_type}"


@pytest.mark.parametrize(("event_type", "name"), STRINGS)
@pytest.mark.parametrize("bad", [5, 1.5, True, None, "", ["x"], {"x": 1}])
def test_string_attribute_must_be_non_empty_string(event_type: str, name: str, bad: Any) -> None:
    reason = reason_of(with_attrs(event_type, **{name: bad}))
    assert reason == f"attrs.{name} of {event_type} must be a non-empty string"


@pytest.mark.parametrize(("event_type", "name"), NUMBERS)
@pytest.mark.parametrize(
    ("bad", "got"),
    [(True, "bool"), (False, "bool"), ("12.5", "str"), (None, "NoneType"), ([1], "list"), ({}, "dict")],
)
def test_number_attribute_type(event_type: str, name: str, bad: Any, got: str) -> None:
    reason = reason_of(with_attrs(event_type, **{name: bad}))
    assert reason == f"attrs.{name} of {event_type} must be a number, got {got}"


@pytest.mark.parametrize(("event_type", "name"), NUMBERS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_number_attribute_must_be_finite(event_type: str, name: str, bad: float) -> None:
    assert reason_of(with_attrs(event_type, **{name: bad})) == f"attrs.{name} of {event_type} must be finite"


@pytest.mark.parametrize(("event_type", "name"), NON_NEGATIVE)
@pytest.mark.parametrize("bad", [-0.01, -1, -1e9])
def test_non_negative_attribute(event_type: str, name: str, bad: float) -> None:
    reason = reason_of(with_attrs(event_type, **{name: bad}))
    assert reason == f"attrs.{name} of {event_type} must not be negative"


@pytest.mark.parametrize(("event_type", "name", "choices"), CHOICES)
@pytest.mark.parametrize("bad", ["urgent", "OPENED", " opened", "unknown"])
def test_choice_attribute(event_type: str, name: str, choices: tuple[str, ...], bad: str) -> None:
    reason = reason_of(with_attrs(event_type, **{name: bad}))
    assert reason == f"attrs.{name} of {event_type} must be one of {', '.join(choices)}; got {bad!r}"


@pytest.mark.parametrize(("event_type", "name", "choices"), CHOICES)
def test_every_choice_is_accepted(event_type: str, name: str, choices: tuple[str, ...]) -> None:
    for choice in choices:
        assert validate_event(with_attrs(event_type, **{name: choice})).attrs[name] == choice


def test_first_failing_required_attribute_is_reported() -> None:
    # purchase attributes are checked in the documented order: amount, currency, product
    env = envelope("purchase", attrs={"currency": 3})
    assert reason_of(env) == "missing attrs.amount for purchase"


# --- currency --------------------------------------------------------------------------------


def test_any_currency_accepted_when_none_configured() -> None:
    assert validate_event(with_attrs("purchase", currency="USD")).attrs["currency"] == "USD"


def test_configured_currency_accepted() -> None:
    assert validate_event(with_attrs("purchase", currency="EUR"), currency="EUR").type == "purchase"


def test_other_currency_rejected_when_configured() -> None:
    reason = reason_of(with_attrs("purchase", currency="USD"), currency="EUR")
    assert reason == "purchase currency 'USD' is not the configured 'EUR'"


def test_currency_comparison_is_exact() -> None:
    assert "is not the configured 'EUR'" in reason_of(with_attrs("purchase", currency="eur"), currency="EUR")


def test_currency_only_applies_to_purchases() -> None:
    env = envelope("product_holding", attrs={"product": "fx", "balance": 10, "currency": "USD"})
    assert validate_event(env, currency="EUR").attrs["currency"] == "USD"


# --- score events (an external batch job's score) ---------------------------------------------

BAD_MODEL = "must match [a-z][a-z0-9_]{0,47} (lowercase letter, then up to 47 of a-z 0-9 _)"
RESERVED = "is an engine score name (churn, clv, propensity_*, p_alive, expected_purchases_*, clv_*)"


@pytest.mark.parametrize(
    "attrs",
    [
        {"model": "rf_churn", "value": 0.83, "version": "rf-2026-11-30", "as_of": TS_MS},
        {"model": "rf_churn", "value": -3, "version": "v", "as_of": TS_MS - 86_400_000},
        {"model": "a" * 48, "value": 0, "version": "v" * 128},
        {"model": "x", "value": 1e300, "version": "2026-11-30"},
        {"model": "churn_rf", "value": 0.1, "version": "v"},  # only the exact names and prefixes are taken
        {"model": "clvx", "value": 0.1, "version": "v"},
    ],
)
def test_valid_score_events(attrs: dict[str, Any]) -> None:
    assert validate_event(envelope("score", attrs=attrs)).attrs == attrs


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("RF", BAD_MODEL),
        ("1rf", BAD_MODEL),
        ("_rf", BAD_MODEL),
        ("rf-churn", BAD_MODEL),
        ("rf churn", BAD_MODEL),
        ("rf_churn\n", BAD_MODEL),
        ("a" * 49, BAD_MODEL),
        ("churn", RESERVED),
        ("clv", RESERVED),
        ("p_alive", RESERVED),
        ("propensity_savings", RESERVED),
        ("expected_purchases_90d", RESERVED),
        ("clv_90d", RESERVED),
    ],
)
def test_score_model_must_be_a_safe_external_name(model: str, problem: str) -> None:
    assert reason_of(with_attrs("score", model=model)) == f"attrs.model of score {model!r} {problem}"


def test_score_version_is_at_most_128_characters() -> None:
    reason = reason_of(with_attrs("score", version="v" * 129))
    assert reason == "attrs.version of score must be 1-128 characters"


@pytest.mark.parametrize(
    ("as_of", "problem"),
    [
        (-1, "is outside 1970-01-01..2100-01-01 (epoch milliseconds expected)"),
        (1_700_000_000, SECONDS),
        (4_102_444_800_001, MICROSECONDS),
        (10**16, "is outside 1970-01-01..2100-01-01 (epoch milliseconds expected)"),
    ],
)
def test_score_as_of_must_be_epoch_milliseconds_in_range(as_of: int, problem: str) -> None:
    assert reason_of(with_attrs("score", as_of=as_of)) == f"attrs.as_of of score {problem}"


def test_score_as_of_may_be_in_the_1990s() -> None:
    as_of = 880_934_400_000  # 1997-12-01
    assert validate_event(with_attrs("score", as_of=as_of)).attrs["as_of"] == as_of


def test_score_as_of_may_equal_but_not_follow_the_event_time() -> None:
    assert validate_event(with_attrs("score", as_of=TS_MS)).attrs["as_of"] == TS_MS
    assert reason_of(with_attrs("score", as_of=TS_MS + 1)) == "attrs.as_of of score is after the event's ts"
    env = with_attrs("score", as_of=TS_MS + 1000)
    env["ts"] = "2023-11-14T22:13:21Z"  # the same instant as TS_MS + 1000, as RFC 3339
    assert validate_event(env).attrs["as_of"] == TS_MS + 1000


# --- wire round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(VALID_ATTRS))
def test_event_to_wire_round_trip(event_type: str) -> None:
    event = validate_event(envelope(event_type, ts=TS_MS + 7))
    wire = event_to_wire(event)
    assert wire == {
        "v": 1,
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": event_type,
        "ts": TS_MS + 7,
        "attrs": VALID_ATTRS[event_type],
    }
    assert isinstance(wire["ts"], int)
    # through JSON text too, as a producer would send it
    assert validate_event(json.loads(json.dumps(wire))) == event


def test_event_to_wire_of_rfc3339_input_is_epoch_ms() -> None:
    event = validate_event(envelope(ts="2023-11-15T00:13:20.5+02:00"))
    assert event_to_wire(event)["ts"] == TS_MS + 500


def test_event_to_wire_copies_attrs() -> None:
    event = validate_event(envelope("page_view"))
    wire = event_to_wire(event)
    wire["attrs"]["page"] = "changed"
    assert event.attrs["page"] == "/pricing"


@given(st.integers(min_value=_epoch_ms(2000), max_value=_epoch_ms(2100)))
def test_ts_milliseconds_survive_the_round_trip(ms: int) -> None:
    event = validate_event(envelope(ts=ms))
    assert event_to_wire(event)["ts"] == ms
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert abs(event.ts - expected.timestamp()) < 1e-6


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 2),
        max_value=datetime(2099, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
        ),
    )
)
def test_rfc3339_strings_match_their_instant(moment: datetime) -> None:
    moment = moment.replace(microsecond=(moment.microsecond // 1000) * 1000)
    text = moment.isoformat().replace("+00:00", "Z")
    event = validate_event(envelope(ts=text))
    expected_ms = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert event_to_wire(event)["ts"] == expected_ms


# --- the reasons as the dead-letter queue carries them (SegmentPipeline.decode is pure) --------


def _pipeline(currency: str | None = "EUR") -> Any:
    # imported here so that the schema tests above do not depend on the pipeline module
    from engine.stream.customer_step import StepConfig
    from engine.stream.pipeline import PipelineConfig, SegmentPipeline
    from features.config import FeatureConfig
    from models.labels import LabelRules

    step = StepConfig(features=FeatureConfig(), labels=LabelRules(), input_names=())
    config = PipelineConfig(step=step, currency=currency)
    # decode never touches the store, the models or the rules; placeholders stand in for them here only.
    return SegmentPipeline(
        store=SimpleNamespace(client=None, prefix="t"),  # type: ignore[arg-type]
        config=config,
        models=SimpleNamespace(at=None),  # type: ignore[arg-type]
        rules=object(),  # type: ignore[arg-type]
        clock=lambda: 1_700_000_123.4567,
    )


def _record(value: bytes | None, key: bytes | None = b"c-1", offset: int = 0) -> Any:
    from engine.stream.pipeline import RawRecord

    return RawRecord(topic="events", partition=2, offset=offset, key=key, value=value)


def _json(env: Any) -> bytes:
    return json.dumps(env).encode()


def test_decode_splits_valid_and_dead_letters_with_reasons() -> None:
    records = [
        _record(_json(envelope("purchase")), offset=10),
        _record(_json(with_attrs("purchase", currency="USD")), offset=11),
        _record(_json(with_attrs("support_ticket", severity="urgent")), offset=12),
        _record(_json(envelope(ts=1_700_000_000)), offset=13),
        _record(_json(envelope(v=2)), offset=14),
        _record(b"", offset=15),
        _record(None, key=None, offset=16),
        _record(_json(envelope(customer_id="c-2")), key=b"c-1", offset=17),
        _record(_json(envelope("login")), key=None, offset=18),
    ]
    events, dead = _pipeline().decode(records)
    assert [(p.event.type, p.partition, p.offset) for p in events] == [("purchase", 2, 10), ("login", 2, 18)]
    reasons = {d.offset: d.reason for d in dead}
    assert reasons == {
        11: "purchase currency 'USD' is not the configured 'EUR'",
        12: "attrs.severity of support_ticket must be one of low, medium, high, critical; got 'urgent'",
        13: f"ts 1700000000 {SECONDS}",
        14: "unsupported schema version 2 (this worker reads v1)",
        15: "empty payload",
        16: "empty payload",
        17: "message key 'c-1' differs from customer_id 'c-2'",
    }
    for letter in dead:
        original = next(r for r in records if r.offset == letter.offset)
        assert letter.raw == (original.value or b"")
        assert letter.key == original.key
        assert (letter.topic, letter.partition) == ("events", 2)
        assert letter.failed_ts_ms == 1_700_000_123_457


def test_decode_without_configured_currency_accepts_any() -> None:
    events, dead = _pipeline(currency=None).decode([_record(_json(with_attrs("purchase", currency="USD")))])
    assert (len(events), dead) == (1, [])


def test_decode_dead_letters_an_unhashable_type() -> None:
    events, dead = _pipeline().decode([_record(_json(envelope(type=["login"])))])
    assert events == []
    assert len(dead) == 1
