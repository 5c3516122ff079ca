"""Outgoing records: change ids, the segment-change v1 map and dead letters."""

from __future__ import annotations

import string

import msgpack
import pytest

from engine.output import DeadLetter, SegmentChange, change_id

CAUSE = {
    "customer_id": "c-1",
    "family": "lifecycle",
    "from_segment": "new",
    "to_segment": "active",
    "partition": 3,
    "offset": 1041,
}

# One alternative per component; each must change the id.
VARIANTS = [
    ("customer_id", "c-2"),
    ("customer_id", "C-1"),
    ("family", "value"),
    ("from_segment", None),
    ("from_segment", "lapsed"),
    ("to_segment", None),
    ("to_segment", "lapsed"),
    ("partition", 4),
    ("partition", 0),
    ("offset", 1042),
    ("offset", 0),
]


def test_change_id_is_stable_for_the_same_cause() -> None:
    first = change_id(**CAUSE)
    assert change_id(**CAUSE) == first
    assert change_id(**dict(reversed(list(CAUSE.items())))) == first  # keyword order is irrelevant


def test_change_id_shape() -> None:
    cid = change_id(**CAUSE)
    assert len(cid) == 32
    assert set(cid) <= set(string.hexdigits.lower())


@pytest.mark.parametrize(("component", "value"), VARIANTS, ids=[f"{c}={v}" for c, v in VARIANTS])
def test_change_id_differs_when_any_component_differs(component: str, value: object) -> None:
    assert change_id(**{**CAUSE, component: value}) != change_id(**CAUSE)


def test_all_variants_are_pairwise_distinct() -> None:
    ids = {change_id(**CAUSE)} | {change_id(**{**CAUSE, c: v}) for c, v in VARIANTS}
    assert len(ids) == len(VARIANTS) + 1


def test_from_none_differs_from_new() -> None:
    entered = change_id("c-1", "lifecycle", None, "active", 0, 5)
    moved = change_id("c-1", "lifecycle", "new", "active", 0, 5)
    assert entered != moved


def test_partition_and_offset_are_not_interchangeable() -> None:
    assert change_id("c", "lifecycle", None, "new", 1, 2) != change_id("c", "lifecycle", None, "new", 2, 1)
    assert change_id("c", "lifecycle", None, "new", 1, 23) != change_id("c", "lifecycle", None, "new", 12, 3)


REASON = {
    "rule": "lifecycle.active",
    "conditions": [{"name": "recency_days", "op": "<=", "threshold": 30.0, "value": 2.5}],
    "text": "lifecycle=active because recency_days=2.5 <= 30",
}
FEATURES = {"recency_days": 2.5, "frequency": 2, "monetary": 39.98, "tenure_days": 9.0}
CAUSE_MAP = {"event_id": "e-77", "partition": 3, "offset": 1041}


def make_change(from_segment: str | None = "new", to_segment: str | None = "active") -> SegmentChange:
    return SegmentChange(
        change_id="0123456789abcdef0123456789abcdef",
        customer_id="c-1",
        family="lifecycle",
        from_segment=from_segment,
        to_segment=to_segment,
        event_ts_ms=1_700_000_000_123,
        emitted_ts_ms=1_700_000_005_000,
        rules_version="lifecycle-v1",
        reason=REASON,
        features=FEATURES,
        cause=CAUSE_MAP,
        label="Active",
        scores=SCORES,
        population_version="2026-03-14",
        model_version="partition-3@120",
    )


SCORES = {"churn": {"score": 0.25, "top": [["days_since_last_activity", -1.5]]}, "clv": {"score": 12.0}}


def test_segment_change_encodes_to_the_v2_map() -> None:
    decoded = msgpack.unpackb(make_change().encode(), raw=False)
    assert decoded == {
        "v": 2,
        "change_id": "0123456789abcdef0123456789abcdef",
        "customer_id": "c-1",
        "family": "lifecycle",
        "from": "new",
        "to": "active",
        "event_ts": 1_700_000_000_123,
        "emitted_ts": 1_700_000_005_000,
        "rules_version": "lifecycle-v1",
        "population_version": "2026-03-14",
        "model_version": "partition-3@120",
        "reason": REASON,
        "label": "Active",
        "features": FEATURES,
        "scores": SCORES,
        "cause": CAUSE_MAP,
    }


def test_segment_change_nulls_on_the_wire() -> None:
    decoded = msgpack.unpackb(make_change(from_segment=None, to_segment=None).encode(), raw=False)
    assert decoded["from"] is None
    assert decoded["to"] is None


def test_segment_change_types_on_the_wire() -> None:
    raw = make_change().encode()
    decoded = msgpack.unpackb(raw, raw=False)
    assert isinstance(decoded["event_ts"], int)
    assert isinstance(decoded["emitted_ts"], int)
    assert isinstance(decoded["change_id"], str)
    # strings travel as msgpack str (not bin): fixstr header 0xa0 | length
    assert b"\xa3c-1" in raw
    assert b"\xc4\x03c-1" not in raw


RAW = b"\x81\xa1\xff\x01\x00not utf-8 \xc1\xfe"


def make_dead_letter(raw: bytes = RAW, key: bytes | None = b"c-1") -> DeadLetter:
    return DeadLetter(
        reason="bad msgpack: ExtraData: unpack(b) received extra data.",
        raw=raw,
        key=key,
        topic="segflow.events",
        partition=5,
        offset=99,
        failed_ts_ms=1_700_000_010_000,
    )


def test_dead_letter_encodes_to_the_v1_map_with_raw_bytes_unchanged() -> None:
    decoded = msgpack.unpackb(make_dead_letter().encode(), raw=False)
    assert decoded == {
        "v": 1,
        "reason": "bad msgpack: ExtraData: unpack(b) received extra data.",
        "raw": RAW,
        "topic": "segflow.events",
        "partition": 5,
        "offset": 99,
        "failed_ts": 1_700_000_010_000,
    }
    assert type(decoded["raw"]) is bytes
    # raw travels as msgpack bin 8 (0xc4, length byte), byte for byte
    assert b"\xc4" + bytes([len(RAW)]) + RAW in make_dead_letter().encode()


@pytest.mark.parametrize("raw", [b"", b"\x00", bytes(range(256)), b'{"json": true}'])
def test_dead_letter_raw_round_trips(raw: bytes) -> None:
    assert msgpack.unpackb(make_dead_letter(raw=raw).encode(), raw=False)["raw"] == raw


# The worker's producer refuses a record whose estimated size exceeds its max_request_size
# (aiokafka's default, 1 MiB), and the broker's own limit is as large; the largest input record
# the broker takes is just under it.
PRODUCER_LIMIT = 1_048_576


def test_a_dead_letter_of_a_record_near_one_mib_fits_the_producers_limit() -> None:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    raw = bytes(range(256)) * 4095 + b"\x81" * 256  # 1,048,576 bytes: as large as a record gets
    key = b"k" * 5000
    letter = DeadLetter(
        reason="payload is neither a JSON object nor a msgpack map (first byte 0x00) " + "x" * 500,
        raw=raw,
        key=key,
        topic="t" * 249,  # Kafka's longest topic name
        partition=5,
        offset=2**62,
        failed_ts_ms=1_700_000_010_000,
    )
    value = letter.encode()
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(letter.wire_key, value, []) <= PRODUCER_LIMIT
    decoded = msgpack.unpackb(value, raw=False)
    assert decoded["raw"] == raw[:1_000_000]
    assert decoded["raw_size"] == 1_048_576 and decoded["raw_truncated"] is True
    assert letter.wire_key == key[:1024]


def test_a_dead_letter_of_exactly_the_kept_size_carries_no_marker() -> None:
    raw = b"\xc1" * 1_000_000
    decoded = msgpack.unpackb(make_dead_letter(raw=raw).encode(), raw=False)
    assert decoded["raw"] == raw
    assert "raw_size" not in decoded and "raw_truncated" not in decoded
    assert make_dead_letter(key=None).wire_key is None
    assert make_dead_letter(key=b"c-1").wire_key == b"c-1"
