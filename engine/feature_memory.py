"""``segflow features memory``: measured Redis bytes per customer for the standard catalogue.

Simulates a population (``models.simulate``), folds each customer's events into their state
in-process (the same ``apply_event`` the worker uses), writes the records to Redis under a
throw-away key prefix exactly as the worker stores them (state, offset, membership, ranking),
and measures with ``MEMORY USAGE`` (every key, exact: SAMPLES 0) and the change of
``used_memory``. The keys are deleted afterwards unless asked to keep them.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass

from engine.app import feature_config
from engine.codecs import encode_msgpack
from engine.redis_clients import redis_client
from engine.settings import Settings
from features.population import METRICS, SEEN, population_key
from features.redis_store import CustomerWrite, RedisFeatureStore
from features.state import CustomerState, apply_event
from models.population import PopulationConfig
from models.simulate import generate_events, to_event

WRITE_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """Bytes per customer, as measured."""

    customers: int
    events: int
    days: int
    hash_bytes_mean: float
    hash_bytes_p50: float
    hash_bytes_p95: float
    hash_bytes_max: int
    ranking_bytes_per_customer: float
    used_memory_per_customer: float
    seconds: float

    def render(self) -> str:
        """Readable report."""
        return "\n".join(
            [
                f"customers {self.customers}, events {self.events}, {self.days} days simulated "
                f"({self.seconds:.0f}s)",
                f"customer hash (MEMORY USAGE): mean {self.hash_bytes_mean:.0f} B, "
                f"p50 {self.hash_bytes_p50:.0f}, p95 {self.hash_bytes_p95:.0f}, max {self.hash_bytes_max}",
                f"ranking sorted sets: {self.ranking_bytes_per_customer:.0f} B per customer",
                f"used_memory delta: {self.used_memory_per_customer:.0f} B per customer "
                "(hash + ranking + allocator overhead)",
            ]
        )


def simulate_states(
    customers: int, days: int, seed: int, settings: Settings
) -> tuple[dict[str, CustomerState], int]:
    """Every simulated customer's final state, and the number of events folded in."""
    config = feature_config(settings)
    states: dict[str, CustomerState] = {}
    events = 0
    for wire in generate_events(PopulationConfig(customers=customers, days=days, seed=seed)):
        event = to_event(wire)
        state, _ = apply_event(states.get(event.customer_id), event, config)
        states[event.customer_id] = state
        events += 1
    return states, events


async def measure(settings: Settings, customers: int, days: int, seed: int, keep: bool) -> MemoryReport:
    """Simulate, write and measure; see the module docstring."""
    started = time.monotonic()
    states, events = simulate_states(customers, days, seed, settings)
    prefix = f"mem{uuid.uuid4().hex[:8]}"
    client = redis_client(settings)
    store = RedisFeatureStore(client, prefix=prefix)
    try:
        before = int((await client.info("memory"))["used_memory"])
        membership = encode_msgpack({"lifecycle": "active"})
        ids = list(states)
        for start in range(0, len(ids), WRITE_CHUNK):
            writes = [
                CustomerWrite(cid, None, {0: index}, states[cid], extras={"m": membership})
                for index, cid in enumerate(ids[start : start + WRITE_CHUNK], start=start)
            ]
            await store.commit(writes)
        after = int((await client.info("memory"))["used_memory"])
        sizes = []
        for start in range(0, len(ids), WRITE_CHUNK):
            async with client.pipeline(transaction=False) as pipe:
                for cid in ids[start : start + WRITE_CHUNK]:
                    pipe.memory_usage(store.key(cid), samples=0)
                sizes += [int(n) for n in await pipe.execute()]
        ranking = 0
        for metric in (*METRICS, SEEN):
            ranking += int(await client.memory_usage(population_key(prefix, metric), samples=0) or 0)
        report = MemoryReport(
            customers=len(ids),
            events=events,
            days=days,
            hash_bytes_mean=statistics.fmean(sizes),
            hash_bytes_p50=statistics.median(sizes),
            hash_bytes_p95=statistics.quantiles(sizes, n=20)[18] if len(sizes) >= 20 else max(sizes),
            hash_bytes_max=max(sizes),
            ranking_bytes_per_customer=ranking / len(ids),
            used_memory_per_customer=(after - before) / len(ids),
            seconds=time.monotonic() - started,
        )
        if not keep:
            for start in range(0, len(ids), WRITE_CHUNK):
                await client.delete(*(store.key(cid) for cid in ids[start : start + WRITE_CHUNK]))
            await client.delete(*(population_key(prefix, m) for m in (*METRICS, SEEN)))
        return report
    finally:
        await client.aclose()
