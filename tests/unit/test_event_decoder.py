"""``decode_event`` (msgspec fast path) against the slow path ``validate_event(decode_payload(raw))``.

For every input both must give an equal ``Event`` (same ts float, attrs in the same order with
the same Python types) or the same ``InvalidEvent`` reason; and valid events must not be
decoded a second time by the slow path.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import engine.event_decoder as event_decoder
from engine.codecs import decode_payload
from engine.event_decoder import decode_event
from engine.schemas import InvalidEvent, external_model_problem, validate_event
from features.event import EVENT_TYPES, Event

TS_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
# The lowest epoch number taken as milliseconds (below: seconds, engine.schemas.SECONDS_LIMIT) and
# 2100-01-01, inclusive; RFC 3339 strings from 1970-01-01 on.
MIN_MS, MAX_MS = 4_102_444_800, 4_102_444_800_000

Outcome = tuple[Any, ...]


def slow(raw: bytes | None, currency: str | None = None) -> Event:
    return validate_event(decode_payload(raw), currency=currency)


def canonical(value: Any) -> Any:
    """A comparable form that keeps types, order, -0.0 and NaN apart (``==`` does not)."""
    if isinstance(value, Event):
        return (
            "Event",
            value.event_id,
            value.customer_id,
            value.type,
            canonical(value.ts),
            canonical(value.attrs),
        )
    if isinstance(value, dict):
        return ("dict", [(canonical(k), canonical(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [canonical(v) for v in value])
    return (type(value).__name__, repr(value))


def outcome(
    decode: Callable[[bytes | None, str | None], Event], raw: bytes | None, currency: str | None
) -> Outcome:
    try:
        event = decode(raw, currency)
    except InvalidEvent as exc:
        return ("invalid", str(exc))
    except Exception as exc:  # the slow path lets a few other errors through (huge JSON ints); so must we
        return ("raises", type(exc).__name__, str(exc))
    return ("event", canonical(event))


def assert_same(raw: bytes | None, currency: str | None = None) -> Outcome:
    expected = outcome(slow, raw, currency)
    assert outcome(decode_event, raw, currency) == expected
    return expected


def forbidden(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("decode_event fell back to the slow path")


def forbid_slow_path(patch: pytest.MonkeyPatch) -> None:
    """Make any use of the slow path inside ``decode_event`` fail the test."""
    patch.setattr(event_decoder, "decode_payload", forbidden)
    patch.setattr(event_decoder, "validate_event", forbidden)


@pytest.fixture()
def no_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_slow_path(monkeypatch)


# --- strategies ------------------------------------------------------------------------------

TEXT = st.text(min_size=1, max_size=12)
NUMBER = st.integers(-(10**9), 10**9) | st.floats(allow_nan=False, allow_infinity=False)
MONEY = st.integers(-(10**12), 10**12) | st.floats(-1e12, 1e12)  # engine.schemas.MAX_MONEY
NON_NEGATIVE = st.integers(0, 10**9) | st.floats(min_value=0.0, allow_infinity=False)
AMOUNT = st.integers(0, 10**12) | st.floats(0.0, 1e12)

# Valid attrs per type, written from the schema documentation (README / engine.schemas docstring).
VALID_ATTRS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "purchase": st.fixed_dictionaries(
        {"amount": AMOUNT, "currency": st.sampled_from(["EUR", "USD", "eur"]), "product": TEXT}
    ),
    "login": st.fixed_dictionaries({}, optional={"channel": TEXT}),
    "session": st.fixed_dictionaries({}, optional={"duration_s": NON_NEGATIVE}),
    "feature_used": st.fixed_dictionaries({"feature": TEXT}),
    "support_ticket": st.fixed_dictionaries(
        {
            "ticket_id": TEXT,
            "status": st.sampled_from(["opened", "closed"]),
            "severity": st.sampled_from(["low", "medium", "high", "critical"]),
        }
    ),
    "page_view": st.fixed_dictionaries({"page": TEXT}),
    "app_click": st.fixed_dictionaries({"element": TEXT}),
    "call_center": st.fixed_dictionaries({"reason": TEXT}),
    "product_holding": st.fixed_dictionaries({"product": TEXT, "balance": MONEY}),
    "campaign_response": st.fixed_dictionaries(
        {
            "campaign": TEXT,
            "variant": TEXT,
            "outcome": st.sampled_from(["delivered", "opened", "clicked", "converted", "unsubscribed"]),
        }
    ),
    # as_of of MIN_MS (1970-02-17) is never after a valid ts; names from the safe pattern, none reserved
    "score": st.fixed_dictionaries(
        {
            "model": st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
                lambda name: external_model_problem(name) is None
            ),
            "value": NUMBER,
            "version": TEXT,
        },
        optional={"as_of": st.just(MIN_MS)},
    ),
}
assert set(VALID_ATTRS) == set(EVENT_TYPES)
ATTR_NAMES = ["amount", "currency", "product", "channel", "duration_s", "feature", "ticket_id", "status"]
ATTR_NAMES += ["severity", "page", "element", "reason", "balance", "campaign", "variant", "outcome"]
ATTR_NAMES += ["model", "value", "version", "as_of"]

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)), timezone(timedelta(0))]
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """Timestamp text, with or without a zone, in the forms producers write (and some they should not)."""
    moment = draw(
        st.datetimes(
            min_value=datetime(1990, 1, 1), max_value=datetime(2110, 1, 1), timezones=st.none() | ZONES
        )
    )
    spec = draw(st.sampled_from(["auto", "seconds", "milliseconds", "microseconds", "minutes", "hours"]))
    text = moment.isoformat(sep=draw(st.sampled_from(["T", " ", "t"])), timespec=spec)
    if text.endswith("+00:00"):
        text = text[:-6] + draw(st.sampled_from(["Z", "z", "+00:00", "-00:00"]))
    return draw(st.sampled_from([text, text, text, text[:10], text[:-1], text + "Z", text + "x"]))


VALID_TS = st.integers(MIN_MS, MAX_MS) | st.floats(MIN_MS, MAX_MS) | rfc3339()
ANY_TS = st.one_of(
    VALID_TS,
    st.integers(),
    st.floats(),
    st.sampled_from([MIN_MS - 1, MAX_MS + 1, 1_700_000_000, -1, 0, 2**63, 2**64 - 1, 10**400]),
    st.sampled_from([MAX_MS * 1000, MAX_MS * 1000 + 1, MIN_MS - 0.5, -0.0, 880_934_400_000]),
    st.sampled_from(["1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999Z", "1997-12-01", "1997-12-01T00:00Z"]),
    st.text(max_size=30),
)
IDS = st.text(min_size=1, max_size=128) | st.sampled_from(["c" * 128, "\U0001f600" * 128, "Zoë-ß", "c\x00"])
BAD_IDS = st.sampled_from(["", "c" * 129, "\U0001f600" * 129, 7, None, True, 1.5, ["c"], b"c-1"])

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 10**30, 10**400]),
    st.floats(),
    st.floats(width=32),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS | st.binary(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
MSGPACK_ONLY = st.sampled_from([msgpack.ExtType(5, b"x"), msgpack.Timestamp(1_700_000_000, 0), b""])
NASTY = st.one_of(SCALARS, VALUES, BAD_IDS, rfc3339(), MSGPACK_ONLY)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def with_raw_field(env: dict[str, Any], key: str, packed_value: bytes) -> bytes:
    """``env`` as a msgpack map plus one more pair whose value is given already packed.

    msgpack-python refuses to pack more than 511 levels of nesting, but reads up to 1024.
    """
    pairs = [(k, v) for k, v in env.items() if k != key]
    return pack_pairs(pairs, extra=1) + msgpack.packb(key) + packed_value


def packed_nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\x01"


@st.composite
def envelopes(draw: st.DrawFn) -> dict[Any, Any]:
    """A well-formed event of a drawn type, then zero to three mutations, keys in any order."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    attrs: dict[Any, Any] = draw(VALID_ATTRS[event_type])
    if draw(st.integers(0, 3)) == 0:  # extra attributes, kept unchecked
        attrs.update(draw(st.dictionaries(st.text(max_size=8), SCALARS | VALUES, max_size=3)))
    env: dict[Any, Any] = {
        "v": 1,
        "event_id": draw(IDS),
        "customer_id": draw(IDS),
        "type": event_type,
        "ts": draw(VALID_TS),
        "attrs": attrs,
    }
    if draw(st.booleans()):
        del env["v"]
    if not attrs and draw(st.booleans()):
        env["attrs"] = draw(st.sampled_from([None, {}, "absent"]))
        if env["attrs"] == "absent":
            del env["attrs"]
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        mutate(draw, env)
    return dict(draw(st.permutations(list(env.items()))))


def mutate(draw: st.DrawFn, env: dict[Any, Any]) -> None:
    kind = draw(
        st.sampled_from(
            ["drop", "extra", "replace", "attr_drop", "attr_replace", "type", "version", "ts", "ids", "deep"]
        )
    )
    keys = ["v", "event_id", "customer_id", "type", "ts", "attrs"]
    attrs = env.get("attrs")
    if kind == "drop":
        env.pop(draw(st.sampled_from(keys)), None)
    elif kind == "extra":
        key = draw(st.text(max_size=10) | st.sampled_from(["V", "Type", "attrs ", "source"]) | st.integers())
        env[key] = draw(NASTY)
    elif kind == "replace":
        env[draw(st.sampled_from(keys))] = draw(NASTY)
    elif kind == "attr_drop" and isinstance(attrs, dict) and attrs:
        del attrs[draw(st.sampled_from(sorted(attrs, key=repr)))]
    elif kind == "attr_replace" and isinstance(attrs, dict):
        attrs[draw(st.sampled_from(ATTR_NAMES) | st.text(max_size=3))] = draw(NASTY)
    elif kind == "type":
        env["type"] = draw(st.sampled_from(["refund", "Purchase", "", "login ", None, 1, True, ["login"]]))
    elif kind == "version":
        env["v"] = draw(st.sampled_from([2, 0, -1, True, False, 1.0, "1", None, 2**64 - 1, [1]]))
    elif kind == "ts":
        env["ts"] = draw(ANY_TS | NASTY)
    elif kind == "ids":
        env[draw(st.sampled_from(["event_id", "customer_id"]))] = draw(BAD_IDS | IDS)
    elif kind == "deep":  # msgpack-python packs at most 511 levels; deeper ones are explicit examples
        value = nested(draw(st.sampled_from([2, 50, 400])))
        where = draw(st.sampled_from(["attrs", "ts", "deep", "an attribute"]))
        if where == "an attribute" and isinstance(attrs, dict):
            attrs["deep"] = value
        elif where != "an attribute":
            env[where] = value


def pack(value: Any, *, single_float: bool = False) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True, use_single_float=single_float)
    except (OverflowError, TypeError, ValueError):  # e.g. an int beyond 64 bits
        assume(False)
        raise AssertionError("unreachable") from None


def to_json(value: Any, *, indent: int | None = None, ascii_only: bool = True) -> bytes:
    # bytes and msgpack extension values have no JSON form; their repr is some string.
    try:
        text = json.dumps(value, default=repr, indent=indent, ensure_ascii=ascii_only)
    except (TypeError, ValueError, RecursionError):  # non-string keys that JSON cannot hold, deep nesting
        assume(False)
        raise AssertionError("unreachable") from None
    return text.encode("utf-8", "surrogatepass")


def pack_pairs(pairs: list[tuple[Any, Any]], extra: int = 0) -> bytes:
    """A msgpack map written pair by pair (so keys may repeat); ``extra`` more pairs to follow."""
    count = len(pairs) + extra
    head = bytes([0x80 | count]) if count < 16 else b"\xde" + struct.pack(">H", count)
    return head + b"".join(pack(k) + pack(v) for k, v in pairs)


@st.composite
def payloads(draw: st.DrawFn) -> bytes | None:
    """An envelope encoded as msgpack or JSON, sometimes damaged; or plain garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(
            st.none()
            | st.binary(max_size=40)
            | st.binary(max_size=40).map(lambda b: b"{" + b)
            | st.binary(max_size=40).map(lambda b: b"\x86" + b)
            | st.sampled_from([b"", b" ", b"{}", b"\x80", b"\xc1", b"null", b"[]", b"\x90"])
        )
    env = draw(envelopes())
    how = draw(
        st.sampled_from(["msgpack", "msgpack", "msgpack32", "json", "json-indent", "json-utf8", "dup"])
    )
    if how == "msgpack":
        raw = pack(env)
    elif how == "msgpack32":
        raw = pack(env, single_float=True)
    elif how == "json":
        raw = to_json(env)
    elif how == "json-indent":
        raw = b" \n" + to_json(env, indent=1) + b"\n"
    elif how == "json-utf8":
        raw = to_json(env, ascii_only=False)
    else:  # a key written twice: the last one counts
        pairs = list(env.items())
        key = draw(st.sampled_from([k for k, _ in pairs] or ["type"]))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(NASTY | st.sampled_from(EVENT_TYPES))))
        raw = pack_pairs(pairs)
    damage = draw(st.sampled_from([None, None, None, None, "truncate", "flip", "append"]))
    if damage == "truncate":
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif damage == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    elif damage == "append":
        raw += draw(st.binary(min_size=1, max_size=4))
    return raw


CURRENCIES = st.sampled_from([None, "EUR", "USD"])


# --- the property ------------------------------------------------------------------------------


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), CURRENCIES)
@example(None, None)
@example(b"", "EUR")
def test_same_event_or_same_reason_as_the_slow_path(raw: bytes | None, currency: str | None) -> None:
    assert_same(raw, currency)


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["amount", "extra"]),
)
def test_json_number_text_is_read_as_python_reads_it(number: str, where: str) -> None:
    raw = (
        '{"event_id": "e-1", "customer_id": "c-1", "type": "purchase", "ts": 1700000000000, '
        f'"attrs": {{"amount": {number if where == "amount" else 1}, "currency": "EUR", "product": "p", '
        f'"extra": {number}}}}}'
    ).encode()
    assert_same(raw, "EUR")


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(EVENT_TYPES).flatmap(lambda t: st.tuples(st.just(t), VALID_ATTRS[t])), IDS, IDS, VALID_TS
)
def test_well_formed_events_take_the_fast_path(
    typed_attrs: tuple[str, dict[str, Any]],
    event_id: str,
    customer_id: str,
    ts: Any,
) -> None:
    event_type, attrs = typed_attrs
    env = {
        "v": 1,
        "event_id": event_id,
        "customer_id": customer_id,
        "type": event_type,
        "ts": ts,
        "attrs": attrs,
    }
    try:
        expected = slow(pack(env))
    except InvalidEvent:  # a drawn RFC 3339 text without a zone, or outside 1970..2100
        assume(False)
        raise
    with pytest.MonkeyPatch.context() as patch:
        forbid_slow_path(patch)
        assert canonical(decode_event(pack(env))) == canonical(expected)
        assert canonical(decode_event(to_json(env))) == canonical(expected)


# --- explicit examples ---------------------------------------------------------------------------


def wire(event_type: str = "purchase", **changes: Any) -> dict[str, Any]:
    attrs = {
        "purchase": {"amount": 19.99, "currency": "EUR", "product": "basic"},
        "login": {"channel": "web"},
        "product_holding": {"product": "savings", "balance": -12},
        "score": {"model": "rf_churn", "value": 0.83, "version": "rf-2026-11-30"},
    }[event_type]
    env: dict[str, Any] = {
        "v": 1,
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": event_type,
        "ts": TS_MS,
        "attrs": dict(attrs),
    }
    env.update(changes)
    return env


def test_realistic_workload_is_equal_and_never_falls_back(no_slow_path: None) -> None:
    from engine.ops.bench.setup import build_workload

    workload = build_workload(3000, 300, seed=11)
    for key, value in workload:
        event = decode_event(value, "EUR")
        expected = validate_event(msgpack.unpackb(value), currency="EUR")
        assert canonical(event) == canonical(expected)
        assert event.customer_id == key.decode()
        assert event == decode_event(json.dumps(msgpack.unpackb(value)).encode(), "EUR")


def test_a_valid_event(no_slow_path: None) -> None:
    env = wire(attrs={"amount": 5, "currency": "EUR", "product": "basic", "coupon": "X", "n": None})
    event = decode_event(msgpack.packb(env), "EUR")
    assert event == Event("e-1", "c-1", "purchase", 1_700_000_000.0, env["attrs"])
    assert type(event.attrs["amount"]) is int  # ints stay ints
    assert list(event.attrs) == ["amount", "currency", "product", "coupon", "n"]  # wire order


@pytest.mark.parametrize(
    "env",
    [
        wire("login", attrs=None),
        {k: v for k, v in wire("login").items() if k not in ("attrs", "v")},
        wire("login", ts="2023-11-15T00:13:20.25+02:00"),
        wire("login", ts="2023-11-14T22:13:20z"),
        wire("login", ts=float(TS_MS) + 0.5),
        wire("login", ts=MIN_MS),
        wire("login", ts=MAX_MS),
        wire("product_holding"),
        wire("score"),
        wire("score", attrs={"model": "rf_churn", "value": 1, "version": "v1", "as_of": TS_MS}),
        wire("score", attrs={"model": "a" * 48, "value": -2.5, "version": "v", "as_of": MIN_MS + 0.5}),
        wire(event_id="\U0001f600" * 128, customer_id="Zoë-ß"),
        wire(attrs={"amount": -0.0, "currency": "EUR", "product": "basic"}),
    ],
)
def test_valid_variants_take_the_fast_path(no_slow_path: None, env: dict[str, Any]) -> None:
    raw = msgpack.packb(env)
    assert canonical(decode_event(raw)) == canonical(validate_event(msgpack.unpackb(raw)))


def test_float32_amount_stays_the_widened_float() -> None:
    raw = msgpack.packb(wire(), use_single_float=True)
    assert decode_event(raw).attrs["amount"] == struct.unpack(">f", struct.pack(">f", 19.99))[0]
    assert_same(raw)


def purchase(amount: Any = 1, currency: str = "EUR", **more: Any) -> dict[str, Any]:
    return wire(attrs={"amount": amount, "currency": currency, "product": "p", **more})


SECONDS = "looks like epoch seconds, not milliseconds (read as milliseconds it is in early 1970)"
BAD_MODEL = "must match [a-z][a-z0-9_]{0,47} (lowercase letter, then up to 47 of a-z 0-9 _)"
RESERVED = "is an engine score name (churn, clv, propensity_*, p_alive, expected_purchases_*, clv_*)"


def score(**changes: Any) -> dict[str, Any]:
    return wire("score", attrs={"model": "rf_churn", "value": 0.83, "version": "rf-1", **changes})


@pytest.mark.parametrize(
    ("env", "currency", "reason"),
    [
        (purchase(math.nan), None, "attrs.amount of purchase must be finite"),
        (purchase(-math.inf), None, "attrs.amount of purchase must be finite"),
        (purchase(-1), None, "attrs.amount of purchase must not be negative"),
        (purchase(1e12 + 1), None, "attrs.amount of purchase must be at most 1e+12 in absolute value"),
        (purchase(10**17), None, "attrs.amount of purchase must be at most 1e+12 in absolute value"),
        (
            wire("product_holding", attrs={"product": "savings", "balance": -1e308}),
            None,
            "attrs.balance of product_holding must be at most 1e+12 in absolute value",
        ),
        (purchase(True), None, "attrs.amount of purchase must be a number, got bool"),
        (purchase(currency="USD"), "EUR", "purchase currency 'USD' is not the configured 'EUR'"),
        (wire(attrs={"amount": 1, "currency": "EUR"}), None, "missing attrs.product for purchase"),
        (wire(v=True), None, "unsupported schema version True (this worker reads v1)"),
        (wire(v=1.0), None, "unsupported schema version 1.0 (this worker reads v1)"),
        (wire(type="refund"), None, "unknown type 'refund'; expected one of " + ", ".join(EVENT_TYPES)),
        (wire(event_id="e" * 129), None, "event_id must be 1-128 characters"),
        (wire(customer_id=7), None, "customer_id must be a string, got int"),
        (wire(ts=1_700_000_000), None, f"ts 1700000000 {SECONDS}"),
        (wire(ts=-1), None, "ts -1 is outside 1970-01-01..2100-01-01 (epoch milliseconds expected)"),
        (wire(ts="1969-12-31T23:59Z"), None, "ts '1969-12-31T23:59Z' is outside 1970-01-01..2100-01-01"),
        (wire(ts="2023-11-14T22:13:20"), None, "ts '2023-11-14T22:13:20' has no time zone"),
        (wire(ts=math.nan), None, "ts must be finite"),
        (wire(attrs=[1]), None, "attrs must be a map, got list"),
        (score(model="Rf"), None, f"attrs.model of score 'Rf' {BAD_MODEL}"),
        (score(model="a" * 49), None, f"attrs.model of score {'a' * 49!r} {BAD_MODEL}"),
        (score(model="churn"), None, f"attrs.model of score 'churn' {RESERVED}"),
        (score(model="clv_90d"), None, f"attrs.model of score 'clv_90d' {RESERVED}"),
        (score(value=math.inf), None, "attrs.value of score must be finite"),
        (score(value="0.8"), None, "attrs.value of score must be a number, got str"),
        (score(version="v" * 129), None, "attrs.version of score must be 1-128 characters"),
        (score(as_of=TS_MS + 1), None, "attrs.as_of of score is after the event's ts"),
        (score(as_of=1_700_000_000), None, f"attrs.as_of of score {SECONDS}"),
    ],
)
def test_reasons(env: dict[str, Any], currency: str | None, reason: str) -> None:
    for raw in (msgpack.packb(env), json.dumps(env).encode()):  # JSON: NaN/Infinity as json.loads reads them
        with pytest.raises(InvalidEvent) as info:
            decode_event(raw, currency)
        assert str(info.value) == reason
        assert_same(raw, currency)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"\xc1",
        b"\x80",
        b"{}",
        b"[]",
        msgpack.packb(wire())[:-1],
        msgpack.packb(wire()) + b"\x00",
        json.dumps(wire()).encode() + b" x",
        json.dumps(wire()).encode().replace(b"19.99", b"NaN"),
        json.dumps(wire()).encode().replace(b"19.99", b"1e400"),  # inf in json.loads, out of range in msgspec
        # a 400-digit amount: the slow path raises OverflowError (math.isfinite), not InvalidEvent
        json.dumps(wire()).encode().replace(b"19.99", b"1" * 400),
        json.dumps(wire()).encode().replace(b"19.99", b"1" * 5000),  # beyond int("...") digit limit
        json.dumps(wire()).encode().replace(b'"c-1"', b'"\\ud800"'),  # a lone surrogate escape
        json.dumps(wire()).encode().replace(b'"c-1"', b'"c\xed\xa0\x80"'),  # an encoded surrogate
        json.dumps(wire()).encode().replace(b'"c-1"', b'"c\xff"'),
        msgpack.packb(wire()).replace(b"\xa3c-1", b"\xa3c\xc0\xaf"),  # overlong UTF-8
        msgpack.packb(wire(attrs={"amount": 1, "currency": "EUR", "product": "p", "x": 2**64 - 1})),
        msgpack.packb(wire(attrs={"amount": 2**63, "currency": "EUR", "product": "p"})),
        msgpack.packb(
            wire(attrs={"amount": 1, "currency": "EUR", "product": "p", "b": b"\x00"}), use_bin_type=True
        ),
        msgpack.packb(
            wire(attrs={"amount": 1, "currency": "EUR", "product": "p", "t": msgpack.Timestamp(1, 0)})
        ),
        msgpack.packb({**wire(), 1: "x"}),  # a non-string key, which the slow path ignores
        msgpack.packb({**wire(), "source": "web"}),  # an unknown field: kept out of the fast path
        with_raw_field(wire(), "deep", packed_nested(1000)),
        with_raw_field(wire(), "deep", packed_nested(1030)),  # deeper than msgpack-python's stack
        with_raw_field(wire(), "ts", packed_nested(5000)),
        with_raw_field(wire(), "attrs", b"\x81\xa1x" + packed_nested(100_000)),
        json.dumps(wire()).encode()[:-1] + b', "deep": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"attrs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        pack_pairs([*wire().items(), ("type", "login")]),  # last of a repeated key wins
        pack_pairs([("type", "login"), *wire().items()]),
        pack_pairs([*wire().items(), ("attrs", None)]),
        "{}".encode("utf-16-le"),
    ],
)
def test_edge_inputs(raw: bytes | None) -> None:
    for currency in (None, "EUR"):
        assert_same(raw, currency)


def test_pipeline_decodes_with_the_fast_path(no_slow_path: None) -> None:
    from types import SimpleNamespace

    from engine.stream.customer_step import StepConfig
    from engine.stream.pipeline import PipelineConfig, RawRecord, SegmentPipeline
    from features.config import FeatureConfig
    from models.labels import LabelRules

    step = StepConfig(features=FeatureConfig(), labels=LabelRules(), input_names=())
    # decode never touches the store, the models or the rules; placeholders stand in for them.
    pipeline = SegmentPipeline(
        store=SimpleNamespace(client=None, prefix="t"),  # type: ignore[arg-type]
        config=PipelineConfig(step=step, currency="EUR"),
        models=SimpleNamespace(at=None),  # type: ignore[arg-type]
        rules=object(),  # type: ignore[arg-type]
        clock=lambda: 1_700_000_000.0,
    )
    good = RawRecord(topic="events", partition=0, offset=3, key=b"c-1", value=msgpack.packb(wire()))
    other_key = RawRecord(topic="events", partition=0, offset=4, key=b"c-9", value=msgpack.packb(wire()))
    events, dead = pipeline.decode([good, other_key])
    assert [(p.event.event_id, p.offset) for p in events] == [("e-1", 3)]
    assert [(d.offset, d.reason) for d in dead] == [(4, "message key 'c-9' differs from customer_id 'c-1'")]


def test_rfc3339_in_any_zone_takes_the_fast_path(no_slow_path: None) -> None:
    moment = datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=timezone(timedelta(hours=-3)))
    event = decode_event(msgpack.packb(wire("login", ts=moment.isoformat())))
    assert event.ts == datetime(2024, 3, 1, 2, 59, 59, 999_000, tzinfo=UTC).timestamp()


def test_huge_json_numbers_are_dead_lettered_with_a_reason() -> None:
    base = '{"event_id": "e1", "customer_id": "c1", "type": "purchase", '
    huge_ts = (base + '"ts": 1' + "0" * 400 + "}").encode()
    huge_amount = (
        base + '"ts": 1767225600000, "attrs": {"amount": 1' + "0" * 400 + ', "currency": "EUR", '
        '"product": "savings"}}'
    ).encode()
    too_many_digits = (base + '"ts": 1' + "0" * 5000 + "}").encode()
    reasons = []
    for raw in (huge_ts, huge_amount, too_many_digits):
        with pytest.raises(InvalidEvent) as caught:
            decode_event(raw)
        reasons.append(str(caught.value))
    assert reasons[0] == "ts must be finite"
    assert reasons[1] == "attrs.amount of purchase must be finite"
    assert reasons[2].startswith("bad JSON: ")


@pytest.mark.parametrize("field", ["type", "v"])
@pytest.mark.parametrize("depth", [990, 1020])
def test_a_deeply_nested_value_is_quoted_short_in_the_reason(field: str, depth: int) -> None:
    # The builtin repr of a list nested ~1000 deep raises RecursionError: the reason must not use it.
    raw = with_raw_field(wire(), field, packed_nested(depth))
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw)
    assert "[[[[...]]]]" in str(info.value)


def test_a_huge_string_is_quoted_short_in_the_reason() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(msgpack.packb(wire(ts="x" * 1_000_000)))
    reason = str(info.value)
    assert reason.startswith("ts 'xxx") and reason.endswith("is not an RFC 3339 timestamp")
    assert len(reason) < 200


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(wire(customer_id="\ud800")).encode(),  # the escape \ud800
        json.dumps(wire(event_id="e\udfff")).encode(),
        json.dumps(wire(), ensure_ascii=False).encode().replace(b'"c-1"', b'"c\xed\xa0\x80"'),  # bytes
        json.dumps(
            wire(attrs={"amount": 1, "currency": "EUR", "product": "p", "x": [{"\udc80": 1}]})
        ).encode(),
        json.dumps(wire()).encode("utf-16-le").replace(b"c\x00-\x00", b"\x00\xd8-\x00"),
    ],
)
def test_a_lone_surrogate_in_json_is_dead_lettered(raw: bytes) -> None:
    # json.loads accepts them; as an id, the customer's commit then failed to encode the key.
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw)
    assert str(info.value) == "bad JSON: a string holds a lone surrogate (not Unicode text)"
    assert_same(raw)


def test_the_message_key_is_compared_as_bytes() -> None:
    from engine.output import DeadLetter
    from engine.stream.decoding import BatchDecoder
    from engine.stream.pipeline import RawRecord

    def letter(reason: str, record: RawRecord) -> DeadLetter:
        return DeadLetter(reason, record.value or b"", record.key, record.topic, record.partition, 0, 0)

    replaced = msgpack.packb(wire(customer_id="\ufffd"))  # what b"\xff" reads as, decoded leniently
    records = [
        RawRecord("events", 0, 0, b"\xef\xbf\xbd", replaced),  # the UTF-8 of U+FFFD: the same customer
        RawRecord("events", 0, 1, b"\xff", replaced),
        RawRecord("events", 0, 2, b"c-1\xfe", msgpack.packb(wire())),
        RawRecord("events", 0, 3, None, msgpack.packb(wire())),
    ]
    events, dead = BatchDecoder(None, letter).decode(records)
    assert [p.offset for p in events] == [0, 3]
    assert [d.reason for d in dead] == [
        "message key b'\\xff' differs from customer_id '\ufffd'",
        "message key b'c-1\\xfe' differs from customer_id 'c-1'",
    ]
