"""Each source partition's event-time watermark, as a fixed function of its log.

The watermark of partition p *before* its event at offset o is the newest event time of p's
events at offsets below o, minus the allowed lateness; *at* o it includes o's own time. Both
depend only on the log, never on how it was batched, when it was fetched or whether a worker
crashed in between, because the newest time is committed in Redis together with the offset it
reflects (``<prefix>:wm``: field ``<p>`` the newest event time, ``<p>:o`` the offset; ``<p>:h`` the
newest time of events held back, for the idle rule), in the
same round trip as the customers of that offset range:

* an event older than its partition's watermark before it is too late for everyone (a tick may
  already have moved its customer past it), so whether it counts never depends on timing;
* a day D is *crossed* at the first event whose watermark reaches the end of D: the moment the
  partition's population is recorded for D's sealed snapshot (``engine.snapshots``).

Redelivered events (offsets at or below the committed one) change nothing here. The only
wall-clock dependence is the idle rule of ``tick_watermark``: a partition without events for
``idle_seconds`` of wall-clock time advances with the clock, so that its timers do not freeze.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from features.event import SECONDS_PER_DAY, PositionedEvent


def day_of(ts: float) -> int:
    """The UTC day index of an epoch time."""
    return int(ts // SECONDS_PER_DAY)


@dataclass(slots=True)
class LanePlan:
    """A partition's fresh events of one batch, in offset order, with their watermarks."""

    partition: int
    events: list[PositionedEvent] = field(default_factory=list)
    before: list[float | None] = field(default_factory=list)
    """The watermark before each event (None: the partition had no event before it)."""
    crossed: list[tuple[int, ...]] = field(default_factory=list)
    """The days whose end each event's watermark is the first to reach."""
    newest: list[float] = field(default_factory=list)
    """The partition's newest event time once each event is counted."""


class PartitionClock:
    """Committed newest event time and offset per partition, and the watermarks derived from them."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        lateness_seconds: float,
        idle_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.key = f"{prefix}:wm"
        self.lateness = lateness_seconds
        self._idle_seconds = idle_seconds
        self._clock = clock
        self.newest: dict[int, float] = {}
        self.through: dict[int, int] = {}
        self._loaded: set[int] = set()
        self.last_event_wall: dict[int, float] = {}

    async def ensure(self, partitions: Iterable[int]) -> None:
        """Load the committed positions of partitions not seen yet (one round trip)."""
        wanted = sorted(set(partitions) - self._loaded)
        if not wanted:
            return
        fields = [f for p in wanted for f in (str(p), f"{p}:o")]
        values = await self._client.hmget(self.key, fields)
        now = self._clock()
        for i, partition in enumerate(wanted):
            newest, offset = values[2 * i], values[2 * i + 1]
            if newest is not None:
                self.newest[partition] = float(newest)
            if offset is not None:
                self.through[partition] = int(offset)
            self._loaded.add(partition)
            self.last_event_wall.setdefault(partition, now)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is known of ``partitions`` (revoked: their next owner loads them again)."""
        for partition in partitions:
            self._loaded.discard(partition)
            self.newest.pop(partition, None)
            self.through.pop(partition, None)
            self.last_event_wall.pop(partition, None)

    def plan(
        self, partition: int, events: Sequence[PositionedEvent]
    ) -> tuple[LanePlan, list[PositionedEvent]]:
        """The fresh events of ``partition`` with their watermarks, and the redelivered ones."""
        through = self.through.get(partition, -1)
        newest = self.newest.get(partition)
        lane = LanePlan(partition)
        redelivered = []
        for positioned in events:
            if positioned.offset <= through:
                redelivered.append(positioned)
                continue
            before = None if newest is None else newest - self.lateness
            newest = positioned.event.ts if newest is None else max(newest, positioned.event.ts)
            at = newest - self.lateness
            lane.events.append(positioned)
            lane.before.append(before)
            lane.crossed.append(crossed_days(before, at))
            lane.newest.append(newest)
        return lane, redelivered

    def advance(self, partition: int, newest: float, through: int) -> None:
        """Record that ``partition`` was committed up to offset ``through``, newest time ``newest``."""
        self.newest[partition] = newest
        self.through[partition] = through
        self.last_event_wall[partition] = self._clock()

    def queue_positions(self, pipe: Any, positions: Mapping[int, tuple[float, int]]) -> None:
        """Add to a commit pipeline: partition -> (newest event time, offset) committed (one HSET)."""
        mapping: dict[str, str] = {}
        for partition, (newest, offset) in positions.items():
            mapping[str(partition)] = repr(float(newest))
            mapping[f"{partition}:o"] = str(offset)
        if mapping:
            pipe.hset(self.key, mapping=mapping)

    async def furthest_newest(self) -> float | None:
        """The newest event time any partition committed or holds (read from Redis: all workers')."""
        stored = await self._client.hgetall(self.key)
        values = [float(v) for k, v in stored.items() if not _bytes(k).endswith(b":o")]
        return max(values, default=None)

    async def hold(self, newest: Mapping[int, float]) -> None:
        """Record the newest event time of each partition's held events (``<p>:h``): an idle
        partition then lets the others get that far (``SegmentPipeline.release_idle``)."""
        if newest:
            await self._client.hset(self.key, mapping={f"{p}:h": repr(float(ts)) for p, ts in newest.items()})

    def watermark(self, partition: int) -> float | None:
        """The committed watermark of ``partition`` (None before its first event)."""
        newest = self.newest.get(partition)
        return None if newest is None else newest - self.lateness

    def tick_watermark(self, partition: int, pending: float | None = None) -> float | None:
        """How far time has moved for ``partition``'s timers: the watermark (or ``pending``, the
        watermark of an event waiting to be processed, when later), plus the idle advance.

        Once the partition has had no event for ``idle_seconds`` of wall-clock time, event time
        advances with the wall clock beyond the watermark, so that a quiet partition's labels
        and timers do not freeze. This is the one decision input that depends on the clock.
        """
        watermark = self.watermark(partition)
        if pending is not None and (watermark is None or pending > watermark):
            watermark = pending
        if watermark is None:
            return None
        now = self._clock()
        idle = now - self.last_event_wall.get(partition, now)
        return watermark + max(0.0, idle - self._idle_seconds)

    def idle(self, partition: int) -> bool:
        """Whether ``partition`` has had no event for ``idle_seconds`` of wall-clock time."""
        now = self._clock()
        return now - self.last_event_wall.get(partition, now) >= self._idle_seconds


def crossed_days(before: float | None, at: float) -> tuple[int, ...]:
    """The days D whose end, (D + 1) days, a watermark moving from ``before`` to ``at`` reaches.

    A partition's first event crosses only the day before its watermark's day: its population
    was empty at the end of every earlier day (``engine.snapshots`` reads missing days so).
    """
    last = day_of(at) - 1
    if before is None:
        return (last,)
    first = day_of(before)  # the end of day(before) - 1 was reached already
    return tuple(range(first, last + 1))


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
