"""A tick's output survives its worker dying before delivery (real Redis).

Events that were committed but not delivered come back with their offsets, which were never
committed: the next owner fetches them again and re-offers the customer's outbox. A tick has no
offset to fetch again, so its outbox entries must be found some other way. Here a worker ticks a
silent customer into a new segment, "dies" before the broker acknowledged the change (its
output is dropped, nothing confirmed), and a second worker on the same Redis, the partition's
next owner, must offer that change again with its first tick, under the same id.

The stream: five "regulars" buy every day at 00:01, keeping the watermark moving; "silent" buys
on day 0 only. With the default RFM rules silent slides by time alone (recency grows while the
others buy): every such slide is a change whose cause is a tick.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from helpers import seal_untrained_models, with_redis
from redis.asyncio import Redis

from engine.app import build_pipeline
from engine.settings import Settings
from engine.stream.pipeline import RawRecord, SegmentPipeline
from features.client import connect

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
T0 = 1_767_225_600_000
DAYS = 60


def purchase(eid: str, customer: str, ts: int) -> bytes:
    attrs = {"amount": 25.0, "currency": "EUR", "product": "savings"}
    event = {"event_id": eid, "customer_id": customer, "type": "purchase", "ts": ts, "attrs": attrs}
    return msgpack.packb(event)


def batches() -> list[list[RawRecord]]:
    offset, out = 0, []
    for day in range(DAYS):
        batch = []
        buyers = [f"r{i}" for i in range(5)] + (["silent"] if day == 0 else [])
        for n, customer in enumerate(buyers):
            value = purchase(f"{customer}-d{day}", customer, T0 + day * DAY_MS + 60_000 + n)
            batch.append(RawRecord("events", 0, offset, customer.encode(), value))
            offset += 1
        out.append(batch)
    return out


def tick_changes(changes: list[Any]) -> list[dict[str, Any]]:
    decoded = [msgpack.unpackb(c.payload) for c in changes if c.kind == "c"]
    return [c for c in decoded if "tick" in c["cause"]]


async def first_tick_change(pipeline: SegmentPipeline) -> tuple[list[dict[str, Any]], int]:
    """Run the stream until a tick moves a customer on; that tick's changes are never confirmed."""
    for day, batch in enumerate(batches()):
        await pipeline.confirm_sent((await pipeline.process(batch)).changes)
        ticked = await pipeline.tick()
        lost = tick_changes(ticked.changes)
        if lost:
            return lost, day  # the worker dies here: nothing of this tick is confirmed sent
        await pipeline.confirm_sent(ticked.changes)
    raise AssertionError("no tick moved a customer on: the stream does not test anything")


async def dies_and_is_recovered(settings: Settings, client: Any, first: SegmentPipeline) -> None:
    """``first`` dies after a tick; two later owners: the tick's changes come back once, same ids."""
    lost, day = await first_tick_change(first)
    assert day < DAYS - 1
    assert b"silent" in await client.smembers(first.tick_outbox.key(0))

    owner = build_pipeline(settings, client, clock=lambda: 1.8e9, cache_capacity=0)
    owner.owned.add(0)  # assigned (the worker's tick claims its assignment)
    offered = await owner.tick()
    again = {c["change_id"]: c for c in tick_changes(offered.changes)}
    for change in lost:
        assert change["change_id"] in again, f"the undelivered tick change {change} was lost"
        assert again[change["change_id"]] == change
    await owner.confirm_sent(offered.changes)

    # Once delivered, it is not offered again: not by the next tick, nor by a third owner.
    assert not {c["change_id"] for c in tick_changes((await owner.tick()).changes)} & again.keys()
    third = build_pipeline(settings, client, clock=lambda: 1.8e9, cache_capacity=0)
    third.owned.add(0)
    last = await third.tick()
    assert not {c["change_id"] for c in tick_changes(last.changes)} & again.keys()
    # Delivered and cleared: no customer is left in the partition's set.
    await third.confirm_sent(last.changes)
    assert await client.smembers(third.tick_outbox.key(0)) == set()


def test_a_new_owner_offers_the_undelivered_output_of_a_tick_again(isolated_settings: Settings) -> None:
    settings = isolated_settings

    async def body(client: Redis) -> None:
        await seal_untrained_models(client, settings.key_prefix)
        first = build_pipeline(settings, client, clock=lambda: 1.8e9, cache_capacity=0)
        await dies_and_is_recovered(settings, client, first)

    with_redis(settings, body)


@pytest.fixture()
def cluster_settings(isolated_settings: Settings, cluster_url: str) -> Settings:
    """Isolated settings on the local Redis Cluster."""
    return isolated_settings.model_copy(update={"redis_url": cluster_url})


def test_on_a_cluster_a_tick_indexes_its_customers_before_the_commit_that_makes_their_entries(
    cluster_settings: Settings,
) -> None:
    """A cluster's commit round trip is not atomic across slots: were the set update part of it, a
    worker killed mid-way could leave entries that no set names. The index goes first instead."""
    settings = cluster_settings

    async def main() -> None:
        client = connect(settings.redis_url)
        try:
            await seal_untrained_models(client, settings.key_prefix)
            first = build_pipeline(settings, client, clock=lambda: 1.8e9, cache_capacity=0)
            store = first._store
            real_commit = store.commit
            indexed_before: list[bool] = []

            async def commit_after_checking(writes: Any, *args: Any, **kwargs: Any) -> list[str]:
                with_entries = [w.customer_id for w in writes if w.outbox]
                if "silent" in with_entries:
                    indexed_before.append(b"silent" in await client.smembers(first.tick_outbox.key(0)))
                return await real_commit(writes, *args, **kwargs)

            store.commit = commit_after_checking  # type: ignore[method-assign]
            await dies_and_is_recovered(settings, client, first)
            # The last commit with entries for silent is the tick's that the worker died after.
            assert indexed_before, "no commit made entries for silent"
            assert indexed_before[-1], "the tick made entries for silent before silent was in the set"
        finally:
            keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000)]
            for key in keys:  # one key per DEL: keys of different slots
                await client.delete(key)
            await client.aclose()

    asyncio.run(main())
