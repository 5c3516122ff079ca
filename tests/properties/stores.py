"""Helpers of the Redis property tests: a store and pipeline per example, key clean-up, dumps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from strategies import Plan

from engine.app import build_pipeline
from engine.settings import Settings
from engine.stream.pipeline import BatchResult, RawRecord, SegmentPipeline
from features.client import connect
from features.config import FeatureConfig
from features.population import METRICS, SEEN, population_key
from features.redis_store import RedisFeatureStore
from models.snapshots import raise_sealed

T = TypeVar("T")
PIPELINE_CLOCK = 1.8e9
MINIMAL_RULES = Path(__file__).with_name(
    "minimal_rules.yaml"
)  # wall clock of emitted records: fixed, so outbox bytes are deterministic


def example_settings(stack_settings: Settings, redis_url: str) -> Settings:
    """Stack settings pointed at ``redis_url`` with a key prefix of their own."""
    return stack_settings.model_copy(
        update={
            "redis_url": redis_url,
            "key_prefix": f"pt{uuid.uuid4().hex[:12]}",
            "rules_file": MINIMAL_RULES,
        }
    )


def make_pipeline(
    settings: Settings, store: RedisFeatureStore, features: FeatureConfig, cache_capacity: int = 0
) -> SegmentPipeline:
    return build_pipeline(
        settings, clock=lambda: PIPELINE_CLOCK, cache_capacity=cache_capacity, features=features, store=store
    )


def with_store(
    settings: Settings,
    customers: Iterable[str],
    body: Callable[[RedisFeatureStore], Awaitable[T]],
    **store_args: Any,
) -> T:
    """Run ``body`` with a fresh client and store under the settings' prefix; delete its keys after."""

    async def main() -> T:
        client = connect(settings.redis_url)
        store = RedisFeatureStore(client, prefix=settings.key_prefix, **store_args)
        # These properties are about state, not models: every model version reads as sealed
        # before any label was learned, so no event waits for a learner.
        await raise_sealed(client, settings.key_prefix, 10**7)
        try:
            return await body(store)
        finally:
            keys = [store.key(c) for c in customers]
            keys += [population_key(settings.key_prefix, m) for m in (*METRICS, SEEN)]
            keys += [f"{settings.key_prefix}:msnap:sealed", f"{settings.key_prefix}:wm"]
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:  # one key per DEL: keys of different slots in a cluster
                    pipe.delete(key)
                await pipe.execute()
            await client.aclose()

    return asyncio.run(main())


async def dump(store: RedisFeatureStore, customers: Iterable[str]) -> dict[str, dict[bytes, bytes]]:
    """Every customer's hash, as stored (HGETALL)."""
    customers = list(customers)
    async with store.client.pipeline(transaction=False) as pipe:
        for customer in customers:
            pipe.hgetall(store.key(customer))
        replies = await pipe.execute()
    return dict(zip(customers, replies, strict=True))


async def dump_population(store: RedisFeatureStore, prefix: str) -> dict[str, list[tuple[bytes, float]]]:
    """The R/F/M sorted sets, with scores."""
    return {m: await store.client.zrange(population_key(prefix, m), 0, -1, withscores=True) for m in METRICS}


async def deliver(
    pipeline: SegmentPipeline,
    logs: dict[int, list[RawRecord]],
    plan: Plan,
    before_batch: Callable[[int], None] | None = None,
) -> list[BatchResult]:
    """Process the batches of ``plan``, each a tuple of (partition, first offset, end offset)."""
    results = []
    for index, batch in enumerate(plan):
        if before_batch is not None:
            before_batch(index)
        records = [record for partition, start, end in batch for record in logs[partition][start:end]]
        results.append(await pipeline.process(records))
    return results
