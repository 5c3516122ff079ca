"""The path of one batch of input records, without Faust: decode, features, rules, outbox.

``SegmentPipeline.process`` is what the Faust agent calls for every batch it takes; tests and
file replays call it directly. It is safe to call again with any redelivered records: events
at or below a customer's applied offset change nothing, and change events that were committed
but not yet confirmed sent are returned again (same ``change_id``) until ``confirm_sent``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine.codecs import decode_msgpack, decode_payload, encode_msgpack
from engine.output import DeadLetter, SegmentChange, change_id
from engine.rules import lifecycle
from engine.schemas import InvalidEvent, validate_event
from features.event import PositionedEvent
from features.redis_store import CustomerRecord, CustomerWrite, RedisFeatureStore
from features.state import CustomerState, apply_event, rfm_view

log = logging.getLogger(__name__)

MEMBERSHIP_EXTRA = "m"
MAX_COMMIT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One input record as consumed: where it came from and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A committed change event waiting for delivery to the output topic."""

    customer_id: str
    change_id: str
    payload: bytes


@dataclass(slots=True)
class BatchResult:
    """What one batch produced and how its events were accounted for."""

    changes: list[PendingChange] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0


class OwnershipLost(RuntimeError):
    """Another writer keeps advancing these customers: this worker no longer owns them."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The knobs of the pipeline (taken from Settings by the app)."""

    lifecycle: lifecycle.LifecycleParams
    rules_version: str
    currency: str | None = None


class SegmentPipeline:
    """Applies batches of raw records to the store and derives segment changes."""

    def __init__(
        self,
        store: RedisFeatureStore,
        config: PipelineConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    def decode(self, records: Sequence[RawRecord]) -> tuple[list[PositionedEvent], list[DeadLetter]]:
        """Split records into valid positioned events and dead letters with reasons."""
        events: list[PositionedEvent] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                event = validate_event(decode_payload(record.value), currency=self._config.currency)
                key = None if record.key is None else record.key.decode("utf-8", "replace")
                if key is not None and key != event.customer_id:
                    raise InvalidEvent(f"message key {key!r} differs from customer_id {event.customer_id!r}")
            except InvalidEvent as exc:
                dead.append(
                    DeadLetter(
                        reason=str(exc),
                        raw=record.value or b"",
                        key=record.key,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        failed_ts_ms=round(self._clock() * 1000),
                    )
                )
                continue
            events.append(PositionedEvent(event, record.partition, record.offset))
        return events, dead

    async def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """Decode, apply and commit one batch; return the changes to deliver."""
        events, dead = self.decode(records)
        result = BatchResult(dead_letters=dead)
        by_customer: dict[str, list[PositionedEvent]] = {}
        for positioned in events:
            by_customer.setdefault(positioned.event.customer_id, []).append(positioned)
        pending = list(by_customer)
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            if not pending:
                break
            records_by_id = await self._store.load(pending)
            writes: list[CustomerWrite] = []
            attempt_changes: dict[str, list[PendingChange]] = {}
            attempt_counts: dict[str, tuple[int, int]] = {}
            for customer_id in pending:
                record = records_by_id[customer_id]
                write, changes, applied = self._apply_customer(record, by_customer[customer_id])
                duplicates = len(by_customer[customer_id]) - applied
                attempt_counts[customer_id] = (applied, duplicates)
                old_outbox = [PendingChange(customer_id, cid, body) for cid, body in record.outbox.items()]
                attempt_changes[customer_id] = old_outbox + changes
                if write is not None:
                    writes.append(write)
            lost = set(await self._store.commit(writes))
            for customer_id in pending:
                if customer_id in lost:
                    continue
                applied, duplicates = attempt_counts[customer_id]
                result.applied += applied
                result.duplicates += duplicates
                result.changes.extend(attempt_changes[customer_id])
            if lost:
                log.warning("offset moved under %d customers; reloading them", len(lost))
            pending = [cid for cid in pending if cid in lost]
        if pending:
            raise OwnershipLost(f"{len(pending)} customers kept changing under this worker")
        return result

    def _apply_customer(
        self, record: CustomerRecord, events: list[PositionedEvent]
    ) -> tuple[CustomerWrite | None, list[PendingChange], int]:
        fresh = record.fresh(events)
        if not fresh:
            return None, [], 0
        state: CustomerState | None = record.state
        membership: dict[str, str] = (
            decode_msgpack(record.extras[MEMBERSHIP_EXTRA]) if MEMBERSHIP_EXTRA in record.extras else {}
        )
        offsets: dict[int, tuple[int | None, int]] = {}
        changes: list[PendingChange] = []
        for positioned in fresh:
            state = apply_event(state, positioned.event)
            previous = offsets.get(positioned.partition, (record.applied_offset(positioned.partition), 0))
            offsets[positioned.partition] = (previous[0], positioned.offset)
            change = self._decide(record.customer_id, state, membership, positioned)
            if change is not None:
                membership[change.family] = change.to_segment  # type: ignore[assignment]
                changes.append(PendingChange(record.customer_id, change.change_id, change.encode()))
        assert state is not None
        write = CustomerWrite(
            customer_id=record.customer_id,
            offsets=offsets,
            state=state,
            extras={MEMBERSHIP_EXTRA: encode_msgpack(membership)},
            outbox={c.change_id: c.payload for c in changes},
        )
        return write, changes, len(fresh)

    def _decide(
        self, customer_id: str, state: CustomerState, membership: dict[str, str], positioned: PositionedEvent
    ) -> SegmentChange | None:
        decision = lifecycle.evaluate(state, state.last_ts, self._config.lifecycle)
        current = membership.get(decision.family)
        if current == decision.segment:
            return None
        event = positioned.event
        rfm = rfm_view(state, state.last_ts)
        return SegmentChange(
            change_id=change_id(
                customer_id,
                decision.family,
                current,
                decision.segment,
                positioned.partition,
                positioned.offset,
            ),
            customer_id=customer_id,
            family=decision.family,
            from_segment=current,
            to_segment=decision.segment,
            event_ts_ms=round(event.ts * 1000),
            emitted_ts_ms=round(self._clock() * 1000),
            rules_version=self._config.rules_version,
            reason=decision.reason(),
            features={
                "recency_days": None if rfm.recency_days is None else round(rfm.recency_days, 3),
                "frequency": rfm.frequency,
                "monetary": rfm.monetary,
                "tenure_days": round(rfm.tenure_days, 3),
            },
            cause={
                "event_id": event.event_id,
                "partition": positioned.partition,
                "offset": positioned.offset,
            },
        )

    async def confirm_sent(self, changes: Sequence[PendingChange]) -> None:
        """Forget delivered change events from the outbox (call after the broker acked them)."""
        sent: dict[str, list[str]] = {}
        for change in changes:
            sent.setdefault(change.customer_id, []).append(change.change_id)
        await self._store.clear_outbox(sent)
