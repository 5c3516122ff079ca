"""The path of one batch of input records, without Faust: decode, features, rules, outbox.

``SegmentPipeline.process`` is what the Faust agent calls for every batch it takes; tests and
file replays call it directly. It is safe to call again with any redelivered records: events
at or below a customer's applied offset change nothing, and change events that were committed
but not yet confirmed sent are returned again (same ``change_id``) until ``confirm_sent``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from redis.exceptions import RedisError

from engine.event_decoder import decode_event
from engine.output import DeadLetter
from engine.rules.model import RuleSet
from engine.schemas import InvalidEvent
from engine.snapshots.population import Placement, PopulationSnapshots, placement_of
from engine.stream.aggregates import Move, SegmentAggregates
from engine.stream.batch_records import (
    DEAD_LETTER,
    LABEL,
    SEGMENT_CHANGE,
    PendingChange,
    RawRecord,
    late_letter_id,
    parse_outbox_entry,
)
from engine.stream.customer_step import CustomerStep, Scored, StepConfig
from engine.stream.due_index import DueIndex
from engine.stream.model_gate import ModelGate
from engine.stream.population_gate import PopulationGate
from engine.stream.scoring import run_scored
from engine.stream.watermarks import LanePlan, PartitionClock, crossed_days
from features.event import SECONDS_PER_DAY, PositionedEvent
from features.record_cache import RecordCache
from features.redis_store import CustomerRecord, CustomerWrite, RedisFeatureStore
from features.state import CustomerState, apply_event
from models.label_messages import LabelMessage, encode_label

__all__ = ["DEAD_LETTER", "LABEL", "SEGMENT_CHANGE", "PendingChange", "RawRecord", "SegmentPipeline"]
log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 5
_UNPLACED = object()
TICK_BATCH = 500


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
    population: object = None
    """Where the customer is counted in their partition's population (``_UNPLACED``: untouched)."""


@dataclass(slots=True)
class BatchResult:
    """What one batch produced and how its events were accounted for."""

    changes: list[PendingChange] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    too_late: int = 0
    labels: int = 0
    """Labels resolved (they are among ``changes``, for the labels topic)."""
    ticked: int = 0
    frontiers: dict[int, float] = field(default_factory=dict)
    """Partition -> every label due before this event time is among the outputs so far: publish
    it once they are delivered (the learner seals model versions by it)."""
    held: dict[int, int] = field(default_factory=dict)
    """Partition -> first offset not processed: it waits for a population snapshot to be sealed
    (other partitions are behind in event time); fetch it again from there, a little later."""


class OwnershipLost(RuntimeError):
    """Another writer keeps advancing these customers: this worker no longer owns them."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The knobs of the pipeline (taken from Settings by the app)."""

    step: StepConfig
    currency: str | None = None
    idle_advance_seconds: float = 30.0
    source_partitions: int = 8
    """How many partitions the events topic has: each contributes to every population snapshot."""


class SegmentPipeline:
    """Applies batches of raw records to the store, scores, segments and derives changes."""

    def __init__(
        self,
        store: RedisFeatureStore,
        config: PipelineConfig,
        models: ModelGate,
        rules: RuleSet,
        clock: Callable[[], float] = time.time,
        cache_capacity: int = 0,
        empty_partitions: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self._store = store
        self._cache = RecordCache(cache_capacity)
        self._config = config
        self._clock = clock
        self.models = models
        self.due = DueIndex(store.client, store.prefix)
        self.owned: set[int] = set()
        """The partitions this pipeline ticks (assigned to its worker, or seen in its batches)."""
        self.rules = rules
        lateness = config.step.features.allowed_lateness_seconds
        self.clock = PartitionClock(store.client, store.prefix, lateness, config.idle_advance_seconds, clock)
        snapshots = PopulationSnapshots(store.client, store.prefix, config.source_partitions)
        self.population = PopulationGate(
            snapshots, config.source_partitions, lateness, empty_partitions or self._never_committed
        )
        self.aggregates = SegmentAggregates(store.client, store.prefix)
        self._step = CustomerStep(
            config.step,
            lambda: self.rules,
            self.population.cuts_at,
            models.at,
            clock,
            self.population.next_version_moment,
        )
        self._seen: set[int] = set()
        self._uncertain: set[str] = set()
        self._released: set[int] = set()
        """Partitions released as idle by ``release_idle`` until their next events."""
        """Customers whose commit failed with an error after it may have been applied."""
        self._pending: dict[int, float] = {}
        """Partition -> the watermark of its first held event (see ``process``)."""
        self._positions: dict[int, tuple[float, int]] = {}
        """Partition -> (newest event time, offset) the commit in flight brings it to."""
        self._unclear: dict[str, list[str]] = {}
        """Delivered outbox entries not yet removed from Redis (removed by the next commit)."""
        self._deferred_seq = 0
        self._cleared_seq = 0
        self._scripts_loaded = False

    @property
    def store(self) -> RedisFeatureStore:
        """The feature store this pipeline writes to."""
        return self._store

    @property
    def step(self) -> CustomerStep:
        """The per-customer computation (features, labels, scores, segments)."""
        return self._step

    def decode(self, records: Sequence[RawRecord]) -> tuple[list[PositionedEvent], list[DeadLetter]]:
        """Split records into valid positioned events and dead letters with reasons."""
        events: list[PositionedEvent] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                event = decode_event(record.value, self._config.currency)
                key = None if record.key is None else record.key.decode("utf-8", "replace")
                if key is not None and key != event.customer_id:
                    raise InvalidEvent(f"message key {key!r} differs from customer_id {event.customer_id!r}")
            except InvalidEvent as exc:
                dead.append(self._dead_letter(str(exc), record))
                continue
            events.append(PositionedEvent(event, record.partition, record.offset))
        return events, dead

    def _never_committed(self) -> list[int]:
        """Without a broker to ask (replays, tests): partitions that never committed an event."""
        known = self.clock.newest
        return [p for p in range(self._config.source_partitions) if p not in known and p not in self._seen]

    async def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """Decode, apply and commit one batch; return what to deliver.

        Each partition's events run in offset order, in chunks that end where the partition's
        watermark first passes the end of a day (its population is recorded for that day's
        snapshot there) or where an event needs a population snapshot that is not sealed yet:
        those events are ``held`` and must be offered again later.
        """
        events, dead = self.decode(records)
        result = BatchResult(dead_letters=dead)
        await self._resend_uncertain(result)
        by_partition: dict[int, list[PositionedEvent]] = {}
        for positioned in events:
            by_partition.setdefault(positioned.partition, []).append(positioned)
        self._seen.update(by_partition)
        self.owned.update(by_partition)
        self._released.difference_update(by_partition)
        await self.clock.ensure(by_partition)
        raw_by_position = {(r.partition, r.offset): r for r in records}
        lanes: dict[int, LanePlan] = {}
        again: list[PositionedEvent] = []
        for partition, lane_events in sorted(by_partition.items()):
            lanes[partition], redelivered = self.clock.plan(partition, lane_events)
            again += redelivered
        cursor = dict.fromkeys(lanes, 0)
        contributed: set[tuple[int, int]] = set()
        while True:
            ends: dict[int, int] = {}
            for partition, lane in lanes.items():
                i = cursor[partition]
                if i >= len(lane.events):
                    continue
                if lane.crossed[i] and (partition, i) not in contributed:
                    await self.population.contribute(partition, lane.crossed[i])
                    contributed.add((partition, i))
                j = i
                while j < len(lane.events) and (j == i or not lane.crossed[j]):
                    if not await self._ready(lane.events[j].event.ts):
                        break
                    j += 1
                if j > i:
                    ends[partition] = j
            chunk = [e for p, j in ends.items() for e in lanes[p].events[cursor[p] : j]] + again
            if not chunk:
                break
            befores = {
                (p, lanes[p].events[k].offset): lanes[p].before[k]
                for p, j in ends.items()
                for k in range(cursor[p], j)
            }
            self._positions = {
                p: (lanes[p].newest[j - 1], lanes[p].events[j - 1].offset) for p, j in ends.items()
            }
            await self._run_chunk(chunk, befores, raw_by_position, result)
            for partition, (newest, offset) in self._positions.items():
                self.clock.advance(partition, newest, offset)
                cursor[partition] = ends[partition]
            self._positions, again = {}, []
        for partition, lane in lanes.items():
            if cursor[partition] < len(lane.events):
                result.held[partition] = lane.events[cursor[partition]].offset
                # Time may move on to the held event's watermark before it (ticks, frontiers):
                # nothing at or after it can be older, so this changes no decision.
                self._pending[partition] = lane.newest[cursor[partition]] - self.clock.lateness
        if result.held:
            await self.clock.hold({p: lanes[p].newest[cursor[p]] for p in result.held})
        if result.held:  # what is fetched again is dead-lettered then
            held = result.held
            result.dead_letters = [
                d for d in result.dead_letters if d.partition not in held or d.offset < held[d.partition]
            ]
        return result

    async def _ready(self, ts: float) -> bool:
        """Whether a decision at ``ts`` can read its model and population snapshots now."""
        version = self.models.version_of(ts)
        if not (self.models.is_loaded(version) or await self.models.ensure(version, version)):
            return False
        if not self._step.reads_quintiles():
            return True
        day = self.population.version_of(ts)
        return self.population.is_sealed(day) or await self.population.ensure(day, day)

    async def _run_chunk(
        self,
        events: list[PositionedEvent],
        befores: dict[tuple[int, int], float | None],
        raw_by_position: dict[tuple[int, int], RawRecord],
        result: BatchResult,
    ) -> None:
        by_customer: dict[str, list[PositionedEvent]] = {}
        for positioned in events:
            by_customer.setdefault(positioned.event.customer_id, []).append(positioned)
        latest = max(e.event.ts for e in events)

        def run(record: CustomerRecord) -> Scored:
            return self._apply_customer(record, by_customer[record.customer_id], raw_by_position, befores)

        committed = await self._commit_with_retries(list(by_customer), run, latest)
        returned = {change.change_id for change in result.changes}
        for customer_id, outcome in committed.items():
            result.applied += outcome.applied
            result.too_late += outcome.too_late
            result.duplicates += len(by_customer[customer_id]) - outcome.applied - outcome.too_late
            # An earlier chunk's entries are in the outbox until delivered: return them once.
            result.changes.extend(d for d in outcome.deliveries if d.change_id not in returned)
        result.labels = sum(1 for c in result.changes if c.kind == LABEL)

    async def tick(self, partitions: Sequence[int] | None = None) -> BatchResult:
        """Move on every customer due by their partition's watermark (labels, timed segments).

        One round trip finds the due customers of every partition, one commits them all. Time
        moves on only as far as sealed population snapshots reach.
        """
        result = BatchResult()
        await self._resend_uncertain(result)
        owned = sorted(self.owned if partitions is None else set(partitions) & self.owned)
        await self.clock.ensure(owned)
        idle = [p for p in owned if self.clock.idle(p) or p in self._released]
        await self.release_idle(idle)
        furthest = await self.clock.furthest_newest() if idle else None
        reached: dict[int, float] = {}
        for partition in owned:
            watermark = self.clock.tick_watermark(partition, self._pending.get(partition))
            if partition in idle and furthest is not None:
                # Idle: it holds nothing back, and its timers go as far as the furthest partition.
                moved_on = furthest - self.clock.lateness
                watermark = moved_on if watermark is None else max(watermark, moved_on)
            if watermark is not None:
                reached[partition] = watermark
        due = await self.due.due_by(reached, TICK_BATCH)
        watermarks: dict[int, float] = {}
        for partition, watermark in reached.items():
            customers = due.get(partition, [])
            cap = await self._sealed_through(watermark) if customers else watermark
            moved = [(cid, ts) for cid, ts in customers if cap is not None and ts <= cap]
            # Every label due before the frontier is resolved once the moved customers are moved on.
            frontier = watermark if cap is None else min(watermark, cap)
            if len(moved) < len(customers):
                frontier = min(frontier, customers[len(moved)][1])
            elif len(customers) == TICK_BATCH:
                frontier = min(frontier, customers[-1][1])
            result.frontiers[partition] = frontier
            if moved:
                watermarks[partition] = min(watermark, cap)  # type: ignore[type-var]
                due[partition] = moved
            else:
                due.pop(partition, None)
        moments = {cid: (p, watermarks[p]) for p, customers in due.items() for cid, _ in customers}
        if not moments:
            return result

        def run(record: CustomerRecord) -> Scored:
            partition, watermark = moments[record.customer_id]
            return self._tick_customer(record, partition, watermark)

        committed = await self._commit_with_retries(list(moments), run, max(watermarks.values()))
        for outcome in committed.values():
            result.changes.extend(outcome.deliveries)
        result.ticked += len(committed)
        result.labels = sum(1 for c in result.changes if c.kind == LABEL)
        return result

    async def release_idle(self, partitions: Sequence[int]) -> None:
        """Let idle ``partitions`` stop holding snapshots back (as Flink's idleness).

        A partition without events for ``idle_advance_seconds`` of wall-clock time (a quiet
        source, an empty one) records its population, unchanged since, for every day up to the
        furthest any partition's watermark has reached, and its timers move on that far, so its
        labels are resolved and its frontier follows: the others go on. This depends on the wall
        clock: a partition whose events only came late would have decided differently. Replays
        of a whole log call it for each partition once its records are all in (``engine.stream.replay``).
        """
        if not partitions:
            return
        self._released.update(partitions)
        newest = await self.clock.furthest_newest()
        if newest is None:
            return
        for partition in partitions:
            committed = self.clock.watermark(partition)
            if committed is not None:
                await self.population.contribute(
                    partition, crossed_days(committed, newest - self.clock.lateness)
                )

    async def _sealed_through(self, watermark: float) -> float | None:
        """The latest moment up to ``watermark`` whose snapshots are sealed (None: none is)."""
        cap: float | None = watermark
        gates: list[ModelGate | PopulationGate] = [self.models]
        if self._step.reads_quintiles():
            gates.append(self.population)
        for gate in gates:
            version = gate.version_of(watermark)
            if gate.is_loaded(version) or await gate.ensure(version, version):
                continue
            highest = gate.highest
            if highest is None or cap is None:
                return None
            cap = min(cap, gate.last_moment_of(highest))
        return cap

    async def _commit_with_retries(
        self, customer_ids: list[str], run: Callable[[CustomerRecord], Scored], latest: float
    ) -> dict[str, CustomerOutcome]:
        """Compute and commit every customer (compare-and-set), recomputing those that lost.

        ``latest`` is the latest moment any of them is judged at.
        """
        committed: dict[str, CustomerOutcome] = {}
        pending = customer_ids
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            if not pending:
                break
            records = await self._records(pending)
            await self._load_snapshots(records.values(), latest)
            outcomes = run_scored({cid: run(records[cid]) for cid in pending})
            writes = [o.write for o in outcomes.values() if o.write is not None]
            unchanged = {
                cid: state for cid, o in outcomes.items() if o.write is None and (state := records[cid].state)
            }
            lost = set(await self._commit_and_clear(writes, unchanged, outcomes))
            for customer_id, outcome in outcomes.items():
                if customer_id in lost:
                    self._cache.discard(customer_id)
                    continue
                self._cache.put_committed(records[customer_id], outcome.write)
                committed[customer_id] = outcome
            if lost:
                log.warning("record moved under %d customers; reloading them", len(lost))
            pending = [cid for cid in pending if cid in lost]
        if pending:
            raise OwnershipLost(f"{len(pending)} customers kept changing under this worker")
        return committed

    async def _load_snapshots(self, records: Iterable[CustomerRecord], latest: float) -> None:
        """Make sure every snapshot the customers' moments read is loaded (up to ``latest``'s)."""
        moments = [r.state.last_ts for r in records if r.state is not None]
        earliest = min(moments, default=latest)
        gates: list[ModelGate | PopulationGate] = [self.models]
        if self._step.reads_quintiles():
            gates.append(self.population)
        for gate in gates:
            low, high = gate.version_of(min(earliest, latest)), gate.version_of(latest)
            if not await gate.ensure(low, high):
                raise RuntimeError(f"snapshot {high} was sealed, but an earlier one is not")

    async def _commit_and_clear(
        self,
        writes: list[CustomerWrite],
        unchanged: dict[str, CustomerState],
        outcomes: dict[str, CustomerOutcome],
    ) -> list[str]:
        """One round trip: forget delivered outbox entries, commit, update indexes and aggregates."""
        if not self._scripts_loaded:
            await self._load_scripts()
        clearing, through = self._unclear, self._deferred_seq
        also = partial(self._queue_indexes, outcomes=outcomes)
        try:
            lost = await self._store.commit(
                writes, unchanged, also, clear=clearing, reload=self._load_scripts
            )
        except (RedisError, OSError):
            # The writes may have been applied with their replies lost: their outbox entries are
            # offered again by the next batch or tick (``_resend_uncertain``), whatever comes next.
            self._scripts_loaded = False
            self._uncertain.update(w.customer_id for w in writes if w.outbox)
            raise
        self._unclear = {}
        self._cleared_seq = through
        return lost

    async def _load_scripts(self) -> None:
        """Load every script a commit runs (after a Redis restart their cache is empty)."""
        await self.aggregates.ensure_script()
        await self.population.snapshots.ensure_script()
        self._scripts_loaded = True

    async def _resend_uncertain(self, result: BatchResult) -> None:
        """Offer again the outbox entries of customers whose last commit's reply was lost."""
        if not self._uncertain:
            return
        customers, self._uncertain = sorted(self._uncertain), set()
        for customer_id in customers:
            self._cache.discard(customer_id)
        records = await self._records(customers)
        returned = {c.change_id for c in result.changes}
        for customer_id, record in records.items():
            for entry_id, value in record.outbox.items():
                if entry_id not in returned:
                    result.changes.append(parse_outbox_entry(customer_id, entry_id, value))

    def defer_clear(self, changes: Sequence[PendingChange]) -> int:
        """Mark delivered entries to be removed from the outbox by the next commit's round trip.

        Returns a ticket: once ``cleared_through`` reaches it, the entries are gone from Redis.
        """
        if not changes:
            return self._cleared_seq if not self._unclear else self._deferred_seq
        for change in changes:
            self._unclear.setdefault(change.customer_id, []).append(change.change_id)
            self._cache.forget_outbox(change.customer_id, [change.change_id])
        self._deferred_seq += 1
        return self._deferred_seq

    @property
    def cleared_through(self) -> int:
        """The highest ``defer_clear`` ticket whose entries were removed from Redis."""
        return self._cleared_seq

    async def flush_cleared(self) -> None:
        """Remove every deferred outbox entry now, in one round trip (when no commit comes soon)."""
        if self._unclear:
            through = self._deferred_seq
            await self._store.clear_outbox(self._unclear)
            self._unclear = {}
            self._cleared_seq = through

    def _queue_indexes(self, pipe: object, *, outcomes: dict[str, CustomerOutcome]) -> None:
        by_partition: dict[int, dict[str, float | None]] = {}
        for customer_id, outcome in outcomes.items():
            if outcome.write is None:
                continue
            by_partition.setdefault(outcome.partition, {})[customer_id] = outcome.due
        for partition, due in by_partition.items():
            self.due.queue(pipe, partition, due)
        placed: dict[int, dict[str, Placement | None]] = {}
        for customer_id, outcome in outcomes.items():
            if outcome.population is not _UNPLACED:
                placed.setdefault(outcome.partition, {})[customer_id] = outcome.population  # type: ignore[assignment]
        for partition, placements in placed.items():
            self.population.queue_placements(pipe, partition, placements)
        if self._positions:
            self.clock.queue_positions(pipe, self._positions)
        moves: dict[str, list[Move]] = {family.name: [] for family in self.rules.families}
        for customer_id, outcome in outcomes.items():
            for name, segment in outcome.placements.items():
                if name in moves:
                    moves[name].append((customer_id, segment, outcome.revenue_minor))
        for family in self.rules.families:
            self.aggregates.queue_moves(pipe, family, moves[family.name])

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
            loaded = await self._store.load(misses)
            for customer_id, record in loaded.items():
                for entry_id in self._unclear.get(customer_id, ()):
                    record.outbox.pop(entry_id, None)  # delivered; its removal is still queued
            records.update(loaded)
        return records

    def forget_cached(self) -> None:
        """Drop every cached record (call when partitions are revoked)."""
        self._cache.clear()

    def _apply_customer(
        self,
        record: CustomerRecord,
        events: list[PositionedEvent],
        raw_by_position: dict[tuple[int, int], RawRecord],
        befores: dict[tuple[int, int], float | None],
    ) -> Scored:
        # Entries committed earlier but not confirmed sent (a crash in between) go out again.
        outcome = CustomerOutcome(
            deliveries=[parse_outbox_entry(record.customer_id, k, v) for k, v in record.outbox.items()]
        )
        fresh = record.fresh(events)
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
                for change in caught:
                    new_entries.append(PendingChange(record.customer_id, change.change_id, change.encode()))
            state, applied = apply_event(state, positioned.event, self._config.step.features, not_before)
            if not applied:
                outcome.too_late += 1
                late = self._too_late_letter(state, positioned, raw_by_position, not_before)
                new_entries.append(
                    PendingChange(record.customer_id, late_letter_id(positioned), late.encode(), DEAD_LETTER)
                )
                continue
            outcome.applied += 1
            changes = yield from self._step.apply_event(record, state, work, positioned)
            for change in changes:
                new_entries.append(PendingChange(record.customer_id, change.change_id, change.encode()))
        assert state is not None
        self._finish(outcome, record, state, work, partition, new_entries, offsets)
        return outcome

    def _tick_customer(self, record: CustomerRecord, partition: int, watermark: float) -> Scored:
        outcome = CustomerOutcome(partition=partition)
        if record.state is None:  # expired or removed: nothing to move on
            outcome.write = None
            return outcome
            yield  # a generator like every step, even when it needs no score
        work = self._step.working(record)
        changes = yield from self._step.tick(record.customer_id, record.state, work, partition, watermark)
        entries = [PendingChange(record.customer_id, c.change_id, c.encode()) for c in changes]
        self._finish(outcome, record, record.state, work, partition, entries, {})
        return outcome

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
        allowed = self._config.step.features.allowed_lateness_seconds / SECONDS_PER_DAY
        reason = f"too late: {behind:.3f} days behind the customer's newest event (allowed {allowed:g})"
        if behind <= allowed and ticked_to is not None:
            judged = (ticked_to - positioned.event.ts) / SECONDS_PER_DAY
            reason = f"too late: {judged:.3f} days before the moment event time already moved the customer to"
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

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Partitions were revoked: their next owner reloads their positions."""
        self.clock.forget(partitions)
        for partition in partitions:
            self._pending.pop(partition, None)
        self.forget_cached()

    async def confirm_sent(self, changes: Sequence[PendingChange]) -> None:
        """Forget delivered change events from the outbox now (call after the broker acked them)."""
        self.defer_clear(changes)
        await self.flush_cleared()


def _later(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _label_entry(customer_id: str, label: LabelMessage) -> PendingChange:
    """A resolved label's outbox entry (for the labels topic), under its stable label id."""
    return PendingChange(customer_id, f"l:{label.label_id}", encode_label(label), LABEL)
