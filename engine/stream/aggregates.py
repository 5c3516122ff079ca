"""Segment sizes and revenue per segment, kept incrementally and exactly in Redis.

Per family, a sorted set per segment holds its members (score: the member's all-time revenue in
minor units), a hash holds each segment's size and revenue sum, and a placement hash says where
each customer is counted. Customers move between them with one server-side script per family
and batch (``lua/segment_set.lua``, run by SHA) that reads the batch's placements with one
HMGET, puts everyone where they belong now, and adjusts the sums by the differences with one
command per touched field. The script is idempotent, so it runs in the same pipelined round
trip as the customers' commits (a retried or redelivered commit changes nothing), and costs
what changes: only customers whose segment or revenue changed are passed. All keys of one
family share a hash tag (one Redis Cluster slot). Reading the sizes is one HGETALL per family:
no scan of members, ever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from engine.rules.model import Family, RuleSet

_SEGMENT_SET_LUA = resources.files("engine.stream").joinpath("lua/segment_set.lua").read_text()
_SEGMENT_SET_SHA = hashlib.sha1(_SEGMENT_SET_LUA.encode()).hexdigest()

Move = tuple[str, str | None, int]
"""A customer, the segment they are in now (None: none), and their revenue in minor units."""


class SegmentAggregates:
    """Membership sets and size/revenue sums of every family under one key prefix."""

    def __init__(self, client: Redis | RedisCluster, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def sums_key(self, family: str) -> str:
        """The hash of a family's sizes (``n:<segment>``) and revenues (``rev:<segment>``, minor units)."""
        return f"{self._prefix}:seg:{{{family}}}:sums"

    def members_key(self, family: str, segment: str) -> str:
        """The sorted set of a segment's members (score: revenue in minor units)."""
        return f"{self._prefix}:seg:{{{family}}}:m:{segment}"

    def placement_key(self, family: str) -> str:
        """The hash of where each customer is counted: ``customer -> "<segment index>:<revenue>"``."""
        return f"{self._prefix}:seg:{{{family}}}:at"

    @property
    def script_sha(self) -> str:
        """The SHA1 of the move script (load it with ``ensure_script`` before queueing moves)."""
        return _SEGMENT_SET_SHA

    async def ensure_script(self) -> None:
        """Load the move script (on every primary of a cluster) so pipelines can run it by SHA."""
        await self._client.script_load(_SEGMENT_SET_LUA)

    def queue_moves(self, pipe: Any, family: Family, moves: Sequence[Move]) -> None:
        """Add to a pipeline: each customer of ``moves`` is now in its segment of ``family``."""
        if not moves:
            return
        names = [s.name for s in family.segments]
        index = {name: i + 1 for i, name in enumerate(names)}
        keys = [
            self.sums_key(family.name),
            self.placement_key(family.name),
            *(self.members_key(family.name, n) for n in names),
        ]
        args: list[str | int] = [len(names), *names]
        for customer_id, segment, revenue_minor in moves:
            args += [customer_id, index.get(segment, 0) if segment is not None else 0, int(revenue_minor)]
        pipe.execute_command("EVALSHA", _SEGMENT_SET_SHA, len(keys), *keys, *args)

    async def sizes(self, rules: RuleSet) -> dict[str, dict[str, dict[str, float]]]:
        """Per family and segment (rules order): ``{"customers": n, "revenue": major units}``."""
        async with self._client.pipeline(transaction=False) as pipe:
            for family in rules.families:
                pipe.hgetall(self.sums_key(family.name))
            replies = await pipe.execute()
        out: dict[str, dict[str, dict[str, float]]] = {}
        for family, raw in zip(rules.families, replies, strict=True):
            sums = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}
            out[family.name] = {
                s.name: {
                    "customers": sums.get(f"n:{s.name}", 0),
                    "revenue": sums.get(f"rev:{s.name}", 0) / 100,
                }
                for s in family.segments
            }
        return out
