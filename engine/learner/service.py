"""The learner process: labels topic in, sealed model snapshots out, exactly once.

One active learner (``engine.learner.lease``) reads the single partition of
``<app_id>.labels`` with a manually assigned consumer (no consumer group) from the offset its
checkpoint reflects, hands every message to ``models.learner.Learner`` and, whenever the label
frontiers of all ``events_partitions`` source partitions have passed a period's end, reads the
topic's end offset, consumes up to it (labels are acked before frontiers are published, so
nothing of the period is missing then) and seals:

1. learn the complete periods in canonical order (in a thread, so the lease keeps being renewed);
2. ``SET <prefix>:msnap:<k>`` for each version made, then raise ``<prefix>:msnap:sealed``;
3. save the checkpoint (models, evaluations, buffered labels, sealed version and the topic
   offset), fenced by the lease; a refused save means ownership was lost: stand by;
4. update the report hash ``<prefix>:learner:report`` (every field JSON text): labels
   consumed, evaluated, learned, duplicates, late, malformed, decision outcomes tallied, buffered,
   sealed version, offset, end offset and lag, the owner and its generation, and per model its
   evaluation report and its readiness (``readiness``: ready, or warming up and why; that of
   the last sealed version).

Between seals the checkpoint is saved every ``checkpoint_seconds`` while labels were buffered.
A crash anywhere restarts from the last checkpoint and its offset; the snapshots sealed again
are the same bytes (``models.learner``), so republishing them changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import OutOfMemoryError, RedisError

from engine.app import checkpoint_key, model_config
from engine.kafka_clients import kafka_options
from engine.learner.lease import Lease, checkpoint_key_name
from engine.redis_clients import explain, redis_client
from engine.settings import Settings
from engine.stream.backpressure import RedisFull, RedisRefused, full_message, refused
from engine.topics import start_or_close
from models.config import ModelConfig
from models.learner import Learner, encode_snapshot, sealable_version
from models.snapshots import raise_sealed, read_frontier, report_key, snapshot_key

log = logging.getLogger(__name__)

MAX_RECORDS = 5000
PUBLISH_CHUNK = 64
TRANSIENT = (RedisError, KafkaError, OSError, TimeoutError)
LEARNER_KEPT = "a learner starts again from its last checkpoint and the offset it reflects"
# Workers wait for every seal in a replay: a fetch the broker holds for its default 500 ms would
# delay each round trip that much when the last labels arrive just after the fetch was sent.
FETCH_WAIT_MS = 20


class LearnerService:
    """Stands by until it holds the lease, then learns until it stops or loses the lease."""

    def __init__(
        self,
        settings: Settings,
        client: Redis | RedisCluster,  # run() refuses a cluster
        key: bytes,
        config: ModelConfig | None = None,
        checkpoint_seconds: float = 5.0,
        poll_seconds: float = 0.05,
    ) -> None:
        self.settings = settings
        self._client = client
        self._key = key
        self._prefix = settings.key_prefix
        self.config = config or model_config(settings)
        self.checkpoint_seconds = checkpoint_seconds
        self._poll_ms = max(1, round(poll_seconds * 1000))
        self.lease = Lease(client, self._prefix, settings.learner_lease_seconds)
        self._tp = TopicPartition(settings.labels_topic, 0)
        self.learner: Learner | None = None
        self.offset = 0
        """The next labels-topic offset to read: the state reflects every message below it."""
        self.end_offset = 0

    @property
    def active(self) -> bool:
        """Whether this process holds the lease (as far as it knows)."""
        return self.lease.value is not None

    async def run(self, stop: asyncio.Event) -> None:
        """Alternate between standing by and learning until ``stop`` is set.

        Redis or the broker failing makes it stand by and try again; Redis refusing a write as
        out of memory raises ``RedisFull``, refusing its user ``RedisRefused`` (their message is
        the one error line to show).
        """
        if isinstance(self._client, RedisCluster):
            raise ValueError("segflow learner needs a single Redis server (its lease fences its saves)")
        log.info("learner %s: standing by", self.lease.token)
        while not stop.is_set():
            try:
                if not await self.lease.try_acquire():
                    await _sleep(stop, self.settings.learner_lease_seconds / 3)
                    continue
                log.info("learner %s: active (generation %s)", self.lease.token, self.lease.generation)
                await self._own(stop)
            except OutOfMemoryError:  # waiting does not free memory: stop and say what to change
                raise RedisFull(full_message("learner", LEARNER_KEPT, "the learner")) from None
            except TRANSIENT as exc:  # the servers come back: stand by, then try again
                if refused(exc):  # an ACL or a login does not: stop, saying what to fix
                    reason = explain(self.settings, exc)
                    raise RedisRefused(
                        f"{reason}; stopping at the learner. Nothing is lost: {LEARNER_KEPT}"
                    ) from None
                log.warning("learner: %s: %s; standing by", type(exc).__name__, exc)
                with contextlib.suppress(*TRANSIENT):
                    await self.lease.release()
                await _sleep(stop, 1.0)
            if not stop.is_set():
                log.info("learner %s: standing by", self.lease.token)

    async def _own(self, stop: asyncio.Event) -> None:
        # Renewing starts first: restoring a large checkpoint must not let the lease lapse.
        renewing = asyncio.create_task(self._keep_lease())
        consumer: AIOKafkaConsumer | None = None
        try:
            learner, offset = await self._restore()
            self.learner = learner
            consumer = AIOKafkaConsumer(
                **kafka_options(self.settings),
                client_id=f"{self.settings.app_id}-learner",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=self.settings.fetch_partition_bytes,
                fetch_max_wait_ms=FETCH_WAIT_MS,
            )
            await start_or_close(consumer)
            consumer.assign([self._tp])
            if offset is None:
                await consumer.seek_to_beginning(self._tp)
                offset = await consumer.position(self._tp)
            else:
                consumer.seek(self._tp, offset)
            self.offset = offset
            log.info("learner: from offset %d, sealed version %s", offset, learner.sealed)
            await self._learn(consumer, learner, stop)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if consumer is not None:
                await consumer.stop()

    async def _restore(self) -> tuple[Learner, int | None]:
        """The saved learner and the offset it reflects; a fresh one (offset None) without a save."""
        # The client does not decode responses: a stored value is bytes.
        blob = cast("bytes | None", await self._client.get(checkpoint_key_name(self._prefix)))
        period = self.settings.model_period_seconds
        if not blob:
            return Learner(self.config, period, self._key), None
        learner, meta = await asyncio.to_thread(Learner.restore, self.config, period, self._key, bytes(blob))
        return learner, int(meta["offset"])

    async def _learn(self, consumer: AIOKafkaConsumer, learner: Learner, stop: asyncio.Event) -> None:
        last_save, dirty = time.monotonic(), False
        while not stop.is_set() and self.active:
            dirty = await self._consume(consumer, learner) > 0 or dirty
            if await self._maybe_seal(consumer, learner, stop):
                last_save, dirty = time.monotonic(), False
            elif dirty and time.monotonic() - last_save >= self.checkpoint_seconds:
                self.end_offset = (await consumer.end_offsets([self._tp]))[self._tp]
                await self._save(learner)
                await self._report(learner)
                last_save, dirty = time.monotonic(), False
        if self.active:  # stopping: keep what was read, hand over at once
            await self._save(learner)
            await self.lease.release()
        else:
            log.warning("learner %s: lost the lease; another learner is active", self.lease.token)

    async def _consume(self, consumer: AIOKafkaConsumer, learner: Learner) -> int:
        """One fetch, every message handed to the learner; how many there were."""
        fetched = await consumer.getmany(self._tp, timeout_ms=self._poll_ms, max_records=MAX_RECORDS)
        records = fetched.get(self._tp, [])
        for record in records:
            if record.offset > self.offset:
                log.warning("labels offsets %d-%d are gone (retention?)", self.offset, record.offset - 1)
            learner.offer(record.value)
            self.offset = record.offset + 1
        if not records:  # past offsets that hold no message, if any
            self.offset = max(self.offset, await consumer.position(self._tp))
        return len(records)

    async def _maybe_seal(self, consumer: AIOKafkaConsumer, learner: Learner, stop: asyncio.Event) -> bool:
        """Seal what the frontiers allow, once the topic is read to its end; True if sealed."""
        frontiers = await read_frontier(self._client, self._prefix)
        version = sealable_version(frontiers, self.settings.events_partitions, learner.period_seconds)
        if version is None or (learner.sealed is not None and version <= learner.sealed):
            return False
        self.end_offset = (await consumer.end_offsets([self._tp]))[self._tp]
        while self.offset < self.end_offset:
            if stop.is_set() or not self.active:
                return False
            await self._consume(consumer, learner)
        made = await asyncio.to_thread(_seal, learner, version)
        await self._publish(made, version)
        await self._save(learner)
        await self._report(learner)
        first, last = (made[0][0], made[-1][0]) if made else (None, None)
        log.info("learner: sealed through version %d (snapshots %s-%s)", version, first, last)
        return True

    async def _publish(self, made: list[tuple[int, bytes]], version: int) -> None:
        for start in range(0, len(made), PUBLISH_CHUNK):
            async with self._client.pipeline(transaction=False) as pipe:
                for k, blob in made[start : start + PUBLISH_CHUNK]:
                    pipe.set(snapshot_key(self._prefix, k), blob)
                await pipe.execute()
        await raise_sealed(self._client, self._prefix, version)

    async def _save(self, learner: Learner) -> None:
        meta = {"offset": self.offset, "generation": self.lease.generation, "saved_wall_ts": time.time()}
        blob = await asyncio.to_thread(learner.dump, meta)
        if not await self.lease.save(blob):
            log.warning("learner %s: checkpoint refused: the lease is lost", self.lease.token)

    async def _report(self, learner: Learner) -> None:
        if not self.active:
            return
        counts = learner.counts
        reports = learner.reports()
        fields: dict[str, Any] = {
            "labels_consumed": counts.consumed,
            "labels_evaluated": counts.evaluated,
            "labels_learned": counts.learned,
            "duplicates": counts.duplicates,
            "late": counts.late,
            "malformed": counts.malformed,
            "drift_resets": counts.drift_resets,
            "outcomes_tallied": counts.outcomes,
            "buffered": learner.buffered,
            "sealed_version": learner.sealed,
            "first_version": learner.first_version,
            "period_seconds": learner.period_seconds,
            "offset": self.offset,
            "end_offset": max(self.end_offset, self.offset),
            "lag": max(0, self.end_offset - self.offset),
            "owner": self.lease.token,
            "generation": self.lease.generation,
            "updated_wall_ts": time.time(),
            "reports": reports,
            "readiness": {
                name: {"ready": r.ready, "warming_up_reason": r.reason, "text": r.describe()}
                for name, r in learner.readiness(reports).items()
            },
        }
        mapping = {name: json.dumps(value) for name, value in fields.items()}
        await self._client.hset(report_key(self._prefix), mapping=mapping)  # type: ignore[arg-type]

    async def _keep_lease(self) -> None:
        every = self.settings.learner_lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.lease.renew():
                    return
            except (RedisError, OSError) as exc:  # the lease may still hold: try again
                log.warning("learner: lease renewal failed (%s: %s)", type(exc).__name__, exc)


def _seal(learner: Learner, version: int) -> list[tuple[int, bytes]]:
    return [(k, encode_snapshot(snapshot)) for k, snapshot in learner.seal_through(version)]


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_learner(settings: Settings, checkpoint_seconds: float = 5.0) -> None:
    """Run a learner until SIGTERM or SIGINT (``segflow learner``)."""
    client = redis_client(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await client.ping()
        service = LearnerService(
            settings,
            client,
            checkpoint_key(settings),
            checkpoint_seconds=checkpoint_seconds,  # type: ignore[arg-type]
        )
        await service.run(stop)
    finally:
        await client.aclose()
