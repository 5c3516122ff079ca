"""Outgoing records: segment-change events (schema v2) and dead letters.

Segment-change schema v2 (msgpack map; key = customer_id); v2 is v1 plus the two versions:

    v              2
    change_id      stable id derived from the cause: the same cause always yields the same
                   id, so a consumer drops a redelivered duplicate by id
    customer_id    str
    family         rule family, e.g. "lifecycle"
    from           previous segment, or null when the customer had none
    to             new segment, or null when the customer left the family
    event_ts       event time of the event that caused the change (epoch ms)
    emitted_ts     wall-clock time the change was computed (epoch ms)
    rules_version  version of the rules that decided
    population_version  the sealed population snapshot the RFM quintiles were read from: the
                   UTC day "YYYY-MM-DD" whose cuts were used, or null when none was sealed yet
                   (cold start: quintiles have no value)
    model_version  the model state the scores came from
    reason         {"rule", "conditions": [{"name", "op", "threshold", "value"}], "text"}
    label          human-readable name of the new segment (enriched where the rules say so)
    features       the family's key features at the change
    scores         {model: {"score", "top": [[feature, contribution], ...]}}: every model's score;
                   "top" (the largest contributions) for the models the family's rules read
    cause          {"event_id", "partition", "offset"} of the causing event, or for a change that
                   time alone caused: {"tick": event time (ms) it fell due, "partition", "watermark"}

Dead-letter schema v1 (msgpack map; key = the original key, its first 1 KiB when longer):

    v, reason, raw (the original bytes, unchanged), topic, partition, offset, failed_ts (epoch ms)
    raw_size, raw_truncated   only when the record was longer than MAX_DEAD_LETTER_RAW_BYTES:
                   its length, and True; raw is then its first MAX_DEAD_LETTER_RAW_BYTES bytes
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from engine.codecs import encode_msgpack
from engine.schemas import DEAD_LETTER_SCHEMA_VERSION, SEGMENT_CHANGE_SCHEMA_VERSION


def change_id(
    customer_id: str,
    family: str,
    from_segment: str | None,
    to_segment: str | None,
    partition: int,
    offset: int | str,
) -> str:
    """Stable id of a change: a hash of who changed, how, and which event caused it."""
    cause = encode_msgpack([customer_id, family, from_segment, to_segment, partition, offset])
    return hashlib.sha256(cause).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """One real change of a customer's segment in one family."""

    change_id: str
    customer_id: str
    family: str
    from_segment: str | None
    to_segment: str | None
    event_ts_ms: int
    emitted_ts_ms: int
    rules_version: str
    reason: dict[str, Any]
    features: dict[str, Any]
    cause: dict[str, Any]
    label: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    population_version: str | None = None
    model_version: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The schema v2 map."""
        return {
            "v": SEGMENT_CHANGE_SCHEMA_VERSION,
            "change_id": self.change_id,
            "customer_id": self.customer_id,
            "family": self.family,
            "from": self.from_segment,
            "to": self.to_segment,
            "event_ts": self.event_ts_ms,
            "emitted_ts": self.emitted_ts_ms,
            "rules_version": self.rules_version,
            "population_version": self.population_version,
            "model_version": self.model_version,
            "reason": self.reason,
            "label": self.label,
            "features": self.features,
            "scores": self.scores,
            "cause": self.cause,
        }

    def encode(self) -> bytes:
        """msgpack bytes for the output topic."""
        return encode_msgpack(self.to_wire())


# A record as large as the broker takes (about 1 MiB) does not fit in a dead letter beside its
# reason, topic and key: the producer refused it (MessageSizeTooLargeError, larger than its
# 1,048,576-byte max_request_size) and the batch could never be delivered. Its first 1,000,000
# bytes are kept, which leaves room for a reason, a topic name and a key of MAX_DEAD_LETTER_KEY_BYTES.
MAX_DEAD_LETTER_RAW_BYTES = 1_000_000
MAX_DEAD_LETTER_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input record that could not be processed, with the reason and its raw bytes."""

    reason: str
    raw: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    failed_ts_ms: int

    def to_wire(self) -> dict[str, Any]:
        """The dead-letter schema v1 map (raw cut to ``MAX_DEAD_LETTER_RAW_BYTES``, with a marker)."""
        wire: dict[str, Any] = {
            "v": DEAD_LETTER_SCHEMA_VERSION,
            "reason": self.reason,
            "raw": self.raw[:MAX_DEAD_LETTER_RAW_BYTES],
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "failed_ts": self.failed_ts_ms,
        }
        if len(self.raw) > MAX_DEAD_LETTER_RAW_BYTES:
            wire["raw_size"], wire["raw_truncated"] = len(self.raw), True
        return wire

    @property
    def wire_key(self) -> bytes | None:
        """The dead letter's Kafka key: the record's, cut to ``MAX_DEAD_LETTER_KEY_BYTES``."""
        return None if self.key is None else self.key[:MAX_DEAD_LETTER_KEY_BYTES]

    def encode(self) -> bytes:
        """msgpack bytes for the dead-letter topic."""
        return encode_msgpack(self.to_wire())
