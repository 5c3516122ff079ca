"""Population statistics for RFM quintiles: exact, from sorted sets, maintained incrementally.

Three sorted sets hold every purchasing customer's R, F and M as scores (recency as the time of
the last purchase, so for all three a higher score is better); a fourth holds the wall-clock
time each customer was last written, so customers that expired by TTL are found by time and
removed from the sets without scanning anything (``sweep_expired``).

Scores are *set*, never incremented, so writing them again after a redelivery is harmless.
A customer's quintile is 1 + floor(5 * (customers with a strictly lower score) / customers),
so ties share a quintile and the best customers are in quintile 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from features.keys import customer_key
from features.state import CustomerState

METRICS = ("recency", "frequency", "monetary")
SEEN = "seen"


def population_key(prefix: str, metric: str) -> str:
    """The sorted set of one metric (``recency``, ``frequency``, ``monetary`` or ``seen``)."""
    return f"{prefix}:pop:{metric}"


def metric_scores(state: CustomerState) -> dict[str, float] | None:
    """R/F/M scores of a customer; None when they never purchased (not ranked)."""
    if state.last_purchase_ts is None:
        return None
    return {
        "recency": state.last_purchase_ts,
        "frequency": float(state.orders),
        "monetary": float(state.revenue_minor),
    }


def quintile(lower: int, total: int) -> int:
    """Quintile 1-5 of a score with ``lower`` scores strictly below it among ``total``."""
    if total <= 0:
        raise ValueError("no customers ranked")
    return 1 + (5 * lower) // total


@dataclass(frozen=True, slots=True)
class RfmQuintiles:
    """A customer's R, F and M quintiles (5 = best)."""

    recency: int
    frequency: int
    monetary: int


class PopulationStats:
    """Reads and writes the population sorted sets under ``prefix``."""

    def __init__(self, client: Redis | RedisCluster, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def queue_updates(
        self, pipe: object, states: dict[str, CustomerState], wall_ts: float, track_seen: bool
    ) -> None:
        """Add the score updates of ``states`` to a pipeline (one ZADD per metric).

        ``track_seen`` records the write time for ``sweep_expired``; only needed with a TTL.
        """
        by_metric: dict[str, dict[str, float]] = {metric: {} for metric in METRICS}
        for customer_id, state in states.items():
            scores = metric_scores(state)
            if scores is None:
                continue
            for metric, score in scores.items():
                by_metric[metric][customer_id] = score
        for metric, mapping in by_metric.items():
            if mapping:
                pipe.zadd(population_key(self._prefix, metric), mapping)  # type: ignore[attr-defined]
        if states and track_seen:
            pipe.zadd(population_key(self._prefix, SEEN), dict.fromkeys(states, wall_ts))  # type: ignore[attr-defined]

    async def size(self) -> int:
        """Customers ranked (those with at least one purchase)."""
        return int(await self._client.zcard(population_key(self._prefix, "frequency")))

    async def cut_points(self, metric: str) -> list[float]:
        """The 4 scores at the 20/40/60/80% ranks of ``metric`` (empty when nobody is ranked)."""
        key = population_key(self._prefix, metric)
        total = int(await self._client.zcard(key))
        if total == 0:
            return []
        points = []
        for k in range(1, 5):
            index = (k * total) // 5
            member = await self._client.zrange(key, index, index, withscores=True)
            points.append(float(member[0][1]))
        return points

    async def quintile_cuts(self) -> dict[str, list[float]]:
        """Per metric, the 4 cuts t_1..t_4 such that quintile(score) = 1 + #{k: score > t_k}.

        Exact for every ranked score (same as ``quintiles``, ties share the lower quintile):
        floor(5 * lower / total) >= k exactly when at least ceil(k * total / 5) scores lie
        strictly below, i.e. when the score exceeds the one at that rank. Two round trips for
        all three metrics; empty lists when nobody is ranked.
        """
        keys = {metric: population_key(self._prefix, metric) for metric in METRICS}
        async with self._client.pipeline(transaction=False) as pipe:
            for metric in METRICS:
                pipe.zcard(keys[metric])
            totals = dict(zip(METRICS, (int(n) for n in await pipe.execute()), strict=True))
        async with self._client.pipeline(transaction=False) as pipe:
            for metric in METRICS:
                for k in range(1, 5):
                    rank = -(-k * totals[metric] // 5) - 1  # ceil(k * total / 5) - 1
                    pipe.zrange(keys[metric], rank, rank, withscores=True)
            replies = await pipe.execute()
        cuts: dict[str, list[float]] = {}
        for i, metric in enumerate(METRICS):
            rows = replies[i * 4 : (i + 1) * 4]
            cuts[metric] = [float(r[0][1]) for r in rows] if totals[metric] and all(rows) else []
        return cuts

    async def quintiles(self, customer_ids: Sequence[str]) -> dict[str, RfmQuintiles | None]:
        """R/F/M quintiles of several customers (None for one not ranked), in two round trips."""
        keys = {metric: population_key(self._prefix, metric) for metric in METRICS}
        async with self._client.pipeline(transaction=False) as pipe:
            for metric in METRICS:
                pipe.zcard(keys[metric])
            for customer_id in customer_ids:
                for metric in METRICS:
                    pipe.zscore(keys[metric], customer_id)
            replies = await pipe.execute()
        totals = dict(zip(METRICS, (int(r) for r in replies[: len(METRICS)]), strict=True))
        scores = replies[len(METRICS) :]
        ranked = [
            (cid, scores[i * len(METRICS) : (i + 1) * len(METRICS)])
            for i, cid in enumerate(customer_ids)
            if all(score is not None for score in scores[i * len(METRICS) : (i + 1) * len(METRICS)])
        ]
        out: dict[str, RfmQuintiles | None] = dict.fromkeys(customer_ids)
        if not ranked:
            return out
        async with self._client.pipeline(transaction=False) as pipe:
            for _cid, own in ranked:
                for metric, score in zip(METRICS, own, strict=True):
                    pipe.zcount(keys[metric], "-inf", f"({float(score)!r}")
            lowers = await pipe.execute()
        for i, (cid, _own) in enumerate(ranked):
            below = lowers[i * len(METRICS) : (i + 1) * len(METRICS)]
            out[cid] = RfmQuintiles(
                *(quintile(int(n), totals[m]) for n, m in zip(below, METRICS, strict=True))
            )
        return out

    async def sweep_expired(self, now_wall_ts: float, ttl_seconds: float, limit: int = 1000) -> int:
        """Remove customers not written for ``ttl_seconds`` (their hash expired) from every set.

        Cost grows with the number of expired customers, never with the population.
        """
        seen = population_key(self._prefix, SEEN)
        stale = await self._client.zrangebyscore(seen, "-inf", now_wall_ts - ttl_seconds, start=0, num=limit)
        if not stale:
            return 0
        members = [m.decode() if isinstance(m, bytes) else str(m) for m in stale]
        async with self._client.pipeline(transaction=False) as pipe:
            for customer_id in members:
                pipe.exists(customer_key(self._prefix, customer_id))
            alive = await pipe.execute()
        gone = [cid for cid, exists in zip(members, alive, strict=True) if not exists]
        revived = [cid for cid, exists in zip(members, alive, strict=True) if exists]
        async with self._client.pipeline(transaction=False) as pipe:
            if gone:
                for metric in (*METRICS, SEEN):
                    pipe.zrem(population_key(self._prefix, metric), *gone)
            if revived:  # written again since: their hash lives on, keep them ranked
                pipe.zadd(seen, dict.fromkeys(revived, now_wall_ts))
            await pipe.execute()
        return len(gone)
