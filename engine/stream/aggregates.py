"""Segment sizes and revenue per segment, kept incrementally and exactly in Redis.

Per family, a sorted set per segment holds its members (score: the member's all-time revenue in
minor units) and a hash holds each segment's size and revenue sum. A customer moves between
them with one server-side script (``lua/segment_set.lua``) that removes them from wherever they
are and puts them where they belong now, adjusting the sums by the difference. The script is
idempotent, so it runs in the same pipelined round trip as the customer's commit (a retried or
redelivered commit changes nothing), and costs what changes: it runs only for customers whose
segment or revenue changed. All keys of one family share a hash tag (one Redis Cluster slot).
Reading the sizes is one HGETALL per family: no scan of members, ever.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from engine.rules.model import Family, RuleSet

_SEGMENT_SET_LUA = resources.files("engine.stream").joinpath("lua/segment_set.lua").read_text()


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

    def queue_move(
        self, pipe: Any, customer_id: str, family: Family, segment: str | None, revenue_minor: int
    ) -> None:
        """Add to a pipeline: ``customer_id`` is now in ``segment`` of ``family`` (None: in none)."""
        names = [s.name for s in family.segments]
        target = names.index(segment) + 1 if segment in names else 0
        keys = [self.sums_key(family.name), *(self.members_key(family.name, n) for n in names)]
        pipe.execute_command(
            "EVAL", _SEGMENT_SET_LUA, len(keys), *keys, customer_id, target, int(revenue_minor), *names
        )

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
