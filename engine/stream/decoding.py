"""Raw records to positioned events, and the decoded events of held records kept for later.

A partition whose events wait for a snapshot (``BatchResult.held``) is offered again, from the
same records kept in memory by the ingest, until every partition caught up. Decoding them every
time cost more than processing them (a replay profile: 18% of the worker's CPU in decoding,
most of it the same held records again), so their decoded events are parked here, by position,
until they are offered again. Kafka never changes the record at an offset, so a parked event is
the one the record would decode to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from engine.event_decoder import decode_event
from engine.output import DeadLetter
from engine.schemas import InvalidEvent, quoted
from engine.stream.batch_records import RawRecord
from features.event import PositionedEvent


class BatchDecoder:
    """Decodes and validates records; events of held records are decoded once."""

    def __init__(self, currency: str | None, dead_letter: Callable[[str, RawRecord], DeadLetter]) -> None:
        self._currency = currency
        self._dead_letter = dead_letter
        self._parked: dict[tuple[int, int], PositionedEvent] = {}

    def decode(self, records: Sequence[RawRecord]) -> tuple[list[PositionedEvent], list[DeadLetter]]:
        """Split records into valid positioned events and dead letters with reasons."""
        events: list[PositionedEvent] = []
        dead: list[DeadLetter] = []
        parked = self._parked
        currency = self._currency
        for record in records:
            if parked and (hit := parked.pop((record.partition, record.offset), None)) is not None:
                events.append(hit)
                continue
            try:
                event = decode_event(record.value, currency)
                # Bytes against bytes: the key's bytes pick the partition, and a lossy decode of
                # them (b"\xff" and b"\xfe" both read as U+FFFD) would let one customer's events
                # into two partitions.
                if record.key is not None and record.key != event.customer_id.encode():
                    raise InvalidEvent(
                        f"message key {_key_text(record.key)} differs from customer_id "
                        f"{quoted(event.customer_id)}"
                    )
            except InvalidEvent as exc:
                dead.append(self._dead_letter(str(exc), record))
                continue
            events.append(PositionedEvent(event, record.partition, record.offset))
        return events, dead

    def park(self, events: Iterable[PositionedEvent]) -> None:
        """Keep the decoded events of held records until they are offered again."""
        for positioned in events:
            self._parked[(positioned.partition, positioned.offset)] = positioned

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is parked for these partitions (revoked: their next owner decodes them)."""
        gone = set(partitions)
        self._parked = {k: v for k, v in self._parked.items() if k[0] not in gone}

    @property
    def parked(self) -> int:
        """How many decoded events are parked."""
        return len(self._parked)


def _key_text(key: bytes) -> str:
    """A message key as a reason shows it: its text, or its bytes when they are not UTF-8."""
    try:
        return quoted(key.decode())
    except UnicodeDecodeError:
        return quoted(key)
