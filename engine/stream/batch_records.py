"""The records a batch reads and the output records it leaves in customers' outboxes."""

from __future__ import annotations

from dataclasses import dataclass

from features.event import PositionedEvent


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record as consumed: where it came from and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    """The record's Kafka timestamp (None: not from Kafka, e.g. a file replay)."""


APPLIED, DUPLICATE, TOO_LATE, DEAD_LETTERED = "applied", "duplicate", "too_late", "dead_lettered"
"""What became of an input event (``BatchResult.events``, ``segflow_events_total{outcome}``)."""
INVALID_TYPE = "invalid"
"""The event type counted for a record that did not decode to a valid event."""


SEGMENT_CHANGE, DEAD_LETTER, LABEL, ACTION, OUTCOME, TALLY = "c", "d", "l", "a", "o", "t"
"""Outbox entry kinds: a segment change, a too-late event's dead letter, a resolved label, an
action decision (``engine.activation.actions``), a decision's outcome (``.outcomes``) and the
same outcome for the learner's tallies (``models.outcome_messages``, on the labels topic)."""
LEARNER_KINDS = (LABEL, TALLY)
"""The kinds that go to the labels topic, keyed by their id (the entry id without its prefix)."""


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A committed output record waiting for delivery: a segment change, a too-late letter or a label."""

    customer_id: str
    change_id: str
    payload: bytes
    kind: str = SEGMENT_CHANGE

    def outbox_value(self) -> bytes:
        """How the entry is stored in the customer's outbox: kind byte + payload."""
        return self.kind.encode() + self.payload


def parse_outbox_entry(customer_id: str, entry_id: str, value: bytes) -> PendingChange:
    """Inverse of ``PendingChange.outbox_value``."""
    return PendingChange(customer_id, entry_id, value[1:], value[:1].decode())


def late_letter_id(positioned: PositionedEvent) -> str:
    """Outbox id of the dead letter of a too-late event (stable for that record)."""
    return f"late:{positioned.partition}:{positioned.offset}"
