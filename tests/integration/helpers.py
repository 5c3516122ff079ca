"""Helpers shared by the integration tests: polling, a Redis client whose keys are cleaned up,
a consumer group's progress on the events topic, a worker's readiness."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.asyncio import Redis

from engine.settings import Settings, load_settings
from engine.topics import start_or_close

T = TypeVar("T")


def page_token() -> str:
    """The pages' token every test's settings carry (SEGFLOW_WEB_TOKEN of the run; "" for none),
    for helpers that know only a port."""
    return load_settings().web_secret


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def with_redis(settings: Settings, body: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``body`` with a client; delete every key under the settings' prefix afterwards."""

    async def main() -> T:
        client = Redis.from_url(settings.redis_url)
        try:
            return await body(client)
        finally:
            # A large COUNT: the shared Redis holds other tests' keys, scanned 10 per round trip by default.
            keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    return asyncio.run(main())


async def seal_untrained_models(client: Redis, prefix: str) -> None:
    """For pipeline tests about state, not models: every model version reads as sealed, and as
    sealed before any label was learned (fresh models; their scores do not reach the rules)."""
    from models.snapshots import raise_sealed

    await raise_sealed(client, prefix, 10**7)


async def group_progress(settings: Settings) -> dict[int, tuple[int, int]]:
    """Per partition of the events topic: (the group's committed offset, -1 if none; end offset)."""
    tps = [TopicPartition(settings.events_topic, p) for p in range(settings.events_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await start_or_close(consumer)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await start_or_close(admin)
        ends = await consumer.end_offsets(tps)
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
        except KafkaError:  # no coordinator yet: nothing committed
            committed = {}
    finally:
        await admin.close()
        await consumer.stop()
    return {tp.partition: (committed[tp].offset if tp in committed else -1, end) for tp, end in ends.items()}


def all_committed(progress: dict[int, tuple[int, int]]) -> bool:
    """Whether every partition's committed offset reached its end."""
    return all(committed >= end for committed, end in progress.values())


def ready(settings: Settings) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /segflow/ready; (0, {}) when the worker does not answer."""
    url = f"http://127.0.0.1:{settings.web_port}/segflow/ready"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}
