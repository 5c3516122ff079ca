"""The set-up of ``segflow bench``: workload, topics, machine facts, clean-up of keys and topics."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import platform
import re
import subprocess
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from engine.codecs import encode_msgpack
from engine.kafka_clients import kafka_options
from engine.redis_clients import redis_auth
from engine.settings import Settings
from engine.stack import kafka as kafka_server
from engine.stack import manager
from engine.topics import start_or_close, topic_partitions
from features.client import redact


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
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", linger_ms=5)
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
    """What the numbers were measured on, and the local Kafka broker's pid (None if not found).

    The servers are those of the local stack (``segflow stack status``); when this checkout's
    stack dir has no pid files (a stack started from another checkout), the servers that
    answer on the configured ports are used and found by the port they listen on.
    """
    status = manager.status(settings)
    kafka, redis_server = status.server("kafka"), status.server("redis")
    if kafka is not None and kafka.healthy and redis_server is not None and redis_server.healthy:
        kafka_pid, kafka_version, redis_version = kafka.pid, kafka.version, redis_server.version
        found = "pid files of " + str(settings.stack_dir)
    else:
        kafka_pid, kafka_version, redis_version = _servers_by_port(settings)
        found = "listening ports"
    facts = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kafka_version": kafka_version,
        "redis_version": redis_version,
        "aiokafka": version("aiokafka"),
        "faust_streaming": version("faust-streaming"),
        "servers_found_by": found,
        "code": code_facts(),
    }
    return facts, kafka_pid


def code_facts() -> dict[str, str | None]:
    """Which segflow the run measured: the checkout its ``engine`` package (and so its workers,
    started the same way) comes from, and that checkout's commit (``+dirty``: with changes)."""
    import engine

    root = Path(engine.__file__).resolve().parent.parent
    try:
        revision = _git(root, "rev-parse", "--short=12", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"path": str(root), "revision": None}
    return {"path": str(root), "revision": revision + ("+dirty" if dirty else "")}


def _git(root: Path, *args: str) -> str:
    command = ["git", "-C", str(root), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout.strip()


def _servers_by_port(settings: Settings) -> tuple[int | None, str, str]:
    """Broker pid and version, Redis version, of the servers answering on the configured ports."""
    port = int(settings.kafka_bootstrap.rsplit(":", 1)[-1])
    if kafka_server.probe(port) is None:
        raise ValueError(
            f"Kafka is not answering on {settings.kafka_bootstrap}: start the stack with `segflow stack up`"
        )
    client = redis_client(settings)
    redis_version = "cluster"
    if client is not None:
        try:
            redis_version = str(client.info("server")["redis_version"])
        except redis.RedisError:
            raise ValueError(
                f"Redis is not answering at {redact(settings.redis_url)}: "
                "start the stack with `segflow stack up`"
            ) from None
        finally:
            client.close()
    pid = _listener_pid(port)
    return pid, _kafka_version_of(pid) or kafka_server.pinned_version(), redis_version


def _listener_pid(port: int) -> int | None:
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    return None


def _kafka_version_of(pid: int | None) -> str | None:
    """The broker's version from the kafka jar on its class path."""
    if pid is None:
        return None
    with contextlib.suppress(psutil.Error, OSError, ValueError):
        cmdline = psutil.Process(pid).cmdline()
        classpath = cmdline[cmdline.index("-cp") + 1]
        for entry in classpath.split(os.pathsep):
            folder = Path(entry.removesuffix("*"))
            for jar in sorted(folder.glob("kafka_*-*.jar")) if folder.is_dir() else []:
                found = re.fullmatch(r"kafka_[0-9.]+-([0-9][^-]*)\.jar", jar.name)
                if found:
                    return found.group(1)
    return None


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
    if "+cluster://" in settings.redis_url:
        return None
    auth = redis_auth(settings)
    tls = settings.redis_url.startswith("rediss:") and auth.ssl_ca_certs
    tls_kwargs = {"ssl_ca_certs": auth.ssl_ca_certs} if tls else {}
    login = {"username": auth.username or None, "password": auth.password or None}
    return redis.Redis.from_url(settings.redis_url, **login, **tls_kwargs)


async def records_in_topic(settings: Settings) -> int:
    """Records in the events topic now (its log starts at 0: the bench never deletes records)."""
    topic = settings.events_topic
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def delete_topics(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix``; return their names."""
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=30_000)
    await start_or_close(admin)
    try:
        names = sorted(name for name in await admin.list_topics() if name.startswith(prefix))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()
