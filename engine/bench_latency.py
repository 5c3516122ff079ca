"""Latency of ``segflow bench``: from sending an event to reading the segment change it causes."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.bench_measure import percentile
from engine.codecs import encode_msgpack
from engine.settings import Settings
from engine.topics import topic_partitions


@dataclass(slots=True)
class LatencyResult:
    """Per-event latency of segment changes, in milliseconds, and how many were matched."""

    sent: int
    matched: int
    end_to_end_ms: list[float]
    to_worker_produce_ms: list[float]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sent": self.sent, "matched": self.matched}
        for name, values in (
            ("end_to_end", self.end_to_end_ms),
            ("to_worker_produce", self.to_worker_produce_ms),
        ):
            ordered = sorted(values)
            out[name] = {f"p{p}": percentile(ordered, p) for p in (50, 95, 99)} | {
                "max": ordered[-1] if ordered else math.nan
            }
        return out


async def measure_latency(
    settings: Settings, tag: str, count: int, rate: float, timeout_s: float
) -> LatencyResult:
    """Send ``count`` first events of new customers at ``rate``/s; time each one's segment change.

    End to end: this process's wall clock just before ``send`` to the wall clock when the change
    record came out of ``getmany`` here. To worker produce: the input record's Kafka timestamp
    (CreateTime, stamped by our producer) to the change record's (stamped by the worker's).
    """
    partitions = await topic_partitions(settings, settings.changes_topic)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=0)
    await reader.start()
    await producer.start()
    seen: dict[str, tuple[float, int]] = {}
    finished = asyncio.Event()

    async def read() -> None:
        while not finished.is_set():
            batches = await reader.getmany(timeout_ms=100, max_records=1000)
            now = time.time()
            for records in batches.values():
                for record in records:
                    cause = msgpack.unpackb(record.value, raw=False).get("cause") or {}
                    event_id = cause.get("event_id")
                    if isinstance(event_id, str) and event_id.startswith(tag + "-"):
                        seen.setdefault(event_id, (now, record.timestamp))
            if len(seen) >= count:
                finished.set()

    try:
        assigned = [TopicPartition(settings.changes_topic, p) for p in partitions]
        reader.assign(assigned)
        await reader.seek_to_end(*assigned)
        for tp in assigned:
            await reader.position(tp)
        reading = asyncio.create_task(read())
        sent: dict[str, tuple[float, asyncio.Future[Any]]] = {}
        start = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            customer = f"{tag}-{i:06d}"
            event = {"v": 1, "event_id": f"{customer}-e", "customer_id": customer, "type": "login"}
            event |= {"ts": int(time.time() * 1000), "attrs": {"channel": "bench"}}
            wall = time.time()
            future = await producer.send(settings.events_topic, encode_msgpack(event), key=customer.encode())
            sent[event["event_id"]] = (wall, future)
        metadata = dict(zip(sent, await asyncio.gather(*(f for _, f in sent.values())), strict=True))
        try:
            await asyncio.wait_for(finished.wait(), timeout_s)
        except TimeoutError:
            finished.set()
        await reading
    finally:
        await producer.stop()
        await reader.stop()
    end_to_end, to_worker = [], []
    for event_id, (wall, _) in sent.items():
        if event_id in seen:
            consumed_wall, change_ts = seen[event_id]
            end_to_end.append((consumed_wall - wall) * 1000)
            to_worker.append(float(change_ts - metadata[event_id].timestamp))
    return LatencyResult(count, len(end_to_end), end_to_end, to_worker)
