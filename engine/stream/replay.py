"""Replay a recorded log through ``SegmentPipeline`` without Kafka, as the worker would run it.

Records keep the partition and offset they had (or would have) in the events topic. They are fed
in batches that interleave partitions like a fetch, each batch followed by a tick as the
worker's timer would; what a batch holds back (its partition waits for the others in event time)
is offered again in a later batch, and once a partition's records are all in, it counts as idle
(its population is final and it has no more labels: it holds no snapshot back). The labels go to
an in-process learner (``engine.learner.local``) that seals model snapshots as the ticks'
frontiers allow. The outbox is cleared as if every entry had been delivered. Decisions equal the
worker's on the same log (``README``: what replays).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.learner.local import LocalLearner
from engine.stream.batch_records import PendingChange, RawRecord
from engine.stream.pipeline import SegmentPipeline


@dataclass(slots=True)
class ReplayResult:
    """What a replay produced."""

    delivered: list[PendingChange] = field(default_factory=list)
    applied: int = 0
    dead_lettered: int = 0
    batches: int = 0
    held: int = 0


class ReplayStuck(RuntimeError):
    """No partition could go on (a snapshot needs a partition that is not in the log)."""


async def replay(
    pipeline: SegmentPipeline, records: Iterable[RawRecord], learner: LocalLearner, per_partition: int = 100
) -> ReplayResult:
    """Feed ``records`` (in offset order per partition) through ``pipeline``; see the module doc."""
    queues: dict[int, deque[RawRecord]] = {}
    for record in records:
        queues.setdefault(record.partition, deque()).append(record)
    empty = set(range(learner.settings.events_partitions)) - set(queues)
    result = ReplayResult()
    idle: set[int] = set(empty)
    pipeline.owned.update(empty)
    await pipeline.release_idle(sorted(empty))
    stalled = 0
    while any(queues.values()):
        batch = [q.popleft() for q in queues.values() for _ in range(min(per_partition, len(q)))]
        outcome = await pipeline.process(batch)
        result.batches += 1
        result.applied += outcome.applied
        result.dead_lettered += len(outcome.dead_letters)
        await _deliver(pipeline, learner, outcome.changes, result)
        progressed = outcome.applied + outcome.duplicates + outcome.too_late + len(outcome.dead_letters) > 0
        for partition, offset in outcome.held.items():
            result.held += 1
            back = [r for r in batch if r.partition == partition and r.offset >= offset]
            queues[partition].extendleft(reversed(back))
        finished = {p for p, q in queues.items() if not q} - idle
        if finished:
            await pipeline.release_idle(sorted(finished))
            idle |= finished
        ticked = await pipeline.tick(sorted(set(queues) | empty))
        await _deliver(pipeline, learner, ticked.changes, result)
        sealed_before = learner.learner.sealed
        await learner.advance(ticked.frontiers)
        stalled = 0 if progressed or finished or learner.learner.sealed != sealed_before else stalled + 1
        if stalled > 2:
            raise ReplayStuck(
                f"partitions {sorted(outcome.held)} wait for a partition that is not in the log"
            )
    return result


async def _deliver(
    pipeline: SegmentPipeline, learner: LocalLearner, changes: list[PendingChange], result: ReplayResult
) -> None:
    result.delivered.extend(changes)
    learner.offer(changes)
    pipeline.defer_clear(changes)
    await pipeline.flush_cleared()
