"""Latency of ``segflow bench``: from sending an event to reading the segment change it causes.

The paced stream is the simulated workload's continuation (the events that follow the
throughput workload in event time), sent to the topic that a caught-up group of workers reads.
Only events that change a segment can be timed (about one in ten); the others are paced
along with them, so the worker handles the same mix of events as in the throughput window and
an offered load of x% of that rate means what it says.

Two ways of building this stream measured something else than the worker under load, and
are avoided here: events stamped with today's wall clock next to a workload whose event time
ended months earlier moved every partition's watermark by months, so the worker spent seconds
moving on every known customer (labels maturing, timed segments) before the paced events;
and a stream made only of first events of new customers costs the worker about four times a
workload event each (every one emits a segment change), so 25% of the workload rate was
already about the worker's capacity for it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.codecs import encode_msgpack
from engine.kafka_clients import kafka_options
from engine.ops.bench.measure import percentile
from engine.settings import Settings
from engine.topics import topic_partitions

Record = tuple[bytes, bytes]  # (key, msgpack value) of one event
POLL_SECONDS = 0.05


@dataclass(slots=True)
class LatencyResult:
    """Per-event latency of segment changes, in milliseconds, and how the stream was paced."""

    offered_per_s: float
    sent: int
    send_seconds: float
    matched: int
    end_to_end_ms: list[float]
    to_worker_produce_ms: list[float]

    @property
    def achieved_per_s(self) -> float:
        """The rate the events really went out at (first send to last send)."""
        if self.sent < 2 or self.send_seconds <= 0:
            return math.nan
        return (self.sent - 1) / self.send_seconds

    def summary(self) -> dict[str, Any]:
        """Counts, rates and p50/p95/p99/max of both latencies."""
        out: dict[str, Any] = {
            "offered_per_s": self.offered_per_s,
            "achieved_per_s": self.achieved_per_s,
            "sent": self.sent,
            "matched": self.matched,
            "send_seconds": self.send_seconds,
        }
        for name, values in (
            ("end_to_end", self.end_to_end_ms),
            ("to_worker_produce", self.to_worker_produce_ms),
        ):
            ordered = sorted(values)
            out[name] = {f"p{p}": percentile(ordered, p) for p in (50, 95, 99)} | {
                "max": ordered[-1] if ordered else math.nan
            }
        return out


def new_customer_events(tag: str, count: int, ts_ms: int) -> list[Record]:
    """First events (a login) of ``count`` new customers at event time ``ts_ms``: each changes a segment."""
    records = []
    for i in range(count):
        customer = f"{tag}-{i:06d}"
        event = {"v": 1, "event_id": f"{customer}-e", "customer_id": customer, "type": "login"}
        event |= {"ts": ts_ms, "attrs": {"channel": "bench"}}
        records.append((customer.encode(), encode_msgpack(event)))
    return records


def restamped(records: Sequence[Record], first_ts_ms: int, rate: float) -> list[Record]:
    """``records`` with event times that advance at the wall-clock pace of a stream at ``rate``/s.

    A live stream's event time moves with the wall clock; the simulated workload's moves months
    in seconds, which would make the worker spend the latency phase moving every customer on in
    time (labels maturing, timed segments) rather than handling the paced events.
    """
    out = []
    for i, (key, value) in enumerate(records):
        event = msgpack.unpackb(value, raw=False)
        event["ts"] = first_ts_ms + round(i * 1000 / rate)
        out.append((key, msgpack.packb(event)))
    return out


def event_time_ms(record: Record) -> int:
    """The event time of a workload record."""
    return int(msgpack.unpackb(record[1], raw=False)["ts"])


async def measure_latency(
    settings: Settings, records: Sequence[Record], rate: float, done: Callable[[], bool], timeout_s: float
) -> LatencyResult:
    """Send ``records`` at ``rate``/s; time each one's first segment change.

    ``done`` tells when the workers have handled every record sent (their counters); then the
    changes topic is read to its end and the events without a change are left untimed. End to
    end: this process's wall clock just before ``send`` to the wall clock when the change record
    came out of ``getmany`` here. To worker produce: the input record's Kafka timestamp
    (CreateTime, stamped by our producer) to the change record's (stamped by the worker's), so it
    leaves out this process's reading of the changes.
    """
    ids = [str(msgpack.unpackb(value, raw=False)["event_id"]) for _, value in records]
    wanted = set(ids)
    partitions = await topic_partitions(settings, settings.changes_topic)
    reader = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False)
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", linger_ms=0)
    await reader.start()
    await producer.start()
    seen: dict[str, tuple[float, int]] = {}
    finished = asyncio.Event()
    assigned = [TopicPartition(settings.changes_topic, p) for p in partitions]
    reading: asyncio.Task[None] | None = None

    async def read() -> None:
        while not finished.is_set():
            batches = await reader.getmany(timeout_ms=100, max_records=1000)
            now = time.time()
            for batch in batches.values():
                for record in batch:
                    cause = msgpack.unpackb(record.value, raw=False).get("cause") or {}
                    event_id = cause.get("event_id")
                    if event_id in wanted:
                        seen.setdefault(event_id, (now, record.timestamp))

    try:
        reader.assign(assigned)
        await reader.seek_to_end(*assigned)
        for tp in assigned:
            await reader.position(tp)
        reading = asyncio.create_task(read())
        sent: list[tuple[float, asyncio.Future[Any]]] = []
        start = time.perf_counter()
        for i, (key, value) in enumerate(records):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sent.append((time.time(), await producer.send(settings.events_topic, value, key=key)))
        send_seconds = time.perf_counter() - start
        metadata = await asyncio.gather(*(future for _, future in sent))
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(done) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
        ends = await reader.end_offsets(assigned)
        while time.monotonic() < deadline and [
            tp for tp, end in ends.items() if await reader.position(tp) < end
        ]:
            await asyncio.sleep(POLL_SECONDS)
        finished.set()
        await reading
    finally:
        finished.set()
        if reading is not None and not reading.done():
            reading.cancel()
        await producer.stop()
        await reader.stop()
    end_to_end, to_worker = [], []
    for event_id, (wall, _), meta in zip(ids, sent, metadata, strict=True):
        if event_id in seen:
            consumed_wall, change_ts = seen[event_id]
            end_to_end.append((consumed_wall - wall) * 1000)
            to_worker.append(float(change_ts - meta.timestamp))
    return LatencyResult(rate, len(records), send_seconds, len(end_to_end), end_to_end, to_worker)
