"""Sealed, event-time-versioned population snapshots in Redis: the RFM cuts of each day.

Each source partition keeps a histogram of where its customers are placed (``cuts.Placement``),
maintained absolutely and idempotently by ``lua/population_place.lua`` in the caller's commit
pipeline. When the pipeline decides that partition p is done with day D (its event-time
watermark passed the end of D), ``contribute`` copies p's histogram as its contribution to D,
first write wins. Once every partition 0..P-1 has contributed, ``sealed`` merges the
contributions, computes the cuts and stores them, again first write wins, so every reader of
day D sees the same cuts forever, whatever the timing of the workers.

Keys (``{p}`` is a Redis Cluster hash tag: a partition's two keys share a slot, so one script
call touches both):

=============================  ====  ====================================================
key                            type  content
=============================  ====  ====================================================
``<prefix>:ps:{<p>}:hist``     hash  ``r<day>``, ``f<orders>``, ``m<units>``, ``n``, and the
                                     lifetime summaries ``b<first>:<last>:<orders>``,
                                     ``g<orders>:<units>`` -> count
``<prefix>:ps:{<p>}:place``    hash  customer id -> ``"<day>:<orders>:<units>:<first day>"``
``<prefix>:ps:c:<day>``        hash  partition -> ``Histogram.encode()`` (its contribution;
                                     deleted once the day is sealed)
``<prefix>:ps:sealed``         hash  day -> ``SealedCuts.encode()`` (with the week's BTYD fit
                                     on fit days, ``engine.snapshots.lifetime``)
=============================  ====  ====================================================

A customer must always be placed by the same partition (customers are keyed by id).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from engine.snapshots.cuts import (
    Histogram,
    Placement,
    SealedCuts,
    cuts_of,
    merge,
    metric_cuts,
    placement_of,
    quintile_of,
)
from engine.snapshots.lifetime import fit_lifetime, is_fit_day

__all__ = [
    "Histogram",
    "Placement",
    "PopulationSnapshots",
    "SealedCuts",
    "cuts_of",
    "merge",
    "metric_cuts",
    "pack_placement",
    "placement_of",
    "quintile_of",
]

_PLACE_LUA = resources.files("engine.snapshots").joinpath("lua/population_place.lua").read_text()
_PLACE_SHA = hashlib.sha1(_PLACE_LUA.encode()).hexdigest()
_FIELDS = {"r": "recency_day", "f": "frequency", "m": "monetary_units"}


def pack_placement(placement: Placement | None) -> str:
    """A placement as the script stores it (``""``: not ranked); equal placements pack equally."""
    if placement is None:
        return ""
    return ":".join(str(int(v)) for v in placement)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _histogram(raw: Mapping[Any, Any]) -> Histogram:
    counts: dict[str, dict[int, int]] = {name: {} for name in _FIELDS.values()}
    lifetimes: dict[tuple[int, ...], int] = {}
    spends: dict[tuple[int, ...], int] = {}
    customers = 0
    for key, value in raw.items():
        name, count = _text(key), int(value)
        if name == "n":
            customers = count
        elif not count:
            continue
        elif name[0] == "b":
            lifetimes[tuple(int(v) for v in name[1:].split(":"))] = count
        elif name[0] == "g":
            spends[tuple(int(v) for v in name[1:].split(":"))] = count
        else:
            counts[_FIELDS[name[0]]][int(name[1:])] = count
    return Histogram(
        dict(sorted(counts["recency_day"].items())),
        dict(sorted(counts["frequency"].items())),
        dict(sorted(counts["monetary_units"].items())),
        customers,
        dict(sorted(lifetimes.items())),  # type: ignore[arg-type]
        dict(sorted(spends.items())),  # type: ignore[arg-type]
    )


class PopulationSnapshots:
    """Per-partition population histograms, their contributions per day and the sealed cuts."""

    def __init__(self, client: Redis | RedisCluster, prefix: str, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, not {partitions}")
        self._client = client
        self._prefix = prefix
        self._partitions = partitions
        self._sha = _PLACE_SHA
        self._sealed: dict[int, SealedCuts] = {}

    @property
    def partitions(self) -> int:
        """P: a day is sealed once partitions 0..P-1 have all contributed."""
        return self._partitions

    def hist_key(self, partition: int) -> str:
        """The histogram hash of one partition."""
        return f"{self._prefix}:ps:{{{self._check(partition)}}}:hist"

    def place_key(self, partition: int) -> str:
        """The placement hash of one partition (customer -> packed placement)."""
        return f"{self._prefix}:ps:{{{self._check(partition)}}}:place"

    def contributions_key(self, day: int) -> str:
        """The hash of every partition's contribution to ``day``."""
        return f"{self._prefix}:ps:c:{int(day)}"

    @property
    def sealed_key(self) -> str:
        """The hash of every sealed day's cuts."""
        return f"{self._prefix}:ps:sealed"

    @property
    def script_sha(self) -> str:
        """The SHA1 that ``queue_placements`` runs (load it with ``ensure_script`` first)."""
        return self._sha

    async def ensure_script(self) -> None:
        """Load the placement script (on every primary of a cluster); call again on NoScriptError."""
        self._sha = _text(await self._client.script_load(_PLACE_LUA))

    def queue_placements(self, pipe: Any, partition: int, placements: Mapping[str, Placement | None]) -> None:
        """Add to a pipeline: each customer is now at its placement (None: unranked).

        One EVALSHA for the whole mapping, nothing when it is empty. If executing the pipeline
        raises NoScriptError (Redis restarted), call ``ensure_script`` and run it again: the
        placements are absolute, so running them twice is harmless.
        """
        if not placements:
            return
        args: list[str] = []
        for customer_id, placement in placements.items():
            args += [customer_id, pack_placement(placement)]
        keys = (self.hist_key(partition), self.place_key(partition))
        # Raw EVALSHA: redis-py's cluster pipeline refuses .evalsha() but routes this by its key.
        pipe.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)

    async def place(self, partition: int, placements: Mapping[str, Placement | None]) -> None:
        """``queue_placements`` in a pipeline of its own, reloading the script if Redis lost it."""
        for attempt in range(2):
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    self.queue_placements(pipe, partition, placements)
                    await pipe.execute()
                return
            except NoScriptError:
                if attempt:
                    raise
                await self.ensure_script()

    async def histogram(self, partition: int) -> Histogram:
        """The partition's histogram now."""
        return _histogram(await self._client.hgetall(self.hist_key(partition)))

    async def contribute(self, partition: int, days: Iterable[int]) -> Histogram:
        """Make the partition's current histogram its contribution to each of ``days``.

        Read once; a day the partition already contributed to keeps its first contribution.
        Returns the histogram read (not necessarily what a day already held).
        """
        days = list(days)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.hist_key(partition))
            if days:
                pipe.hmget(self.sealed_key, [str(day) for day in days])
            read = await pipe.execute()
        histogram = _histogram(read[0])
        # A sealed day's contributions are deleted: one written again (a redelivery after a
        # crash) would be kept forever, read by nobody.
        open_days = [day for day, cuts in zip(days, read[1], strict=True) if cuts is None] if days else []
        if open_days:
            blob = histogram.encode()
            async with self._client.pipeline(transaction=False) as pipe:
                for day in open_days:
                    pipe.hsetnx(self.contributions_key(day), str(partition), blob)
                await pipe.execute()
        return histogram

    async def contribute_empty(self, partitions: Iterable[int], day: int) -> None:
        """Record an empty population as ``partitions``' contribution to ``day`` (first write wins).

        For a partition whose population was empty at the end of ``day`` (it had no event yet).
        """
        if await self._client.hexists(self.sealed_key, str(day)):
            return  # sealed meanwhile: its contributions are deleted, none is written again
        blob = Histogram().encode()
        async with self._client.pipeline(transaction=False) as pipe:
            for partition in partitions:
                pipe.hsetnx(self.contributions_key(day), str(self._check(partition)), blob)
            await pipe.execute()

    @property
    def client(self) -> Any:
        """The Redis client."""
        return self._client

    @property
    def prefix(self) -> str:
        """The key prefix."""
        return self._prefix

    async def contributors(self, day: int) -> set[int]:
        """The partitions that contributed to ``day`` so far."""
        return {int(_text(p)) for p in await self._client.hkeys(self.contributions_key(day))}

    async def sealed(self, day: int) -> SealedCuts | None:
        """The cuts of ``day`` once every partition contributed (sealing it if nobody had); else None.

        When two callers seal at once, both return what was stored first.
        """
        day = int(day)
        known = self._sealed.get(day)
        if known is not None:
            return known
        # One round trip, the contributions read first: a sealer stores the cuts before it deletes
        # them, so contributions found incomplete because they were deleted come with the cuts.
        # (On a cluster the two reads may go to two nodes in either order: then a day sealed just
        # now can read as not sealed, which only makes the caller ask again.)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.contributions_key(day))
            pipe.hget(self.sealed_key, str(day))
            raw, stored = await pipe.execute()
        if stored is None:
            parts = {int(_text(p)): bytes(blob) for p, blob in raw.items()}
            if any(p not in parts for p in range(self._partitions)):
                return None
            merged = merge(Histogram.decode(parts[p]) for p in range(self._partitions))
            fit = fit_lifetime(day, merged) if is_fit_day(day) else None
            cuts = cuts_of(day, merged, None if fit is None else fit.encode())
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hsetnx(self.sealed_key, str(day), cuts.encode())
                pipe.hget(self.sealed_key, str(day))
                # Only sealing reads them: once the cuts are stored they are dead weight (~86 kB a
                # day for 5,000 customers, measured by `segflow soak`).
                pipe.delete(self.contributions_key(day))
                _, stored, _ = await pipe.execute()
        cuts = self._sealed[day] = SealedCuts.decode(stored)
        return cuts

    async def latest_sealed(self) -> int | None:
        """The highest sealed day, if any."""
        days = [int(_text(d)) for d in await self._client.hkeys(self.sealed_key)]
        return max(days, default=None)

    def _check(self, partition: int) -> int:
        if not 0 <= partition < self._partitions:
            raise ValueError(f"partition {partition} not in 0..{self._partitions - 1}")
        return int(partition)
