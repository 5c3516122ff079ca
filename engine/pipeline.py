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
from features.catalogue import FeatureSnapshot, snapshot
from features.config import FeatureConfig
from features.event import SECONDS_PER_DAY, PositionedEvent
from features.record_cache import RecordCache
from features.redis_store import CustomerRecord, CustomerWrite, RedisFeatureStore
from features.state import CustomerState, apply_event

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


SEGMENT_CHANGE, DEAD_LETTER = "c", "d"


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A committed output record waiting for delivery: a segment change or a too-late letter."""

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


@dataclass(slots=True)
class CustomerOutcome:
    """What one customer's events did in one batch."""

    write: CustomerWrite | None = None
    deliveries: list[PendingChange] = field(default_factory=list)
    applied: int = 0
    too_late: int = 0


@dataclass(slots=True)
class BatchResult:
    """What one batch produced and how its events were accounted for."""

    changes: list[PendingChange] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    too_late: int = 0


class OwnershipLost(RuntimeError):
    """Another writer keeps advancing these customers: this worker no longer owns them."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The knobs of the pipeline (taken from Settings by the app)."""

    lifecycle: lifecycle.LifecycleParams
    rules_version: str
    features: FeatureConfig = field(default_factory=FeatureConfig)
    currency: str | None = None


class SegmentPipeline:
    """Applies batches of raw records to the store and derives segment changes."""

    def __init__(
        self,
        store: RedisFeatureStore,
        config: PipelineConfig,
        clock: Callable[[], float] = time.time,
        cache_capacity: int = 0,
    ) -> None:
        self._store = store
        self._cache = RecordCache(cache_capacity)
        self._config = config
        self._clock = clock

    @property
    def store(self) -> RedisFeatureStore:
        """The feature store this pipeline writes to."""
        return self._store

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
                dead.append(self._dead_letter(str(exc), record))
                continue
            events.append(PositionedEvent(event, record.partition, record.offset))
        return events, dead

    async def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """Decode, apply and commit one batch; return what to deliver."""
        events, dead = self.decode(records)
        result = BatchResult(dead_letters=dead)
        raw_by_position = {(r.partition, r.offset): r for r in records}
        by_customer: dict[str, list[PositionedEvent]] = {}
        for positioned in events:
            by_customer.setdefault(positioned.event.customer_id, []).append(positioned)
        pending = list(by_customer)
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            if not pending:
                break
            records = await self._records(pending)
            outcomes = {
                cid: self._apply_customer(records[cid], by_customer[cid], raw_by_position) for cid in pending
            }
            writes = [o.write for o in outcomes.values() if o.write is not None]
            unchanged = {
                cid: state for cid, o in outcomes.items() if o.write is None and (state := records[cid].state)
            }
            lost = set(await self._store.commit(writes, unchanged))
            for customer_id, outcome in outcomes.items():
                if customer_id in lost:
                    self._cache.discard(customer_id)
                    continue
                self._cache.put_committed(records[customer_id], outcome.write)
                result.applied += outcome.applied
                result.too_late += outcome.too_late
                result.duplicates += len(by_customer[customer_id]) - outcome.applied - outcome.too_late
                result.changes.extend(outcome.deliveries)
            if lost:
                log.warning("record moved under %d customers; reloading them", len(lost))
            pending = [cid for cid in pending if cid in lost]
        if pending:
            raise OwnershipLost(f"{len(pending)} customers kept changing under this worker")
        return result

    async def _records(self, customer_ids: list[str]) -> dict[str, CustomerRecord]:
        """Records from the writer's cache where present, the rest in one round trip."""
        records: dict[str, CustomerRecord] = {}
        misses = []
        for customer_id in customer_ids:
            cached = self._cache.get(customer_id)
            if cached is None:
                misses.append(customer_id)
            else:
                records[customer_id] = cached
        if misses:
            records.update(await self._store.load(misses))
        return records

    def forget_cached(self) -> None:
        """Drop every cached record (call when partitions are revoked)."""
        self._cache.clear()

    def _apply_customer(
        self,
        record: CustomerRecord,
        events: list[PositionedEvent],
        raw_by_position: dict[tuple[int, int], RawRecord],
    ) -> CustomerOutcome:
        # Entries committed earlier but not confirmed sent (a crash in between) go out again.
        outcome = CustomerOutcome(
            deliveries=[parse_outbox_entry(record.customer_id, k, v) for k, v in record.outbox.items()]
        )
        fresh = record.fresh(events)
        if not fresh:
            return outcome
        state: CustomerState | None = record.state
        membership: dict[str, str] = (
            decode_msgpack(record.extras[MEMBERSHIP_EXTRA]) if MEMBERSHIP_EXTRA in record.extras else {}
        )
        offsets: dict[int, int] = {}
        new_entries: list[PendingChange] = []
        for positioned in fresh:
            offsets[positioned.partition] = positioned.offset
            state, applied = apply_event(state, positioned.event, self._config.features)
            if not applied:
                outcome.too_late += 1
                late = self._too_late_letter(state, positioned, raw_by_position)
                new_entries.append(
                    PendingChange(record.customer_id, late_letter_id(positioned), late.encode(), DEAD_LETTER)
                )
                continue
            outcome.applied += 1
            features = snapshot(record.customer_id, state, self._config.features)
            change = self._decide(record.customer_id, features, membership, positioned)
            if change is not None:
                membership[change.family] = change.to_segment  # type: ignore[assignment]
                new_entries.append(PendingChange(record.customer_id, change.change_id, change.encode()))
        assert state is not None
        outcome.deliveries += new_entries
        outcome.write = CustomerWrite(
            customer_id=record.customer_id,
            expected_version=record.version,
            offsets=offsets,
            state=state,
            extras={MEMBERSHIP_EXTRA: encode_msgpack(membership)},
            outbox={entry.change_id: entry.outbox_value() for entry in new_entries},
        )
        return outcome

    def _too_late_letter(
        self,
        state: CustomerState,
        positioned: PositionedEvent,
        raw_by_position: dict[tuple[int, int], RawRecord],
    ) -> DeadLetter:
        raw = raw_by_position[(positioned.partition, positioned.offset)]
        behind = (state.last_ts - positioned.event.ts) / SECONDS_PER_DAY
        allowed = self._config.features.allowed_lateness_seconds / SECONDS_PER_DAY
        reason = f"too late: {behind:.3f} days behind the customer's newest event (allowed {allowed:g})"
        return self._dead_letter(reason, raw)

    def _dead_letter(self, reason: str, record: RawRecord) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            raw=record.value or b"",
            key=record.key,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            failed_ts_ms=round(self._clock() * 1000),
        )

    def _decide(
        self,
        customer_id: str,
        features: FeatureSnapshot,
        membership: dict[str, str],
        positioned: PositionedEvent,
    ) -> SegmentChange | None:
        decision = lifecycle.evaluate(features, self._config.lifecycle)
        current = membership.get(decision.family)
        if current == decision.segment:
            return None
        event = positioned.event
        recency = features["recency_days"]
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
                "recency_days": None if recency is None else round(float(recency), 3),
                "frequency": features["frequency"],
                "monetary": features["monetary"],
                "tenure_days": round(float(features["tenure_days"] or 0.0), 3),
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
        for customer_id, entry_ids in sent.items():
            self._cache.forget_outbox(customer_id, entry_ids)
