"""Which sealed population snapshot a moment reads, and whether it is sealed yet.

A decision at event time t reads the RFM cuts of day ``day(t - lateness) - 1``: the last full
day before the day of t's watermark. Every partition's watermark has passed that day's end once
t itself is counted, so in real time, where partitions advance together, the snapshot is sealed
before anybody needs it; a partition that runs ahead in a replay waits for the slowest one.

The snapshot of day D is sealed once every source partition has contributed its population as
of the moment its watermark passed D's end (``engine.snapshots.population``). Two cases read as
an empty contribution, because the partition's population was empty at the end of D:

* the partition's first contribution is for a later day (its first event came after D's end
  plus the lateness: at that event nobody of it had bought anything yet);
* the partition's log is empty (``empty_partitions``: from the broker for a worker; for a replay,
  the partitions without events). Once it gets its first event, the first case applies.

Day D's cuts also carry the population's BTYD fit of ``fit_day_of(D)``, the latest weekly fit
day at or before D (``engine.snapshots.lifetime``), which is sealed (and loaded) first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.segmentation import PopulationCuts
from engine.snapshots.lifetime import LifetimeFit, fit_day_of
from engine.snapshots.population import Placement, PopulationSnapshots
from engine.stream.watermarks import day_of
from features.event import SECONDS_PER_DAY

CONTRIBUTED_MEMO_DAYS = 32
"""How many days back each partition's contributions are remembered (see ``contribute``)."""


class PopulationGate:
    """Sealed population cuts by day, sealing them when every partition has contributed."""

    def __init__(
        self,
        snapshots: PopulationSnapshots,
        partitions: int,
        lateness_seconds: float,
        empty_partitions: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self.snapshots = snapshots
        self.partitions = partitions
        self.lateness = lateness_seconds
        self.empty_partitions = empty_partitions or (lambda: ())
        self._cuts: dict[int, PopulationCuts] = {}
        self._fits: dict[int, LifetimeFit | None] = {}
        """Day -> the BTYD fit its decisions read (that of ``fit_day_of(day)``)."""
        self._first: dict[int, int] = {}
        self._contributed: dict[int, set[int]] = {}
        """Partition -> the recent days whose contributions this process stored (first write
        wins, so storing one again changes nothing: the memo only saves the round trips)."""
        self._client: Any = snapshots.client
        self._first_key = f"{snapshots.prefix}:ps:first"
        self.lenient = False
        """Read a snapshot that is not sealed as no cuts at all (reports, never decisions)."""

    def version_of(self, moment: float) -> int:
        """The day whose sealed cuts a decision at ``moment`` reads."""
        return day_of(moment - self.lateness) - 1

    def next_version_moment(self, moment: float) -> float:
        """The first moment after ``moment`` that reads the next day's cuts."""
        return (day_of(moment - self.lateness) + 1) * SECONDS_PER_DAY + self.lateness

    def last_moment_of(self, version: int) -> float:
        """The latest moment that reads ``version`` or an earlier one."""
        return (version + 2) * SECONDS_PER_DAY + self.lateness - 0.001

    @property
    def highest(self) -> int | None:
        """The highest sealed day known here."""
        return max(self._cuts, default=None)

    def is_sealed(self, version: int) -> bool:
        """Whether ``version`` is sealed and loaded here."""
        return version in self._cuts

    is_loaded = is_sealed

    def cuts_at(self, moment: float) -> PopulationCuts:
        """The cuts a decision at ``moment`` reads (the caller made sure they are sealed)."""
        version = self.version_of(moment)
        cuts = self._cuts.get(version)
        if cuts is None:
            if self.lenient:
                return PopulationCuts()
            raise LookupError(f"population snapshot of day {version} is not loaded")
        return cuts

    async def ensure(self, first: int, last: int) -> bool:
        """Seal and load every day from ``first`` to ``last``; False if one is not sealed yet."""
        for version in range(first, last + 1):
            if version not in self._cuts and not await self._seal(version):
                return False
        return True

    async def _seal(self, version: int) -> bool:
        sealed = await self.snapshots.sealed(version)
        if sealed is None:
            missing = set(range(self.partitions)) - await self.snapshots.contributors(version)
            if not missing:
                return False
            firsts = await self._firsts()
            empty = set(self.empty_partitions())
            if not all(p in empty or (p in firsts and firsts[p] > version) for p in missing):
                return False
            await self.snapshots.contribute_empty(sorted(missing), version)
            sealed = await self.snapshots.sealed(version)
            if sealed is None:
                return False
        fit_day = fit_day_of(version)
        lifetime: LifetimeFit | None = None
        if fit_day == version:
            lifetime = None if sealed.lifetime is None else LifetimeFit.decode(sealed.lifetime)
        elif fit_day >= 0:
            if fit_day not in self._cuts and not await self._seal(fit_day):
                return False
            lifetime = self._fits.get(fit_day)
        self._fits[version] = lifetime
        self._cuts[version] = PopulationCuts.from_sealed(
            sealed.day, sealed.recency_day, sealed.frequency, sealed.monetary_units, self.lateness, lifetime
        )
        return True

    async def _firsts(self) -> dict[int, int]:
        if len(self._first) < self.partitions:
            stored = await self._client.hgetall(self._first_key)
            self._first = {int(k): int(v) for k, v in stored.items()}  # bytes parse as int too
        return self._first

    async def contribute(self, partition: int, days: tuple[int, ...]) -> None:
        """Record ``partition``'s population now as its contribution to ``days`` (first write wins)."""
        done = self._contributed.setdefault(partition, set())
        days = tuple(day for day in days if day not in done)
        if not days:
            return
        if partition not in self._first:
            await self._client.hsetnx(self._first_key, str(partition), str(min(days)))
            stored = await self._client.hget(self._first_key, str(partition))
            self._first[partition] = int(stored)
        await self.snapshots.contribute(partition, days)
        done.update(days)
        if len(done) > 2 * CONTRIBUTED_MEMO_DAYS:  # bounded: days far behind are not offered again
            newest = max(done)
            done.difference_update([day for day in done if day <= newest - CONTRIBUTED_MEMO_DAYS])

    def queue_placements(
        self, pipe: object, partition: int, placements: Mapping[str, Placement | None]
    ) -> None:
        """Add the customers' population placements to a commit pipeline (absolute, idempotent)."""
        self.snapshots.queue_placements(pipe, partition, placements)
