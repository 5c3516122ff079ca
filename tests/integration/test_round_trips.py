"""Round trips to a real Redis: a warm batch costs one, outbox clearing included.

Round trips are counted on the client's connection (one ``send_packed_command`` is one request
the client then waits for: a pipeline sends all its commands in one), commands on the server
(``INFO commandstats``, which counts the calls a Lua script makes too; ``segflow bench`` reports
them per event).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from helpers import seal_untrained_models
from redis.asyncio import Connection, ConnectionPool, Redis

from engine.app import build_pipeline
from engine.settings import Settings
from engine.stream.pipeline import RawRecord
from features.keys import OUTBOX_FIELD_PREFIX

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CUSTOMERS = 40


class CountingConnection(Connection):
    """A real connection that counts the requests it sends (each one waits for its replies)."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(command, check_health)


def batch(number: int, first_offset: int) -> list[RawRecord]:
    """One event per customer; every customer purchases on even batches (segments change).

    Batch 0 is on day 0, the others an hour apart on day 14: a batch whose watermark passes the
    end of a day also records the partition's population for that day's snapshot (more round
    trips, once a day of event time), so batch 1 does, and the batches after it are the warm ones.
    """
    records = []
    for index in range(CUSTOMERS):
        customer = f"c{index:03d}"
        ts = T0 + (14 * DAY_MS if number else 0) + number * 3_600_000 + index * 1000
        if number % 2 == 0:
            event = {
                "event_id": f"e{number}-{index}",
                "customer_id": customer,
                "type": "purchase",
                "ts": ts,
                "attrs": {"amount": 10.0 + index, "currency": "EUR", "product": "savings"},
            }
        else:
            event = {"event_id": f"e{number}-{index}", "customer_id": customer, "type": "login", "ts": ts}
        records.append(RawRecord("events", 0, first_offset + index, customer.encode(), msgpack.packb(event)))
    return records


async def commands(client: Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(entry["calls"]) for name, entry in stats.items() if name != "cmdstat_info")


def test_a_warm_batch_costs_one_round_trip(isolated_settings: Settings) -> None:
    settings = isolated_settings

    async def main() -> tuple[list[int], list[int], list[int]]:
        pool = ConnectionPool.from_url(settings.redis_url, connection_class=CountingConnection)
        client = Redis(connection_pool=pool)
        admin = Redis.from_url(settings.redis_url)
        await seal_untrained_models(admin, settings.key_prefix)
        pipeline = build_pipeline(settings, client, clock=lambda: 1.8e9)
        trips, cmds, changes = [], [], []
        try:
            offset = 0
            for number in range(8):
                records = batch(number, offset)
                offset += len(records)
                before_trips, before_cmds = CountingConnection.sent, await commands(admin)
                result = await pipeline.process(records)
                pipeline.defer_clear(result.changes)  # as the worker does once they are delivered
                trips.append(CountingConnection.sent - before_trips)
                cmds.append(await commands(admin) - before_cmds)
                changes.append(len(result.changes))
            await pipeline.flush_cleared()
            left = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:c:*")]
            outbox = [
                field
                for key in left
                for field in await client.hkeys(key)
                if field.startswith(OUTBOX_FIELD_PREFIX.encode())  # all delivered, so all removed
            ]
            assert outbox == []
        finally:
            keys = [k async for k in admin.scan_iter(match=f"{settings.key_prefix}:*")]
            if keys:
                await admin.delete(*keys)
            await client.aclose()
            await admin.aclose()
        return trips, cmds, changes

    trips, cmds, changes = asyncio.run(main())
    # The first batch loads cold customers and claims the models; the second passes days' ends.
    assert trips[0] > 1 and trips[1] > 1
    # Warm batches: one pipelined round trip each (the commit, with the last batch's clears).
    assert trips[2:] == [1] * 6, trips
    assert sum(changes[2:]) > 0, "the workload must emit changes, or clearing is not exercised"
    # The batch's commit is one EVALSHA with an HGET and an HSET per customer inside; the server
    # counts them all (other clients of the shared test server may add to the count, never subtract).
    assert all(count >= 2 * CUSTOMERS + 1 for count in cmds[2:]), cmds
