"""A worker's view of its servers: readiness, and the broker- and Redis-read gauges.

``WorkerStatus`` runs beside the batch ingest as a Faust (mode) service. Every
``REFRESH_SECONDS`` it reads, off the batch path and without the runtime's lock:

* ``segflow_consumer_lag{topic,partition}``: for the partitions assigned to this worker, the log
  end offset minus the group's committed offset, from the broker (``engine.ops.lag``); no series
  while nothing is assigned or the broker does not answer (absent means unknown);
* ``segflow_segment_size{family,segment}``: customers per segment from the aggregates in Redis
  (the figures of ``segflow segments``); no series while Redis does not answer.

``readiness()`` answers ``/segflow/ready``: ready when Redis answers PING, the broker answers a
metadata request for the events topic (each within ``CHECK_TIMEOUT_SECONDS``) and the consumer
has partitions assigned, and the worker is not stopping for a reason of its own (Redis full:
``engine.stream.backpressure``); otherwise not ready, with one reason per failed check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from mode import Service
from redis.exceptions import RedisError

from engine.kafka_clients import kafka_options
from engine.ops.lag import committed_offsets, offsets_sample
from engine.redis_clients import redis_client
from engine.topics import start_or_close

if TYPE_CHECKING:
    from engine.app import Runtime

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
"""How often the lag and segment-size gauges are read again."""
CHECK_TIMEOUT_SECONDS = 2.0
"""The longest a readiness check (or a gauge read) waits for Redis or the broker."""
FAILURES = (KafkaError, RedisError, OSError, TimeoutError)


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else f"{name} (no answer within {CHECK_TIMEOUT_SECONDS:g} s)"


class WorkerStatus(Service):
    """Readiness checks and the gauges read from the broker and Redis, for one worker."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._runtime = runtime
        self._admin: AIOKafkaAdminClient | None = None
        self._redis: Any = None

    async def on_stop(self) -> None:
        """Close the admin client and the PING connection."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    async def admin(self) -> AIOKafkaAdminClient:
        """This worker's admin client (started on first use; again after a failed start)."""
        if self._admin is None:
            settings = self._runtime.settings
            admin = AIOKafkaAdminClient(
                **kafka_options(settings),
                client_id=f"{settings.app_id}-status",
                request_timeout_ms=round(CHECK_TIMEOUT_SECONDS * 1000),
            )
            await asyncio.wait_for(start_or_close(admin), CHECK_TIMEOUT_SECONDS)
            self._admin = admin
        return self._admin

    @Service.task
    async def _refresh(self) -> None:
        while not self.should_stop:
            await self.refresh_lag()
            await self.refresh_sizes()
            await self.sleep(REFRESH_SECONDS)

    async def refresh_lag(self) -> None:
        """Read the assigned partitions' lag from the broker into ``segflow_consumer_lag``."""
        runtime = self._runtime
        gauge = runtime.metrics.consumer_lag
        ingest = runtime.ingest
        if ingest is None or ingest.consumer is None or not ingest.assignment():
            gauge.replace({})
            return
        topic = runtime.settings.events_topic
        tps = [TopicPartition(topic, p) for p in ingest.assignment()]
        try:
            admin = await self.admin()
            committed = await asyncio.wait_for(
                committed_offsets(admin, runtime.settings.app_id, tps), CHECK_TIMEOUT_SECONDS
            )
            sample = await asyncio.wait_for(offsets_sample(ingest.consumer, committed), CHECK_TIMEOUT_SECONDS)
        except FAILURES as exc:
            log.warning("consumer lag not read (%s)", _why(exc))
            gauge.replace({})
            return
        gauge.replace({(p.topic, str(p.partition)): float(p.lag) for p in sample.partitions})

    async def refresh_sizes(self) -> None:
        """Read the segment sizes from Redis into ``segflow_segment_size``."""
        pipeline = self._runtime.pipeline
        gauge = self._runtime.metrics.segment_size
        try:
            sizes = await asyncio.wait_for(pipeline.aggregates.sizes(pipeline.rules), CHECK_TIMEOUT_SECONDS)
        except FAILURES as exc:
            log.warning("segment sizes not read (%s)", _why(exc))
            gauge.replace({})
            return
        gauge.replace(
            {
                (family, segment): float(row["customers"])
                for family, segments in sizes.items()
                for segment, row in segments.items()
            }
        )

    async def readiness(self) -> dict[str, Any]:
        """``{"ready", "reasons", "assigned_partitions", ...}``: what ``/segflow/ready`` answers."""
        settings = self._runtime.settings
        reasons = [] if self._runtime.fatal is None else [f"worker: stopping: {self._runtime.fatal}"]
        if self._redis is None:
            self._redis = redis_client(settings)
        try:
            await asyncio.wait_for(self._redis.ping(), CHECK_TIMEOUT_SECONDS)
        except FAILURES as exc:
            reasons.append(f"redis: {_why(exc)}")
        try:
            admin = await self.admin()
            await asyncio.wait_for(admin.describe_topics([settings.events_topic]), CHECK_TIMEOUT_SECONDS)
        except FAILURES as exc:
            reasons.append(f"kafka: {_why(exc)}")
        ingest = self._runtime.ingest
        assigned = ingest.assignment() if ingest is not None else []
        if not assigned:
            reasons.append(
                f"consumer: no partition of {settings.events_topic} assigned (joining the group, "
                "a rebalance, or more workers than partitions)"
            )
        return {
            "ready": not reasons,
            "reasons": reasons,
            "assigned_partitions": assigned,
            "events_topic": settings.events_topic,
            "group": settings.app_id,
        }
