"""The set-up of ``segflow bench``: workload, topics, machine facts, Redis clean-up."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import platform
import time
from importlib.metadata import version
from typing import Any

import psutil
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.codecs import encode_msgpack
from engine.settings import Settings
from engine.stack import manager
from engine.topics import topic_partitions


def build_workload(events: int, customers: int, seed: int) -> list[tuple[bytes, bytes]]:
    """The first ``events`` simulated events as (customer key, msgpack value) pairs."""
    from models.simulate import PopulationConfig, generate_events

    # About two events per active customer-day; the stream is lazy, so overshooting is free.
    days = max(7, math.ceil(events / customers))
    while True:
        config = PopulationConfig(customers=customers, days=days, seed=seed)
        stream = itertools.islice(generate_events(config), events)
        workload = [(wire["customer_id"].encode(), encode_msgpack(wire)) for wire in stream]
        if len(workload) >= events:
            return workload
        if days >= 3650:
            raise ValueError(
                f"{customers} customers make only {len(workload)} events in ten years; raise --customers"
            )
        days = min(3650, days * 2)


async def produce_workload(settings: Settings, workload: list[tuple[bytes, bytes]]) -> float:
    """Send the workload (acks=all) and return the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        pending = []
        for key, value in workload:
            pending.append(await producer.send(settings.events_topic, value=value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def delete_prefix(client: redis.Redis | None, prefix: str) -> int:
    """Delete every Redis key under ``<prefix>:``; return how many."""
    if client is None:
        return 0
    deleted, chunk = 0, []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        chunk.append(key)
        if len(chunk) >= 1000:
            deleted += client.unlink(*chunk)
            chunk.clear()
    if chunk:
        deleted += client.unlink(*chunk)
    return deleted


def machine_facts(settings: Settings) -> tuple[dict[str, Any], int | None]:
    """What the numbers were measured on, and the local Kafka broker's pid (None if not local)."""
    status = manager.status(settings)
    kafka, redis_server = status.server("kafka"), status.server("redis")
    for name, server in (("Kafka", kafka), ("Redis", redis_server)):
        if server is None or not server.healthy:
            raise ValueError(f"{name} of the local stack is not answering: start it with `segflow stack up`")
    assert kafka is not None and redis_server is not None
    facts = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kafka_version": kafka.version,
        "redis_version": redis_server.version,
        "aiokafka": version("aiokafka"),
        "faust_streaming": version("faust-streaming"),
    }
    return facts, kafka.pid


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def redis_client(settings: Settings) -> redis.Redis | None:
    """A plain client for INFO and cleanup (None for a Redis Cluster URL: no server-wide stats)."""
    if settings.redis_url.startswith("redis+cluster://"):
        return None
    return redis.Redis.from_url(settings.redis_url)


async def records_in_topic(settings: Settings) -> int:
    """Records in the events topic now (its log starts at 0: the bench never deletes records)."""
    topic = settings.events_topic
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()
