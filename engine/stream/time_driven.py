"""What time alone does: ticks move customers on by their partitions' watermarks.

``TimeDriven`` is part of ``SegmentPipeline`` (a mixin, for the module's size): a tick finds the
customers due by each owned partition's watermark (as far as sealed snapshots reach), moves them
on, and reports each partition's label frontier; idle partitions stop holding snapshots back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine.stream.batch_records import LABEL, parse_outbox_entry
from engine.stream.customer_step import Scored
from engine.stream.model_gate import ModelGate
from engine.stream.population_gate import PopulationGate
from engine.stream.tick_outbox import TickOutboxIndex
from engine.stream.watermarks import crossed_days
from features.redis_store import CustomerRecord

if TYPE_CHECKING:
    from engine.stream.pipeline import BatchResult

TICK_BATCH = 500


class TimeDriven:
    """Ticks, idleness and how far sealed snapshots let time move (see the module doc)."""

    # Provided by SegmentPipeline.
    owned: set[int]
    clock: Any
    models: ModelGate
    population: PopulationGate
    due: Any
    _step: Any
    _run: Any
    _pending: dict[int, float]
    _released: set[int]
    _resend_uncertain: Callable[..., Any]
    _records: Callable[..., Any]
    tick_outbox: TickOutboxIndex
    _commit_with_retries: Callable[..., Any]
    _result: Callable[[], BatchResult]

    async def tick(self, partitions: Sequence[int] | None = None) -> BatchResult:
        """Move on every customer due by their partition's watermark (labels, timed segments).

        One round trip finds the due customers of every partition, one commits them all. Time
        moves on only as far as sealed population snapshots reach.
        """
        result = self._result()
        await self._resend_uncertain(result)
        owned = sorted(self.owned if partitions is None else set(partitions) & self.owned)
        await self._offer_tick_outbox(owned, result)
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
                assert cap is not None  # only customers due by cap are moved
                watermarks[partition] = min(watermark, cap)
                due[partition] = moved
            else:
                due.pop(partition, None)
        moments = {cid: (p, watermarks[p]) for p, customers in due.items() for cid, _ in customers}
        if not moments:
            return result

        def run(record: CustomerRecord) -> Scored:
            partition, watermark = moments[record.customer_id]
            return self._run.tick(record, partition, watermark)

        committed = await self._commit_with_retries(list(moments), run, max(watermarks.values()), timed=True)
        for outcome in committed.values():
            result.changes.extend(outcome.deliveries)
        result.ticked += len(committed)
        result.labels = sum(1 for c in result.changes if c.kind == LABEL)
        return result

    async def _offer_tick_outbox(self, partitions: Sequence[int], result: BatchResult) -> None:
        """Offer again what earlier ticks left in the outboxes of partitions new to this owner
        (their worker may have died before delivering it: ``engine.stream.tick_outbox``)."""
        found = await self.tick_outbox.recover(partitions)
        if not found:
            return
        records = await self._records([c for customers in found.values() for c in customers])
        offered = {c.change_id for c in result.changes}
        for partition, customers in found.items():
            for customer_id in customers:
                record = records.get(customer_id)
                entries = record.outbox if record is not None else {}
                self.tick_outbox.found(partition, customer_id, bool(entries))
                result.changes += [
                    parse_outbox_entry(customer_id, entry_id, value)
                    for entry_id, value in entries.items()
                    if entry_id not in offered
                ]

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
        if self._step.reads_population():
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
