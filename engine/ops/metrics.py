"""Counting a delivered batch (or tick) into the worker's metrics, once per batch.

The hot path stays cheap: everything is tallied into plain ``collections.Counter`` objects first
and reaches prometheus-client as one ``inc(n)`` per label set; only the latency histograms take
one ``observe`` per segment change delivered (about one event in ten changes a segment).

Dead-letter reasons name values from the record (``unknown type 'x'``, ``ts '...' is not ...``),
so the ``reason`` label of ``segflow_dead_letters_total`` is a fixed category instead: the first
of ``DEAD_LETTER_CATEGORIES`` whose prefix the reason starts with, else ``other``.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter
from collections.abc import Sequence

import msgspec

from engine.monitoring import WorkerMetrics
from engine.stream.batch_records import (
    ACTION,
    DEAD_LETTER,
    DEAD_LETTERED,
    INVALID_TYPE,
    LABEL,
    OUTCOME,
    SEGMENT_CHANGE,
    RawRecord,
)
from engine.stream.batch_result import BatchResult

log = logging.getLogger(__name__)

DEAD_LETTER_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("too late", "too_late"),
    ("empty payload", "empty_payload"),
    ("bad JSON", "bad_json"),
    ("bad msgpack", "bad_msgpack"),
    ("payload is neither", "not_a_map"),
    ("event must be a map", "not_a_map"),
    ("unsupported schema version", "schema_version"),
    ("unknown type", "unknown_type"),
    ("missing ", "missing_field"),
    ("ts ", "bad_ts"),
    ("event_id ", "bad_id"),
    ("customer_id ", "bad_id"),
    ("message key ", "key_mismatch"),
    ("purchase currency ", "currency"),
    ("attrs", "bad_attribute"),
)
"""(reason prefix, category), first match wins; a reason matching none is ``other``."""
OTHER = "other"
CATEGORIES: tuple[str, ...] = (*dict.fromkeys(c for _, c in DEAD_LETTER_CATEGORIES), OTHER)
"""Every value the ``reason`` label takes."""


def dead_letter_category(reason: str) -> str:
    """The bounded category of a dead letter's one-line reason."""
    for prefix, category in DEAD_LETTER_CATEGORIES:
        if reason.startswith(prefix):
            return category
    return OTHER


class _Cause(msgspec.Struct):
    partition: int | None = None
    offset: int | None = None


class _ChangeHead(msgspec.Struct):
    """The fields of a segment-change record (schema v2) the metrics read; the rest is skipped."""

    family: str
    to: str | None = None
    event_ts: float | None = None
    cause: _Cause = msgspec.field(default_factory=_Cause)


_decode_head = msgspec.msgpack.Decoder(_ChangeHead).decode


def count_delivered(
    metrics: WorkerMetrics,
    result: BatchResult,
    records: Sequence[RawRecord] = (),
    delivered_at: float | None = None,
) -> None:
    """Count what a delivered batch or tick did; ``records`` (the batch's input, in (partition,
    offset) order) give the Kafka timestamps of the changes' causing records."""
    kinds = Counter(entry.kind for entry in result.changes)
    invalid = len(result.dead_letters)
    add = metrics.add
    add("segflow_events_applied_total", result.applied)
    add("segflow_events_duplicate_total", result.duplicates)
    add("segflow_events_dead_lettered_total", invalid + kinds[DEAD_LETTER])
    add("segflow_events_too_late_total", result.too_late)
    add("segflow_segment_changes_sent_total", kinds[SEGMENT_CHANGE])
    add("segflow_labels_sent_total", kinds[LABEL])
    add("segflow_action_decisions_sent_total", kinds[ACTION])
    add("segflow_outcomes_sent_total", kinds[OUTCOME])
    add("segflow_customers_ticked_total", result.ticked)
    for (event_type, outcome), n in result.events.items():
        metrics.events.labels(event_type, outcome).inc(n)
    if invalid:
        metrics.events.labels(INVALID_TYPE, DEAD_LETTERED).inc(invalid)
        reasons = Counter(dead_letter_category(d.reason) for d in result.dead_letters)
        for category, n in reasons.items():
            metrics.dead_letters.labels(category).inc(n)
    if kinds[DEAD_LETTER]:  # the outbox's dead letters are those of too-late events
        metrics.dead_letters.labels("too_late").inc(kinds[DEAD_LETTER])
    if kinds[SEGMENT_CHANGE]:
        _count_changes(metrics, result, records, time.time() if delivered_at is None else delivered_at)


def _count_changes(
    metrics: WorkerMetrics, result: BatchResult, records: Sequence[RawRecord], now: float
) -> None:
    transitions: Counter[tuple[str, str]] = Counter()
    ingest, event_time = metrics.ingest_to_emit_seconds, metrics.event_time_to_emit_seconds
    now_ms = now * 1000
    for entry in result.changes:
        if entry.kind != SEGMENT_CHANGE:
            continue
        try:
            head = _decode_head(entry.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("segment change %s not counted: %s", entry.change_id, exc)
            continue
        transitions[(head.family, head.to or "")] += 1
        if head.event_ts is not None:
            event_time.observe(max(0.0, (now_ms - head.event_ts) / 1000))
        cause = head.cause
        if cause.partition is not None and cause.offset is not None:
            stamp = _timestamp_of(records, cause.partition, cause.offset)
            if stamp is not None:
                ingest.observe(max(0.0, (now_ms - stamp) / 1000))
    for (family, to_segment), n in transitions.items():
        metrics.segment_changes.labels(family, to_segment).inc(n)


def _timestamp_of(records: Sequence[RawRecord], partition: int, offset: int) -> int | None:
    """The Kafka timestamp of the record at (partition, offset) among ``records`` (sorted)."""
    i = bisect.bisect_left(records, (partition, offset), key=lambda r: (r.partition, r.offset))
    if i < len(records) and records[i].partition == partition and records[i].offset == offset:
        return records[i].timestamp_ms
    return None
