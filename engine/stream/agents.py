"""Thin glue: a fetched batch goes through the pipeline, its output is delivered, then committed.

Events are committed only after their changes and dead letters are acknowledged by the broker
and the outbox is cleared, so a crash or a forced exit at any point leads to redelivery,
which the store's offset fencing makes harmless. Batches come from ``engine.stream.ingest``
(whole fetches, no per-message Faust path); Faust runs the timers and the web pages. A server that
is slow, down or full is handled by ``engine.stream.backpressure`` (retry, or stop when Redis is full).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from functools import partial

from engine.app import Runtime
from engine.ops.metrics import count_delivered
from engine.ops.worker_status import WorkerStatus
from engine.pages import attach_pages
from engine.redis_clients import redis_client
from engine.stream.backpressure import RedisStop, stop_worker, with_retry
from engine.stream.batch_records import ACTION, DEAD_LETTER, LABEL, LEARNER_KINDS, OUTCOME, TALLY
from engine.stream.ingest import BatchIngest, Handled
from engine.stream.pipeline import BatchResult, OwnershipLost, RawRecord
from models.snapshots import write_frontier

log = logging.getLogger(__name__)

HELD_TICK_SECONDS = 0.05
"""At most this often, a batch that left partitions held is followed by a tick at once."""


async def deliver(runtime: Runtime, result: BatchResult) -> None:
    """Send dead letters and change events; return when the broker acked all of them."""
    settings, send = runtime.settings, runtime.ingest.send
    futures = []
    for dead in result.dead_letters:
        futures.append(await send(settings.dlq_topic, dead.wire_key, dead.encode()))
    topics = {
        DEAD_LETTER: settings.dlq_topic,
        LABEL: settings.labels_topic,
        TALLY: settings.labels_topic,
        ACTION: settings.actions_topic,
        OUTCOME: settings.outcomes_topic,
    }
    for entry in result.changes:
        # The outbox holds dead letters of too-late events, resolved labels, action decisions and
        # outcomes besides changes.
        topic = topics.get(entry.kind, settings.changes_topic)
        key = entry.change_id[2:] if entry.kind in LEARNER_KINDS else entry.customer_id  # its own id
        futures.append(await send(topic, key.encode(), entry.payload))
    if futures:
        await asyncio.gather(*futures)


async def _finish(
    runtime: Runtime, result: BatchResult, started: float, records: Sequence[RawRecord] = ()
) -> int:
    """Deliver a batch's (or tick's) output, count what happened; return its outbox-clear ticket.

    The delivered entries leave the outbox with the next commit's round trip (or a flush when
    the stream goes quiet); the batch's offsets are committed only once that happened.
    """
    await with_retry(runtime, "deliver", partial(deliver, runtime, result))
    ticket = runtime.pipeline.defer_clear(result.changes)
    metrics = runtime.metrics
    count_delivered(metrics, result, records)
    metrics.last_batch_seconds = time.perf_counter() - started
    metrics.last_batch_wall_ts = time.time()
    return ticket


async def handle_batch(runtime: Runtime, records: list[RawRecord]) -> Handled:
    """Process and deliver one batch: its outbox-clear ticket (None: it must stay uncommitted)
    and the partitions whose rest waits for a population snapshot (fetched again later)."""
    started = time.perf_counter()
    async with runtime.lock:
        try:
            result = await with_retry(runtime, "pipeline", partial(runtime.pipeline.process, records))
        except OwnershipLost as exc:
            # Not committed: whoever owns these customers now will (re)process them.
            log.error("%s; leaving the batch uncommitted for the new owner", exc)
            return Handled(None, {})
        ticket = await _finish(runtime, result, started, records)
        runtime.metrics.add("segflow_batches_total")
        if result.held:
            runtime.metrics.add("segflow_batches_held_total")
        runtime.metrics.batch_seconds.observe(time.perf_counter() - started)
    return Handled(ticket, result.held)


async def flush_cleared(runtime: Runtime) -> int:
    """Remove delivered entries from the outbox now (quiet stream, revoke, stop); the ticket reached."""
    await with_retry(runtime, "outbox clear", runtime.pipeline.flush_cleared)
    return runtime.pipeline.cleared_through


async def handle_tick(runtime: Runtime) -> None:
    """Move on customers due by their partition's watermark; claim newly assigned partitions."""
    started = time.perf_counter()
    async with runtime.lock:
        pipeline = runtime.pipeline
        assigned = runtime.ingest.assignment()
        pipeline.owned.update(assigned)
        await runtime.ingest.refresh_empty_partitions()
        try:
            result = await with_retry(runtime, "tick", pipeline.tick)
        except OwnershipLost as exc:
            log.error("%s; skipping this tick", exc)
            return
        if result.ticked or result.changes:  # changes without a tick: offered again
            await _finish(runtime, result, started)
        await with_retry(runtime, "frontier", partial(publish_frontiers, runtime, result))
        runtime.reload_rules()


async def publish_frontiers(runtime: Runtime, result: BatchResult) -> None:
    """Tell the learner how far each owned partition's labels are delivered (after they were)."""
    if result.frontiers:
        await write_frontier(runtime.pipeline.store.client, runtime.settings.key_prefix, result.frontiers)


async def release_revoked(runtime: Runtime, partitions: list[int]) -> None:
    """Another worker may write these customers now: forget what was known of them.

    Called by the ingest service with the runtime's lock held.
    """
    runtime.pipeline.forget_partitions(partitions)


def attach_agent(runtime: Runtime) -> None:
    """Start batch ingestion with the app; register the timer and the monitoring pages."""
    settings = runtime.settings

    async def handle(records: list[RawRecord]) -> Handled:
        return await handle_batch(runtime, records)

    last_tick = float("-inf")

    async def held() -> None:
        # Held partitions wait for a snapshot that the tick's labels and frontiers lead to (the
        # learner seals a model version once every frontier passed it): tick now rather than at
        # the timer's next second, or a replay stalls at every period end.
        nonlocal last_tick
        if time.monotonic() - last_tick >= HELD_TICK_SECONDS:
            last_tick = time.monotonic()
            with contextlib.suppress(RedisStop):  # logged, and the worker is stopping
                await handle_tick(runtime)

    async def flush() -> int:
        return await flush_cleared(runtime)

    async def revoked(partitions: list[int]) -> None:
        await release_revoked(runtime, partitions)

    runtime.ingest = BatchIngest(
        settings, handle, flush, lambda: runtime.pipeline.cleared_through, revoked, runtime.lock, held
    )
    runtime.app.service(runtime.ingest)  # type: ignore[arg-type]
    runtime.pipeline.store.on_round_trip = runtime.metrics.redis_call_seconds.observe
    runtime.status = WorkerStatus(runtime)
    runtime.app.service(runtime.status)  # type: ignore[arg-type]
    if settings.learner_embedded:
        _attach_learner(runtime)
    ingest = runtime.ingest
    # Only the broker knows which partitions are empty: they must not hold snapshots back.
    runtime.pipeline.population.empty_partitions = lambda: ingest.empty_partitions

    @runtime.app.timer(interval=1.0)
    async def tick() -> None:
        with contextlib.suppress(RedisStop):  # logged, and the worker is stopping
            await handle_tick(runtime)

    if settings.customer_ttl_days > 0:
        ttl_seconds = settings.customer_ttl_days * 86_400

        @runtime.app.timer(interval=60.0)
        async def sweep_expired_customers() -> None:
            # Customers whose hash expired by TTL leave the ranking sets here, in batches,
            # found by their last write time: the cost is the number expired, not the population.
            population = runtime.pipeline.store.population
            with contextlib.suppress(RedisStop):  # logged, and the worker is stopping
                removed = await with_retry(
                    runtime, "expiry sweep", partial(population.sweep_expired, time.time(), ttl_seconds)
                )
                runtime.metrics.add("segflow_customers_expired_total", removed)

    attach_pages(runtime)


def _attach_learner(runtime: Runtime) -> None:
    """Every worker stands by as the learner; the one holding the lease learns (engine.learner)."""
    from engine.app import checkpoint_key
    from engine.learner.service import LearnerService

    settings = runtime.settings

    @runtime.app.task  # type: ignore[misc]
    async def learner() -> None:
        client = redis_client(settings)
        if type(client).__name__ == "RedisCluster":
            log.warning("the embedded learner needs a single Redis server; run `segflow learner` against one")
            return
        service = LearnerService(settings, client, checkpoint_key(settings))
        try:
            await service.run(asyncio.Event())
        except RedisStop as exc:
            stop_worker(runtime, exc)
        finally:
            with contextlib.suppress(Exception):
                await service.lease.release()
            await client.aclose()
