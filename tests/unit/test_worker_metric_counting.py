"""Counting a batch into the worker's metrics: event outcomes, transitions, dead-letter categories."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from test_event_decoder import TS_MS, wire

from engine.monitoring import WorkerMetrics
from engine.ops.metrics import (
    CATEGORIES,
    DEAD_LETTER_CATEGORIES,
    OTHER,
    count_delivered,
    dead_letter_category,
)
from engine.output import DeadLetter, SegmentChange
from engine.stream.batch_records import DEAD_LETTER, LABEL, SEGMENT_CHANGE, PendingChange, RawRecord
from engine.stream.batch_result import BatchResult
from engine.stream.customer_run import CustomerOutcome
from engine.stream.decoding import BatchDecoder
from features.event import Event, PositionedEvent


def pack(value: Any) -> bytes:
    return bytes(msgpack.packb(value))


# (what is wrong, key, payload, expected category): one case per kind of reason the decoder gives
MALFORMED: list[tuple[str, bytes | None, bytes, str]] = [
    ("empty", b"c-1", b"", "empty_payload"),
    ("bad JSON", b"c-1", b'{"v": 1,', "bad_json"),
    ("bad msgpack", b"c-1", b"\x81\xa1v", "bad_msgpack"),
    ("a list", b"c-1", pack([1, 2]), "not_a_map"),
    ("version 2", b"c-1", pack(wire(v=2)), "schema_version"),
    ("unknown type", b"c-1", pack(wire(type="teleport")), "unknown_type"),
    ("no ts", b"c-1", pack({k: v for k, v in wire().items() if k != "ts"}), "missing_field"),
    ("no event id", b"c-1", pack({k: v for k, v in wire().items() if k != "event_id"}), "missing_field"),
    ("no amount", b"c-1", pack(wire(attrs={"currency": "EUR", "product": "basic"})), "missing_field"),
    ("ts text", b"c-1", pack(wire(ts="yesterday")), "bad_ts"),
    ("ts in seconds", b"c-1", pack(wire(ts=1_764_000_000)), "bad_ts"),
    ("event id number", b"c-1", pack(wire(event_id=5)), "bad_id"),
    ("customer id empty", b"", pack(wire(customer_id="")), "bad_id"),
    ("attrs a list", b"c-1", pack(wire(attrs=[1])), "bad_attribute"),
    (
        "negative amount",
        b"c-1",
        pack(wire(attrs={"amount": -1, "currency": "EUR", "product": "x"})),
        "bad_attribute",
    ),
    ("channel empty", b"c-1", pack(wire("login", attrs={"channel": ""})), "bad_attribute"),
    ("dollars", b"c-1", pack(wire(attrs={"amount": 1, "currency": "USD", "product": "x"})), "currency"),
    ("key differs", b"c-2", pack(wire()), "key_mismatch"),
]


def dead_letter(reason: str, record: RawRecord) -> DeadLetter:
    return DeadLetter(
        reason, record.value or b"", record.key, record.topic, record.partition, record.offset, 0
    )


@pytest.mark.parametrize(("what", "key", "payload", "category"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_every_decoder_reason_has_its_category(
    what: str, key: bytes | None, payload: bytes, category: str
) -> None:
    events, dead = BatchDecoder("EUR", dead_letter).decode([RawRecord("events", 0, 7, key, payload)])
    assert not events, what
    [letter] = dead
    assert dead_letter_category(letter.reason) == category, letter.reason


def test_categories_are_bounded() -> None:
    assert (
        dead_letter_category("too late: 4.000 days behind the customer's newest event (allowed 3)")
        == "too_late"
    )
    assert dead_letter_category("something nobody expected: x") == OTHER
    assert dead_letter_category("") == OTHER
    # the label takes only the listed values, whatever the reason's text
    assert set(CATEGORIES) == {c for _, c in DEAD_LETTER_CATEGORIES} | {OTHER}
    assert all(c.isidentifier() and c.islower() for c in CATEGORIES)
    assert dead_letter_category("unknown type 'x'; expected one of purchase") == dead_letter_category(
        "unknown type 'y'; expected one of purchase"
    )


def positioned(event_type: str, offset: int, customer: str = "c-1", partition: int = 0) -> PositionedEvent:
    return PositionedEvent(Event(f"e-{offset}", customer, event_type, TS_MS / 1000), partition, offset)


def test_batch_result_counts_outcomes_by_type() -> None:
    by_customer = {
        "c-1": [positioned("purchase", 1), positioned("login", 2), positioned("login", 3)],
        "c-2": [positioned("login", 4, "c-2"), positioned("purchase", 5, "c-2")],
    }
    committed = {
        "c-1": CustomerOutcome(applied=2, too_late=1, skipped=[("login", "too_late")]),
        "c-2": CustomerOutcome(applied=1, skipped=[("login", "duplicate")]),
    }
    result = BatchResult()
    result.add_committed(by_customer, committed)
    assert (result.applied, result.too_late, result.duplicates) == (3, 1, 1)
    assert result.events == {
        ("purchase", "applied"): 2,
        ("login", "applied"): 1,
        ("login", "too_late"): 1,
        ("login", "duplicate"): 1,
    }
    assert sum(result.events.values()) == sum(len(v) for v in by_customer.values())


def change(family: str, to: str | None, offset: int | None, event_ts_ms: int) -> PendingChange:
    cause = (
        {"event_id": "e", "partition": 0, "offset": offset}
        if offset is not None
        else {"tick": 1, "partition": 0}
    )
    record = SegmentChange(
        change_id=f"{family}-{to}-{offset}",
        customer_id="c-1",
        family=family,
        from_segment=None,
        to_segment=to,
        event_ts_ms=event_ts_ms,
        emitted_ts_ms=0,
        rules_version="r",
        reason={},
        features={},
        cause=cause,
    )
    return PendingChange("c-1", record.change_id, record.encode(), SEGMENT_CHANGE)


def test_count_delivered() -> None:
    metrics = WorkerMetrics()
    now = TS_MS / 1000 + 10.0
    records = [RawRecord("events", 0, o, b"c-1", b"", TS_MS + 9_500) for o in range(5)]
    result = BatchResult(
        changes=[
            change("lifecycle", "Active", 1, TS_MS),
            change("lifecycle", "Active", 2, TS_MS),
            change("lifecycle", None, None, TS_MS),  # time-driven exit: no input record
            change("rfm", "Champions", 9, TS_MS),  # an earlier batch's (re-sent): not among records
            PendingChange("c-1", "late:0:3", b"", DEAD_LETTER),
            PendingChange("c-1", "l:x", b"", LABEL),
        ],
        dead_letters=[dead_letter("bad JSON: x", records[0]), dead_letter("missing ts", records[4])],
        applied=3,
    )
    result.events.update({("purchase", "applied"): 3, ("login", "too_late"): 1})
    count_delivered(metrics, result, records, delivered_at=now)
    value = metrics.registry.get_sample_value
    assert value("segflow_events_total", {"type": "purchase", "outcome": "applied"}) == 3
    assert value("segflow_events_total", {"type": "login", "outcome": "too_late"}) == 1
    assert value("segflow_events_total", {"type": "invalid", "outcome": "dead_lettered"}) == 2
    assert value("segflow_segment_changes_total", {"family": "lifecycle", "to_segment": "Active"}) == 2
    assert value("segflow_segment_changes_total", {"family": "lifecycle", "to_segment": ""}) == 1
    assert value("segflow_segment_changes_total", {"family": "rfm", "to_segment": "Champions"}) == 1
    assert value("segflow_dead_letters_total", {"reason": "bad_json"}) == 1
    assert value("segflow_dead_letters_total", {"reason": "missing_field"}) == 1
    assert value("segflow_dead_letters_total", {"reason": "too_late"}) == 1
    assert value("segflow_events_dead_lettered_total") == 3
    assert value("segflow_segment_changes_sent_total") == 4
    assert value("segflow_labels_sent_total") == 1
    # event time: every change, 10 s; ingest: the two whose record is in the batch, 0.5 s
    assert value("segflow_event_time_to_emit_seconds_count") == 4
    assert value("segflow_event_time_to_emit_seconds_sum") == pytest.approx(40.0)
    assert value("segflow_ingest_to_emit_seconds_count") == 2
    assert value("segflow_ingest_to_emit_seconds_sum") == pytest.approx(1.0)
    assert value("segflow_ingest_to_emit_seconds_bucket", {"le": "0.5"}) == 2
    assert value("segflow_ingest_to_emit_seconds_bucket", {"le": "0.25"}) == 0
