"""One customer's part of a batch or tick, as the pipeline commits it: outcome, write, outbox.

``CustomerRun.apply`` runs a customer's fresh events through ``CustomerStep`` (moving them on to
each event's time first, dead-lettering what is too late), ``CustomerRun.tick`` moves a customer
on by time alone; both are generators that yield score requests (``engine.stream.scoring``) and
return a ``CustomerOutcome``: the compare-and-set write, the outbox entries (changes, late
letters, labels, action decisions and outcomes of ``engine.activation.planner``) and what the
indexes and aggregates need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.activation.planner import ActionPlanner
from engine.output import DeadLetter, SegmentChange
from engine.snapshots.population import placement_of
from engine.stream.batch_records import (
    DEAD_LETTER,
    DUPLICATE,
    LABEL,
    TOO_LATE,
    PendingChange,
    RawRecord,
    late_letter_id,
    parse_outbox_entry,
)
from engine.stream.customer_step import CustomerStep, Scored
from engine.stream.working import Working
from features.config import FeatureConfig
from features.event import SECONDS_PER_DAY, PositionedEvent
from features.redis_store import CustomerRecord, CustomerWrite
from features.state import CustomerState, apply_event
from models.label_messages import LabelMessage, encode_label

UNPLACED = object()
"""``CustomerOutcome.population`` of a customer whose population placement was not computed."""


@dataclass(slots=True)
class CustomerOutcome:
    """What one customer's events (or a tick) did in one batch."""

    write: CustomerWrite | None = None
    deliveries: list[PendingChange] = field(default_factory=list)
    applied: int = 0
    too_late: int = 0
    partition: int = 0
    due: float | None = None
    placements: dict[str, str | None] = field(default_factory=dict)
    revenue_minor: int = 0
    population: object = UNPLACED
    """Where the customer is counted in their partition's population (``_UNPLACED``: untouched)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(event type, ``duplicate`` | ``too_late``) of each event not applied (for the metrics)."""


class CustomerRun:
    """Runs one customer's events or tick on their record, for the pipeline to commit."""

    def __init__(
        self, step: CustomerStep, features: FeatureConfig, clock: Callable[[], float], actions: ActionPlanner
    ) -> None:
        self._step = step
        self._actions = actions
        self._features = features
        self._clock = clock

    def apply(
        self,
        record: CustomerRecord,
        events: list[PositionedEvent],
        raw_by_position: dict[tuple[int, int], RawRecord],
        befores: dict[tuple[int, int], float | None],
    ) -> Scored:
        """Apply a customer's fresh events in order (``befores``: each one's partition watermark
        before it); too-late ones are dead-lettered through the outbox."""
        # Entries committed earlier but not confirmed sent (a crash in between) go out again.
        outcome = CustomerOutcome(
            deliveries=[parse_outbox_entry(record.customer_id, k, v) for k, v in record.outbox.items()]
        )
        fresh = record.fresh(events)
        if len(fresh) < len(events):
            outcome.skipped += _duplicates(events, fresh)
        if not fresh:
            # Redelivered: re-assert where the customer is counted, so lost aggregates heal.
            outcome.placements = self._step.placements(record)
            outcome.revenue_minor = record.state.revenue_minor if record.state is not None else 0
            outcome.partition = events[-1].partition
            outcome.population = placement_of(record.state)
            return outcome
        partition = fresh[-1].partition
        work = self._step.working(record)
        state: CustomerState | None = record.state
        offsets: dict[int, int] = {}
        new_entries: list[PendingChange] = []
        for positioned in fresh:
            offsets[positioned.partition] = positioned.offset
            # Older than the partition's watermark, or than a moment time alone moved the customer
            # to: too late, whatever the timing (see engine.stream.watermarks).
            before = befores.get((positioned.partition, positioned.offset))
            not_before = _later(work.ticked_to(state), before)
            if state is not None and (not_before is None or positioned.event.ts >= not_before):
                caught = yield from self._step.catch_up(
                    record.customer_id, state, work, partition, positioned.event.ts, before
                )
                new_entries += self._entries(work, caught)
                new_entries += self._actions.advance(work.actions, record.customer_id, positioned.event.ts)
            state, applied = apply_event(state, positioned.event, self._features, not_before)
            if not applied:
                outcome.too_late += 1
                outcome.skipped.append((positioned.event.type, TOO_LATE))
                late = self._too_late_letter(state, positioned, raw_by_position, not_before)
                new_entries.append(
                    PendingChange(record.customer_id, late_letter_id(positioned), late.encode(), DEAD_LETTER)
                )
                continue
            outcome.applied += 1
            new_entries += self._actions.on_event(work.actions, record.customer_id, positioned.event)
            changes = yield from self._step.apply_event(record, state, work, positioned)
            new_entries += self._entries(work, changes)
        assert state is not None
        self._finish(outcome, record, state, work, partition, new_entries, offsets)
        return outcome

    def tick(self, record: CustomerRecord, partition: int, watermark: float) -> Scored:
        """Move a customer with no new event on to ``watermark`` (see ``CustomerStep.tick``)."""
        outcome = CustomerOutcome(partition=partition)
        if record.state is None:  # expired or removed: nothing to move on
            outcome.write = None
            return outcome
            yield  # a generator like every step, even when it needs no score
        work = self._step.working(record)
        changes = yield from self._step.tick(record.customer_id, record.state, work, partition, watermark)
        entries = self._entries(work, changes)
        entries += self._actions.advance(work.actions, record.customer_id, watermark)
        self._finish(outcome, record, record.state, work, partition, entries, {})
        return outcome

    def _entries(self, work: Working, changes: list[SegmentChange]) -> list[PendingChange]:
        """Outbox entries of segment changes, each followed by the action decisions it causes."""
        entries = []
        for change in changes:
            entries.append(PendingChange(change.customer_id, change.change_id, change.encode()))
            entries += self._actions.on_change(work.actions, change)
        return entries

    def _finish(
        self,
        outcome: CustomerOutcome,
        record: CustomerRecord,
        state: CustomerState,
        work: object,
        partition: int,
        new_entries: list[PendingChange],
        offsets: dict[int, int],
    ) -> None:
        step = self._step.finish(record, state, work, partition)  # type: ignore[arg-type]
        outcome.partition, outcome.due = partition, step.due
        new_entries = new_entries + [_label_entry(record.customer_id, label) for label in step.labels]
        outcome.placements, outcome.revenue_minor = work.placements(), state.revenue_minor  # type: ignore[attr-defined]
        outcome.population = placement_of(state)
        outcome.deliveries += new_entries
        outcome.write = CustomerWrite(
            customer_id=record.customer_id,
            expected_version=record.version,
            offsets=offsets,
            state=state,
            extras=work.extras(),  # type: ignore[attr-defined]
            outbox={entry.change_id: entry.outbox_value() for entry in new_entries},
        )

    def _too_late_letter(
        self,
        state: CustomerState,
        positioned: PositionedEvent,
        raw_by_position: dict[tuple[int, int], RawRecord],
        ticked_to: float | None,
    ) -> DeadLetter:
        raw = raw_by_position[(positioned.partition, positioned.offset)]
        behind = (state.last_ts - positioned.event.ts) / SECONDS_PER_DAY
        allowed = self._features.allowed_lateness_seconds / SECONDS_PER_DAY
        reason = f"too late: {behind:.3f} days behind the customer's newest event (allowed {allowed:g})"
        if behind <= allowed and ticked_to is not None:
            judged = (ticked_to - positioned.event.ts) / SECONDS_PER_DAY
            reason = (
                f"too late: {judged:.3f} days before the moment event time already moved the customer "
                "to (the partition's watermark, or a moment they were judged at)"
            )
        return self.dead_letter(reason, raw)

    def dead_letter(self, reason: str, record: RawRecord) -> DeadLetter:
        """The dead letter of ``record``, with its one-line reason."""
        return DeadLetter(
            reason=reason,
            raw=record.value or b"",
            key=record.key,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            failed_ts_ms=round(self._clock() * 1000),
        )


def _later(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _duplicates(events: list[PositionedEvent], fresh: list[PositionedEvent]) -> list[tuple[str, str]]:
    """(type, ``duplicate``) of the events already applied (at or below the applied offset)."""
    kept = {(p.partition, p.offset) for p in fresh}
    return [(p.event.type, DUPLICATE) for p in events if (p.partition, p.offset) not in kept]


def _label_entry(customer_id: str, label: LabelMessage) -> PendingChange:
    """A resolved label's outbox entry (for the labels topic), under its stable label id."""
    return PendingChange(customer_id, f"l:{label.label_id}", encode_label(label), LABEL)
