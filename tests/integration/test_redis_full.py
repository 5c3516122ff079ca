"""A full Redis stops the worker with one clear error line, and loses nothing (#14).

A dedicated redis-server, started with the stack's own ``node_up`` and two more config lines
(``maxmemory`` a few MB above what an empty server uses, ``maxmemory-policy noeviction``), takes
a stream far larger than that. The worker must exit with status 1 by itself, its log holding
exactly one error line that says what happened and what to change, and no traceback; part of the
stream is applied by then, and not all of it is committed. Then maxmemory is lifted (``CONFIG
SET maxmemory 0``), a second worker of the same group starts, and every event must end applied
exactly once: each customer's stored event count equals their events in the produced stream
(recomputed from it), the group's committed offsets reach the end of every partition, and every
family's segment sizes equal the memberships stored in the customers' records.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_py
from determinism_runs import produce, read_store, remove
from helpers import all_committed, group_progress, wait_until
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from engine.reports import segment_sizes
from engine.settings import Settings
from engine.stack.redis import RedisNode, node_down, node_up
from engine.worker_process import free_port, read_metrics, start_worker, stop_worker
from features.redis_store import CustomerWrite, RedisFeatureStore
from features.state import CustomerState
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration

HEADROOM_BYTES = 3 << 20
"""maxmemory above an empty server's use: room for a part of the stream, far from all of it."""
POPULATION = PopulationConfig(customers=4000, days=4, seed=14)
EXIT_TIMEOUT = 180.0
"""A bound for the first worker to stop by itself (it stops within seconds of the refusal)."""
CATCH_UP_TIMEOUT = 300.0
FULL = "Redis is full"


@pytest.fixture()
def full_redis(tmp_path: Path) -> Iterator[RedisNode]:
    """A redis-server of the test's own that refuses writes once used memory passes maxmemory."""
    port = free_port()
    probe = RedisNode("redis-probe", port, tmp_path / "probe")
    node_up(probe)
    client = redis_py.Redis(port=port)
    empty = int(client.info("memory")["used_memory"])
    client.close()
    node_down(probe)
    limit = empty + HEADROOM_BYTES
    node = RedisNode(
        "redis-full", port, tmp_path / "redis", extra=(f"maxmemory {limit}", "maxmemory-policy noeviction")
    )
    node_up(node)
    try:
        yield node
    finally:
        node_down(node)


def test_a_full_redis_stops_the_worker_and_loses_nothing(
    isolated_settings: Settings, full_redis: RedisNode, tmp_path: Path
) -> None:
    settings = isolated_settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{full_redis.port}/0",
            "web_port": free_port(),
            "idle_advance_seconds": 3600.0,
        }
    )
    events = list(generate_events(POPULATION))
    produced = Counter(e["customer_id"] for e in events)
    write_jsonl(events, tmp_path / "events.jsonl")
    try:
        assert asyncio.run(produce(settings, tmp_path / "events.jsonl")) == len(events)
        log_path = tmp_path / "worker-full.log"
        first = start_worker(settings, log_path)
        try:
            code = first.wait(EXIT_TIMEOUT)
        finally:
            stop_worker(first)
        log = log_path.read_text(errors="replace")
        full_lines = [line for line in log.splitlines() if FULL in line]
        assert code == 1, f"the worker exited with {code}\n{log[-3000:]}"
        assert len(full_lines) == 1, log[-3000:]
        line = full_lines[0]
        assert "ERROR" in line and "maxmemory" in line and "SEGFLOW_CUSTOMER_TTL_DAYS" in line, line
        assert "Traceback" not in log, log[-3000:]
        before = asyncio.run(read_store(settings, sorted(produced)))
        applied_before = sum(s.events for s in before.states.values() if s is not None)
        assert 0 < applied_before < len(events), applied_before
        progress = asyncio.run(group_progress(settings))
        assert not all_committed(progress), progress

        client = redis_py.Redis(port=full_redis.port)
        client.config_set("maxmemory", 0)
        client.close()
        second = start_worker(settings, tmp_path / "worker-after.log")
        try:
            caught_up = wait_until(
                lambda: all_committed(asyncio.run(group_progress(settings))), CATCH_UP_TIMEOUT, 1
            )
            assert caught_up, asyncio.run(group_progress(settings))
            counters = read_metrics(settings.web_port, settings.web_secret)
        finally:
            assert stop_worker(second) == 0
        after = asyncio.run(read_store(settings, sorted(produced)))
        stored = {cid: s.events + s.late_dropped for cid, s in after.states.items() if s is not None}
        assert stored == dict(produced)
        # What the first worker applied is fenced: the second applies exactly the rest.
        applied = sum(s.events for s in after.states.values() if s is not None)
        assert counters.get("segflow_events_applied_total") == applied - applied_before, counters
        sizes = asyncio.run(segment_sizes(settings))["families"]
        for family, segments in sizes.items():
            members = Counter(m[family][0] for m in after.memberships.values() if family in m)
            counted = {s: int(row["customers"]) for s, row in segments.items() if row["customers"]}
            assert counted == {s: n for s, n in members.items() if s is not None}, family
    finally:
        asyncio.run(remove(settings))


BLOB_BYTES = 256 << 10
MARGINS = range(0, 3 * BLOB_BYTES, 16 << 10)


def test_a_commit_is_applied_whole_or_not_at_all_whatever_memory_is_left(full_redis: RedisNode) -> None:
    """Whatever room is left under maxmemory, a commit writes its customers and its indexes (the
    caller's commands of the same round trip) together, or refuses both as out of memory: Redis
    checks memory before a command, so a non-transactional round trip could stop half-way."""

    async def attempt(client: Redis, margin: int) -> tuple[bool, bool, bool]:
        store = RedisFeatureStore(client, prefix="full")
        state = CustomerState(first_ts=0.0, last_ts=0.0, events=1)
        await client.config_set("maxmemory", 0)
        await client.flushall()
        await store.commit([CustomerWrite("c-0", None, {0: 1}, state)])  # loads the commit script
        write = CustomerWrite("c-1", None, {0: 7}, state, {"blob": b"x" * BLOB_BYTES})
        used = int((await client.info("memory"))["used_memory"])
        await client.config_set("maxmemory", used + margin)
        try:
            lost = await store.commit([write], also=lambda pipe: pipe.zadd("full:index", {"c-1": 1}))
            refused = False
            assert lost == []
        except OutOfMemoryError:
            refused = True
        await client.config_set("maxmemory", 0)
        return (
            refused,
            await store.get("c-1") is not None,
            await client.zscore("full:index", "c-1") is not None,
        )

    async def main() -> list[tuple[int, tuple[bool, bool, bool]]]:
        client = Redis(port=full_redis.port)
        try:
            return [(margin, await attempt(client, margin)) for margin in MARGINS]
        finally:
            await client.flushall()
            await client.aclose()

    outcomes = asyncio.run(main())
    assert all(o in ((False, True, True), (True, False, False)) for _, o in outcomes), outcomes
    # Both sides were reached: refused with little room, applied with plenty.
    assert {o for _, o in outcomes} == {(False, True, True), (True, False, False)}, outcomes
