"""Fuzzing the worker's decode step (``engine.stream.decoding.BatchDecoder``) with bad input.

Every record must end as exactly one valid event or one dead letter whose reason falls in the
category the README's table gives for its defect (``tests/bad_input.py`` says which), never as
an exception; a dead letter carries a one-line, bounded reason and the record's raw bytes.
Budget: ``FUZZ`` (a fixed number of examples, derandomized: CI runs the same inputs every time).
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
from bad_input import (
    CURRENCY,
    DEFECTS,
    KEEP,
    ODD_IDS,
    TS_HIGH_MS,
    TS_LOW_MS,
    as_json,
    envelope,
    pack,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.ops.metrics import dead_letter_category
from engine.output import DeadLetter
from engine.stream.batch_records import RawRecord
from engine.stream.decoding import BatchDecoder
from features.event import EVENT_TYPES, Event

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_REASON = 400
"""Longest reason accepted: reasons quote values cut short (``engine.schemas.quoted``)."""

ids = st.one_of(st.sampled_from(ODD_IDS), st.text(st.characters(codec="utf-8"), min_size=1, max_size=128))
event_types = st.sampled_from(EVENT_TYPES)
ts_ms = st.integers(TS_LOW_MS, TS_HIGH_MS)


def letter(reason: str, record: RawRecord) -> DeadLetter:
    return DeadLetter(
        reason, record.value or b"", record.key, record.topic, record.partition, record.offset, 0
    )


def decode(key: bytes | None, value: bytes) -> Event | DeadLetter:
    """The decode step's verdict on one record: an event or a dead letter, never both or neither."""
    events, dead = BatchDecoder(CURRENCY, letter).decode([RawRecord("segflow.events", 3, 41, key, value)])
    assert len(events) + len(dead) == 1
    if events:
        assert (events[0].partition, events[0].offset) == (3, 41)
        return events[0].event
    reason = dead[0].reason
    assert "\n" not in reason and 0 < len(reason) <= MAX_REASON, reason
    assert dead_letter_category(reason) != "other", reason
    wire = msgpack.unpackb(dead[0].encode(), raw=False)
    assert wire["reason"] == reason and wire["raw"] == value[:1_000_000]
    return dead[0]


def category_of(key: bytes | None, value: bytes) -> str:
    verdict = decode(key, value)
    return "applied" if isinstance(verdict, Event) else dead_letter_category(verdict.reason)


def assert_event_is(verdict: Event | DeadLetter, env: dict[str, Any], seconds: float) -> None:
    assert isinstance(verdict, Event), verdict
    assert (verdict.event_id, verdict.customer_id, verdict.type) == (
        env["event_id"],
        env["customer_id"],
        env["type"],
    )
    assert math.isclose(verdict.ts, seconds, rel_tol=0, abs_tol=1e-6)
    assert verdict.attrs == env["attrs"]


@FUZZ
@given(st.randoms(use_true_random=False), event_types, ids, ids, ts_ms, st.booleans(), st.booleans())
def test_a_valid_event_is_decoded_with_its_fields(
    rng: random.Random, event_type: str, customer_id: str, event_id: str, ts: int, as_text: bool, keyed: bool
) -> None:
    env = envelope(rng, event_type, customer_id, event_id, ts)
    value = as_json(env) if as_text else pack(env)
    assert_event_is(decode(customer_id.encode() if keyed else None, value), env, ts / 1000)


@FUZZ
@given(st.datetimes(datetime(1970, 1, 2), datetime(2099, 12, 31), timezones=st.timezones()), st.randoms())
def test_an_rfc3339_time_in_range_is_that_moment(moment: datetime, rng: random.Random) -> None:
    env = envelope(rng, "login", "c", "e", 0) | {"ts": moment.isoformat()}
    assert_event_is(decode(b"c", pack(env)), env, moment.timestamp())


@FUZZ
@given(st.randoms(use_true_random=False), st.sampled_from(sorted(DEFECTS)))
def test_each_defect_is_dead_lettered_under_its_category(rng: random.Random, name: str) -> None:
    expected, broken = DEFECTS[name]
    env = envelope(rng, "purchase", "c-1", "e-1", 1_700_000_000_000)
    key, value = broken(rng, env)
    assert category_of(b"c-1" if key == KEEP else key, value) == expected


@FUZZ
@given(st.binary(max_size=300), st.one_of(st.none(), st.binary(max_size=20)))
def test_garbage_is_never_an_exception(value: bytes, key: bytes | None) -> None:
    decode(key, value)


@FUZZ
@given(st.randoms(use_true_random=False), st.data())
def test_every_truncation_is_a_decode_error(rng: random.Random, data: st.DataObject) -> None:
    env = envelope(rng, rng.choice(EVENT_TYPES), "c", "e", 1_700_000_000_000)
    as_text = data.draw(st.booleans())
    whole = as_json(env) if as_text else pack(env)
    cut = data.draw(st.integers(0, len(whole) - 1))
    expected = "empty_payload" if cut == 0 else ("bad_json" if as_text else "bad_msgpack")
    assert category_of(None, whole[:cut]) == expected


@FUZZ
@given(st.integers(1, 3000), st.booleans())
def test_nesting_is_kept_when_shallow_and_refused_when_deep(depth: int, as_text: bool) -> None:
    env = {
        "event_id": "e",
        "customer_id": "c",
        "type": "login",
        "ts": 1_700_000_000_000,
        "attrs": {"x": "\x02"},
    }
    # The encoders refuse to write this deep: the arrays are written by hand around the leaf.
    if as_text:
        raw = as_json(env, ascii_only=True).replace(b'"\\u0002"', b"[" * depth + b'"leaf"' + b"]" * depth)
    else:
        raw = pack(env).replace(b"\xa1\x02", b"\x91" * depth + b"\xa4leaf")
    verdict = category_of(b"c", raw)
    if depth <= 200:
        assert verdict == "applied"
    elif depth >= 2000:
        assert verdict == ("bad_json" if as_text else "bad_msgpack")
    else:  # the decoders' own limits lie in between
        assert verdict in ("applied", "bad_json" if as_text else "bad_msgpack")


wrong_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.binary(max_size=5),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=3), st.integers(0, 9), max_size=2),
)
FIELD_CATEGORY = {"event_id": "bad_id", "customer_id": "bad_id", "type": "unknown_type", "ts": "bad_ts"}


@FUZZ
@given(st.sampled_from(sorted(FIELD_CATEGORY)), wrong_values, st.booleans())
def test_an_envelope_field_of_the_wrong_type(field: str, wrong: Any, keyed: bool) -> None:
    env = {"event_id": "e", "customer_id": "c", "type": "login", "ts": 1_700_000_000_000, "attrs": {}}
    if field == "ts" and isinstance(wrong, int | float) and TS_LOW_MS <= wrong <= TS_HIGH_MS:
        wrong = str(wrong)  # a number in range is a valid time
    assert category_of(b"c" if keyed else None, pack({**env, field: wrong})) == FIELD_CATEGORY[field]


@FUZZ
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**63), 2**63 - 1),
        st.sampled_from([1e12, 1e12 + 1e-3, -0.0, 0, 5e-324]),
    ),
    st.sampled_from(["amount", "balance"]),
)
def test_money_outside_the_documented_range_is_a_bad_attribute(value: float, name: str) -> None:
    event_type, low = ("purchase", 0.0) if name == "amount" else ("product_holding", -1e12)
    attrs = (
        {"amount": value, "currency": CURRENCY, "product": "p"}
        if name == "amount"
        else {"product": "p", "balance": value}
    )
    env = {"event_id": "e", "customer_id": "c", "type": event_type, "ts": 1_700_000_000_000, "attrs": attrs}
    ok = math.isfinite(value) and low <= value <= 1e12
    assert category_of(b"c", pack(env)) == ("applied" if ok else "bad_attribute")


@FUZZ
@given(st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.integers(10**20, 10**300)))
def test_an_epoch_number_outside_1970_to_2100_is_a_bad_ts(ts: float) -> None:
    env = {"event_id": "e", "customer_id": "c", "type": "login", "ts": ts}
    in_range = math.isfinite(ts) and TS_LOW_MS <= ts <= TS_HIGH_MS
    # JSON carries integers msgpack cannot (beyond 64 bits)
    assert category_of(b"c", as_json(env)) == ("applied" if in_range else "bad_ts")


@FUZZ
@given(st.timedeltas(min_value=timedelta(days=1), max_value=timedelta(days=3_000_000)), st.booleans())
def test_rfc3339_times_far_in_the_past_or_future_are_bad_ts(offset: timedelta, future: bool) -> None:
    edge = datetime(2100, 1, 1, tzinfo=UTC) if future else datetime(1970, 1, 1, tzinfo=UTC)
    try:
        moment = edge + offset if future else edge - offset
    except OverflowError:
        moment = datetime.max.replace(tzinfo=UTC) if future else datetime.min.replace(tzinfo=UTC)
    env = {"event_id": "e", "customer_id": "c", "type": "login", "ts": moment.isoformat()}
    assert category_of(b"c", pack(env)) == "bad_ts"


@FUZZ
@given(
    st.text(st.characters(codec="utf-8"), min_size=129, max_size=400),
    st.sampled_from(["event_id", "customer_id"]),
)
def test_an_id_beyond_128_characters_is_a_bad_id(long_id: str, field: str) -> None:
    env = {"event_id": "e", "customer_id": "c", "type": "login", "ts": 1_700_000_000_000, field: long_id}
    assert category_of(None, pack(env)) == "bad_id"


@FUZZ
@given(st.text(max_size=20).filter(lambda t: t not in EVENT_TYPES), st.integers(-(2**63), 2**63 - 1))
def test_unknown_types_and_versions(event_type: str, version: int) -> None:
    env = {"event_id": "e", "customer_id": "c", "type": "login", "ts": 1_700_000_000_000}
    try:
        raw_type = pack({**env, "type": event_type})
    except UnicodeEncodeError:  # a lone surrogate: msgpack cannot write it as a str
        raw_type = as_json({**env, "type": event_type}, ascii_only=True)
    assert category_of(b"c", raw_type) in ("unknown_type", "bad_json")
    assert category_of(b"c", pack({**env, "v": version})) == ("applied" if version == 1 else "schema_version")


@FUZZ
@given(ids, st.binary(min_size=1, max_size=40))
def test_a_key_that_is_not_the_customer_id(customer_id: str, key: bytes) -> None:
    env = {"event_id": "e", "customer_id": customer_id, "type": "login", "ts": 1_700_000_000_000}
    expected = "applied" if key == customer_id.encode() else "key_mismatch"
    assert category_of(key, pack(env)) == expected
    assert category_of(customer_id.encode(), pack(env)) == "applied"


@FUZZ
@given(st.integers(0, 16), st.sampled_from([1 << 20, 4 << 20]))
def test_huge_strings_are_kept_and_huge_records_keep_a_bounded_raw(log_size: int, big: int) -> None:
    product = "p" * (1 << log_size)
    env = {"event_id": "e", "customer_id": "c", "type": "purchase", "ts": 1_700_000_000_000}
    env["attrs"] = {"amount": 1, "currency": CURRENCY, "product": product}
    verdict = decode(b"c", pack(env))
    assert isinstance(verdict, Event) and verdict.attrs["product"] == product
    garbage = b"\xc1" * big
    dead = decode(b"c", garbage)
    assert isinstance(dead, DeadLetter)
    wire = msgpack.unpackb(dead.encode(), raw=False)
    assert wire["raw"] == garbage[:1_000_000] and (wire["raw_size"], wire["raw_truncated"]) == (big, True)
