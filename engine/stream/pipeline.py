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
from dataclasses import dataclass
from functools import partial

from redis.exceptions import RedisError

from engine.activation.bandit_arms import BanditArms
from engine.activation.planner import ActionPlanner
from engine.output import DeadLetter
from engine.rules.model import RuleSet
from engine.snapshots.population import PopulationSnapshots
from engine.stream.aggregates import SegmentAggregates
from engine.stream.batch_records import (
    DEAD_LETTER,
    LABEL,
    SEGMENT_CHANGE,
    PendingChange,
    RawRecord,
    parse_outbox_entry,
)
from engine.stream.batch_result import BatchResult
from engine.stream.commit_indexes import queue_indexes
from engine.stream.customer_run import CustomerOutcome, CustomerRun
from engine.stream.customer_step import CustomerStep, Scored, StepConfig
from engine.stream.decoding import BatchDecoder
from engine.stream.due_index import DueIndex
from engine.stream.model_gate import ModelGate
from engine.stream.outbox_clearing import OutboxClearing
from engine.stream.population_gate import PopulationGate
from engine.stream.scoring import run_scored
from engine.stream.snapshot_readiness import SnapshotReadiness
from engine.stream.tick_outbox import TickOutboxIndex
from engine.stream.time_driven import TimeDriven
from engine.stream.watermarks import LanePlan, PartitionClock
from features.event import PositionedEvent
from features.record_cache import RecordCache
from features.redis_store import CustomerRecord, CustomerWrite, RedisFeatureStore
from features.state import CustomerState

__all__ = [
    "DEAD_LETTER",
    "LABEL",
    "SEGMENT_CHANGE",
    "BatchResult",
    "PendingChange",
    "RawRecord",
    "SegmentPipeline",
]
log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 5


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


class SegmentPipeline(TimeDriven, OutboxClearing):
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
        self.tick_outbox = TickOutboxIndex(store.client, store.prefix)
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
        self._snapshots = SnapshotReadiness(models, self.population, self._step)
        self._run = CustomerRun(
            self._step,
            config.step.features,
            clock,
            ActionPlanner(lambda: self.rules, clock, BanditArms(models.at)),
        )
        self._seen: set[int] = set()
        self._uncertain: set[str] = set()
        """Customers whose commit failed with an error after it may have been applied."""
        self._released: set[int] = set()
        """Partitions released as idle by ``release_idle`` until their next events."""
        self._pending: dict[int, float] = {}
        """Partition -> the watermark of its first held event (see ``process``)."""
        self._positions: dict[int, tuple[float, int]] = {}
        """Partition -> (newest event time, offset) the commit in flight brings it to."""
        self._decoder = BatchDecoder(config.currency, self._run.dead_letter)
        self._init_clears()
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
        return self._decoder.decode(records)

    @staticmethod
    def _result() -> BatchResult:
        return BatchResult()

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
                    ts = lane.events[j].event.ts
                    if not self._snapshots.loaded_for(ts) and not await self._snapshots.ready(ts):
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
                self._decoder.park(lane.events[cursor[partition] :])
        if result.held:
            await self.clock.hold({p: lanes[p].newest[cursor[p]] for p in result.held})
        if result.held:  # what is fetched again is dead-lettered then
            held = result.held
            result.dead_letters = [
                d for d in result.dead_letters if d.partition not in held or d.offset < held[d.partition]
            ]
        return result

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
        first = min(e.event.ts for e in events)

        def run(record: CustomerRecord) -> Scored:
            return self._run.apply(record, by_customer[record.customer_id], raw_by_position, befores)

        committed = await self._commit_with_retries(list(by_customer), run, latest, first)
        result.add_committed(by_customer, committed)

    async def _commit_with_retries(
        self,
        customer_ids: list[str],
        run: Callable[[CustomerRecord], Scored],
        latest: float,
        first: float | None = None,
        timed: bool = False,
    ) -> dict[str, CustomerOutcome]:
        """Compute and commit every customer (compare-and-set), recomputing those that lost.

        ``latest`` is the latest moment any of them is judged at, ``first`` the earliest event;
        ``timed``: a tick's, whose outbox entries are indexed (``engine.stream.tick_outbox``).
        """
        committed: dict[str, CustomerOutcome] = {}
        pending = customer_ids
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            if not pending:
                break
            records = await self._records(pending)
            await self._snapshots.load(records.values(), latest, first)
            outcomes = run_scored({cid: run(records[cid]) for cid in pending})
            writes = [o.write for o in outcomes.values() if o.write is not None]
            unchanged = {
                cid: state for cid, o in outcomes.items() if o.write is None and (state := records[cid].state)
            }
            added = {
                cid: o.partition
                for cid, o in outcomes.items()
                if timed and o.write is not None and o.deliveries
            }
            await self.tick_outbox.before_commit(added)
            lost = set(await self._commit_and_clear(writes, unchanged, outcomes, added))
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

    async def _commit_and_clear(
        self,
        writes: list[CustomerWrite],
        unchanged: dict[str, CustomerState],
        outcomes: dict[str, CustomerOutcome],
        added: dict[str, int],
    ) -> list[str]:
        """One round trip: forget delivered outbox entries, commit, update indexes and aggregates
        (``added``: customers a tick left outbox entries for -> their partitions)."""
        if not self._scripts_loaded:
            await self._load_scripts()
        clearing, through = self._unclear, self._deferred_seq
        unmark: list[str] = []
        indexes = partial(
            queue_indexes,
            outcomes=outcomes,
            due=self.due,
            population=self.population,
            clock=self.clock,
            positions=self._positions,
            aggregates=self.aggregates,
            rules=self.rules,
        )

        def also(pipe: object) -> None:
            unmark[:] = self.tick_outbox.queue(pipe, clearing, added)
            indexes(pipe)

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
        self.tick_outbox.settled(unmark)
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

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Partitions were revoked: their next owner reloads their positions."""
        partitions = list(partitions)
        self.clock.forget(partitions)
        self._decoder.forget(partitions)
        self.tick_outbox.forget(partitions)
        for partition in partitions:
            self._pending.pop(partition, None)
        self.forget_cached()
