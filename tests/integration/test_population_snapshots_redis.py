"""Population snapshots against a real Redis (and the local Redis Cluster).

Histograms are checked against a recount, in the test, of the placements the test last gave
each customer; cuts against indexing the sorted list of the population's values.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Mapping

import pytest
from helpers import with_redis
from redis.asyncio import Redis

from engine.settings import Settings
from engine.snapshots import Histogram, Placement, PopulationSnapshots, SealedCuts, placement_of
from features.client import connect
from features.population import PopulationStats
from features.state import CustomerState

pytestmark = pytest.mark.integration


def recount(placed: dict[str, Placement]) -> Histogram:
    rows = list(placed.values())
    return Histogram(
        dict(Counter(r[0] for r in rows)),
        dict(Counter(r[1] for r in rows)),
        dict(Counter(r[2] for r in rows)),
        len(rows),
    )


def sorted_cuts(values: list[int]) -> tuple[int, ...]:
    ordered = sorted(values)
    return tuple(ordered[-(-k * len(ordered) // 5) - 1] for k in range(1, 5))


async def run_pipeline(
    client: Redis, snapshots: PopulationSnapshots, batches: Mapping[int, Mapping[str, Placement | None]]
) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for partition, placements in batches.items():
            snapshots.queue_placements(pipe, partition, placements)
        await pipe.execute()


def test_placements_absolute_and_idempotent(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=2)
        await snapshots.ensure_script()
        first = {"a": (100, 1, 10), "b": (100, 2, 10), "c": (101, 1, 0), "d": None}
        for _ in range(3):  # the same pipeline again and again: nothing changes after the first
            await run_pipeline(client, snapshots, {0: first, 1: {"z": (90, 4, 7)}})
            assert await snapshots.histogram(0) == Histogram({100: 2, 101: 1}, {1: 2, 2: 1}, {10: 2, 0: 1}, 3)
            assert await snapshots.histogram(1) == Histogram({90: 1}, {4: 1}, {7: 1}, 1)
        # Moves (a: all three fields, b: one), a removal (c), an unranked customer staying so (d).
        await snapshots.place(0, {"a": (102, 2, 11), "b": (100, 3, 10), "c": None, "d": None})
        assert await snapshots.histogram(0) == Histogram({100: 1, 102: 1}, {2: 1, 3: 1}, {10: 1, 11: 1}, 2)
        # Emptied fields are deleted, and so is a removed customer's placement.
        raw = await client.hgetall(snapshots.hist_key(0))
        assert set(raw) == {b"r100", b"r102", b"f2", b"f3", b"m10", b"m11", b"n"}
        assert set(await client.hkeys(snapshots.place_key(0))) == {b"a", b"b"}
        await snapshots.place(0, {"a": None, "b": None})
        assert await snapshots.histogram(0) == Histogram()
        assert await client.exists(snapshots.hist_key(0), snapshots.place_key(0)) == 0

    with_redis(isolated_settings, body)


def test_empty_placements_queue_nothing(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=1)
        async with client.pipeline(transaction=False) as pipe:
            snapshots.queue_placements(pipe, 0, {})
            assert len(pipe) == 0

    with_redis(isolated_settings, body)


def test_random_batches_match_a_recount(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        rng = random.Random(20260101)
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=3)
        await snapshots.ensure_script()
        placed: dict[int, dict[str, Placement]] = {p: {} for p in range(3)}
        for _ in range(40):
            batches: dict[int, dict[str, Placement | None]] = {}
            for partition in rng.sample(range(3), rng.randint(1, 3)):
                batch: dict[str, Placement | None] = {}
                for _ in range(rng.randint(1, 30)):
                    customer = f"c{partition}-{rng.randrange(60)}"
                    batch[customer] = (
                        None
                        if rng.random() < 0.15
                        else (rng.randint(20_000, 20_010), rng.randint(1, 4), rng.randint(0, 5))
                    )
                batches[partition] = batch
            repeats = 2 if rng.random() < 0.3 else 1  # a redelivered commit
            for _ in range(repeats):
                await run_pipeline(client, snapshots, batches)
            for partition, batch in batches.items():
                for customer, placement in batch.items():
                    if placement is None:
                        placed[partition].pop(customer, None)
                    else:
                        placed[partition][customer] = placement
        for partition in range(3):
            assert await snapshots.histogram(partition) == recount(placed[partition])

    with_redis(isolated_settings, body)


def test_large_batch_in_one_call(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=1)
        await snapshots.ensure_script()
        batch: dict[str, Placement] = {f"c{i}": (i % 13, 1 + i % 3, i % 1_001) for i in range(5_000)}
        await snapshots.place(0, batch)
        await snapshots.place(0, batch)
        assert await snapshots.histogram(0) == recount(batch)

    with_redis(isolated_settings, body)


def test_lost_script_is_reloaded(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=1)
        # As after a Redis restart (without flushing the shared server's script cache):
        snapshots._sha = "0" * 40
        await snapshots.place(0, {"a": (1, 1, 1)})
        assert await snapshots.histogram(0) == Histogram({1: 1}, {1: 1}, {1: 1}, 1)

    with_redis(isolated_settings, body)


def test_contributions_first_write_wins_and_sealing(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=3)
        await snapshots.ensure_script()
        population = {
            p: {f"c{p}-{i}": (20_000 + i % 4, 1 + (i * p) % 5, i * 7 % 50) for i in range(25)}
            for p in range(3)
        }
        for partition, placements in population.items():
            await snapshots.place(partition, placements)
        assert await snapshots.contribute(0, [20_004, 20_005]) == recount(population[0])
        await snapshots.contribute(1, [20_004])
        assert await snapshots.contributors(20_004) == {0, 1}
        assert await snapshots.contributors(20_005) == {0}
        assert await snapshots.sealed(20_004) is None
        assert await snapshots.latest_sealed() is None
        # Partition 0 moves on; its contribution to day 20_004 stays the first one.
        await snapshots.place(0, {"c0-0": None, "c0-1": (20_009, 9, 99)})
        await snapshots.contribute(0, [20_004, 20_005, 20_006])
        stored = await client.hget(snapshots.contributions_key(20_004), "0")
        assert Histogram.decode(stored) == recount(population[0])
        await snapshots.contribute(2, [20_004])
        sealed = await snapshots.sealed(20_004)
        everyone = [row for part in population.values() for row in part.values()]
        assert sealed == SealedCuts(
            20_004,
            75,
            sorted_cuts([r[0] for r in everyone]),
            sorted_cuts([r[1] for r in everyone]),
            sorted_cuts([r[2] for r in everyone]),
        )
        assert await snapshots.latest_sealed() == 20_004
        # Sealing deleted the day's contributions; a contribution to a sealed day (a redelivery
        # after a crash) writes nothing, while the open day 20_005 keeps its own.
        assert not await client.exists(snapshots.contributions_key(20_004))
        await snapshots.contribute(1, [20_004, 20_005])
        assert not await client.exists(snapshots.contributions_key(20_004))
        assert await snapshots.contributors(20_005) == {0, 1}
        # Sealed forever: later contributions (even from unknown partitions) change nothing.
        await client.hset(snapshots.contributions_key(20_004), "7", Histogram().encode())
        assert await PopulationSnapshots(client, isolated_settings.key_prefix, 3).sealed(20_004) == sealed
        assert await snapshots.sealed(20_005) is None

    with_redis(isolated_settings, body)


def test_stored_cuts_win_over_recomputation(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=1)
        await snapshots.place(0, {"a": (5, 1, 1)})
        await snapshots.contribute(0, [5])
        earlier = SealedCuts(5, 9, (1, 2, 3, 4), (1, 1, 1, 1), (0, 0, 0, 0))
        await client.hset(snapshots.sealed_key, "5", earlier.encode())  # another writer was first
        assert await snapshots.sealed(5) == earlier
        await client.hdel(snapshots.sealed_key, "5")
        assert await snapshots.sealed(5) == earlier  # known: cached in memory

    with_redis(isolated_settings, body)


def test_concurrent_sealing_agrees(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        prefix = isolated_settings.key_prefix
        writer = PopulationSnapshots(client, prefix, partitions=4)
        for partition in range(4):
            await writer.place(
                partition, {f"p{partition}c{i}": (i, 1 + i % 3, i) for i in range(partition * 5)}
            )
            await writer.contribute(partition, range(10, 20))
        clients = [Redis.from_url(isolated_settings.redis_url) for _ in range(6)]
        try:
            sealers = [PopulationSnapshots(c, prefix, partitions=4) for c in clients]
            for day in range(10, 20):
                results = await asyncio.gather(*(s.sealed(day) for s in sealers))
                assert results[0] is not None and all(r == results[0] for r in results)
            assert len(await client.hkeys(writer.sealed_key)) == 10
            assert await writer.latest_sealed() == 19
        finally:
            for c in clients:
                await c.aclose()

    with_redis(isolated_settings, body)


def test_same_cuts_as_population_stats(isolated_settings: Settings) -> None:
    """The cut rule is PopulationStats.quintile_cuts' on whole days and whole major units."""

    async def body(client: Redis) -> None:
        rng = random.Random(7)
        states = {}
        for i in range(137):
            day, orders, units = rng.randint(20_000, 20_030), rng.randint(1, 6), rng.randint(0, 40)
            states[f"c{i}"] = CustomerState(
                0.0, day * 86_400.0, orders=orders, revenue_minor=units * 100, last_purchase_ts=day * 86_400.0
            )
        stats = PopulationStats(client, isolated_settings.key_prefix)
        async with client.pipeline(transaction=False) as pipe:
            stats.queue_updates(pipe, states, wall_ts=0.0, track_seen=False)
            await pipe.execute()
        reference = await stats.quintile_cuts()
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=1)
        await snapshots.place(0, {c: placement_of(s) for c, s in states.items()})
        await snapshots.contribute(0, [20_031])
        sealed = await snapshots.sealed(20_031)
        assert sealed is not None
        assert [d * 86_400.0 for d in sealed.recency_day] == reference["recency"]
        assert [float(f) for f in sealed.frequency] == reference["frequency"]
        assert [u * 100.0 for u in sealed.monetary_units] == reference["monetary"]

    with_redis(isolated_settings, body)


def test_cluster_placements_across_slots(cluster_url: str) -> None:
    async def main() -> None:
        client = connect(cluster_url)
        prefix = f"t{uuid.uuid4().hex[:12]}"
        partitions = 6  # hash tags {0}..{5}: spread over the three masters
        snapshots = PopulationSnapshots(client, prefix, partitions)
        try:
            await snapshots.ensure_script()
            rng = random.Random(3)
            placed: dict[int, dict[str, Placement]] = {p: {} for p in range(partitions)}
            for _ in range(10):
                batches = {
                    p: {
                        f"c{p}-{rng.randrange(20)}": (rng.randint(1, 5), 1, rng.randint(0, 3))
                        for _ in range(8)
                    }
                    for p in range(partitions)
                }
                for _ in range(2):
                    await run_pipeline(client, snapshots, batches)
                for p, batch in batches.items():
                    placed[p].update(batch)
            for p in range(partitions):
                assert await snapshots.histogram(p) == recount(placed[p])
                await snapshots.contribute(p, [6])
            sealed = await snapshots.sealed(6)
            everyone = [row for part in placed.values() for row in part.values()]
            assert sealed is not None and sealed.recency_day == sorted_cuts([r[0] for r in everyone])
        finally:
            keys = [snapshots.sealed_key, snapshots.contributions_key(6)]
            keys += [k for p in range(partitions) for k in (snapshots.hist_key(p), snapshots.place_key(p))]
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:  # one key per DEL: different slots
                    pipe.delete(key)
                await pipe.execute()
            await client.aclose()

    asyncio.run(main())
