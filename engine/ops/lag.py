"""Consumer lag of a group, from the broker: committed offset, log end offset, lag, rates.

What ``segflow lag`` prints and what a worker's ``segflow_consumer_lag`` gauge shows. The
committed offsets come from the group's coordinator (``OffsetFetch`` through aiokafka's admin
client), the end offsets from the partition leaders (``ListOffsets`` through a consumer that
joins no group), so the figures are the broker's, as ``kafka-consumer-groups.sh --describe``
shows them. The lag of a partition is its log end offset minus the group's committed offset
(the offset of the next record to read); a partition the group never committed counts from its
log start offset, where a consumer with ``auto_offset_reset=earliest`` (every segflow group)
begins. Rates need two samples: the consumption rate is how fast the committed offset moved,
the production rate how fast the end offset did, and the time to catch up is the lag over the
difference (None when unknown, infinite when the group does not gain on the producers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """One partition's offsets at one moment (``committed`` None: the group never committed)."""

    topic: str
    partition: int
    committed: int | None
    end: int
    start: int = 0
    """The log start offset (only read when ``committed`` is None)."""

    @property
    def lag(self) -> int:
        """Records after the group's position (the committed offset, else the log start)."""
        position = self.start if self.committed is None else self.committed
        return max(0, self.end - position)


@dataclass(frozen=True, slots=True)
class LagSample:
    """Every partition's offsets, read at ``at`` (``time.monotonic()`` seconds)."""

    at: float
    partitions: tuple[PartitionOffsets, ...]


@dataclass(frozen=True, slots=True)
class LagRow:
    """One line of ``segflow lag``: offsets, lag and (from two samples) rates and catch-up time."""

    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int
    consume_rate: float | None
    """Records per second the committed offset advanced between the two samples."""
    produce_rate: float | None
    """Records per second the end offset advanced between the two samples."""
    catch_up_seconds: float | None


def catch_up_seconds(lag: int, consume_rate: float | None, produce_rate: float | None) -> float | None:
    """Seconds until the lag is 0 at these rates: 0 when there is none, None when the rates are
    unknown, ``inf`` when the group does not consume faster than the producers produce."""
    if lag <= 0:
        return 0.0
    if consume_rate is None or produce_rate is None:
        return None
    gain = consume_rate - produce_rate
    return lag / gain if gain > 0 else math.inf


def lag_rows(current: LagSample, previous: LagSample | None = None) -> list[LagRow]:
    """The rows of ``current``, with rates over the time since ``previous`` (when given)."""
    before = {(p.topic, p.partition): p for p in previous.partitions} if previous is not None else {}
    elapsed = current.at - previous.at if previous is not None else 0.0
    rows = []
    for now in sorted(current.partitions, key=lambda p: (p.topic, p.partition)):
        then = before.get((now.topic, now.partition))
        consume = produce = None
        if then is not None and elapsed > 0:
            produce = max(0, now.end - then.end) / elapsed
            consume = 0.0  # never committed: the group made no progress there
            if now.committed is not None:
                position = then.start if then.committed is None else then.committed
                consume = max(0, now.committed - position) / elapsed
        lag = now.lag
        rows.append(
            LagRow(
                now.topic,
                now.partition,
                now.committed,
                now.end,
                lag,
                consume,
                produce,
                catch_up_seconds(lag, consume, produce),
            )
        )
    return rows


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, partitions: Sequence[TopicPartition] | None = None
) -> dict[TopicPartition, int | None]:
    """The group's committed offsets (None: none committed), of ``partitions`` or of all it has."""
    found = await admin.list_consumer_group_offsets(
        group, partitions=list(partitions) if partitions else None
    )
    offsets: dict[TopicPartition, int | None] = {
        tp: (meta.offset if meta.offset >= 0 else None) for tp, meta in found.items()
    }
    for tp in partitions or ():
        offsets.setdefault(tp, None)
    return offsets


async def topic_partitions(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (those that exist)."""
    names = sorted(set(topics))
    if not names:
        return []
    described = await admin.describe_topics(names)
    return sorted(
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if not t.get("error_code")
        for p in t["partitions"]
    )


async def sample(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    group: str,
    partitions: Sequence[TopicPartition] | None = None,
) -> LagSample:
    """The group's offsets now: of ``partitions``, else of every partition of the topics it committed."""
    committed = await committed_offsets(admin, group, partitions)
    if partitions is None:
        for tp in await topic_partitions(admin, {tp.topic for tp in committed}):
            committed.setdefault(tp, None)
    return await offsets_sample(consumer, committed)


async def offsets_sample(
    consumer: AIOKafkaConsumer, committed: Mapping[TopicPartition, int | None]
) -> LagSample:
    """Read the end (and, where nothing is committed, start) offsets of ``committed``'s partitions."""
    tps = sorted(committed)
    if not tps:
        return LagSample(time.monotonic(), ())
    ends = await consumer.end_offsets(tps)
    at = time.monotonic()
    uncommitted = [tp for tp in tps if committed[tp] is None]
    starts = await consumer.beginning_offsets(uncommitted) if uncommitted else {}
    return LagSample(
        at,
        tuple(
            PartitionOffsets(tp.topic, tp.partition, committed[tp], ends[tp], starts.get(tp, 0)) for tp in tps
        ),
    )
