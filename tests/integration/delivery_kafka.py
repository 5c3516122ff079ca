"""Kafka side of the delivery tests: the test's settings and topics, producing actions, running
``segflow deliver`` (in this process or as a child process), and reading back the dead-letter
topic and the group's committed offsets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from engine.activation.actions import ActionDecision, action_id
from engine.activation.delivery.config import load_destinations
from engine.activation.delivery.counters import DeliveryCounters
from engine.activation.delivery.service import DeliveryService
from engine.cli.io import Record, read_to_end
from engine.codecs import decode_msgpack
from engine.settings import Settings
from engine.topics import ensure_topics, start_or_close, topic_partitions
from engine.worker_process import settings_env

SECRET = "test-secret"


def setup(isolated: Settings, tmp_path: Path, destinations: str, **settings: object) -> Settings:
    """The test's settings with its destinations file, fast retries, and its topics created."""
    path = tmp_path / "destinations.yaml"
    path.write_text(destinations)
    fast = {
        "destinations_file": path,
        "deliver_retry_base_seconds": 0.1,
        "deliver_retry_cap_seconds": 0.4,
        "deliver_max_attempts": 30,
        "commit_interval_seconds": 0.2,
        "deliver_web_port": 0,
        **settings,
    }
    s = isolated.model_copy(update=fast)
    asyncio.run(ensure_topics(s))
    return s


def webhook(url: str, extra: str = "", channel: str = "webhook") -> str:
    """A webhook destination's entry in a destinations file (``extra``: more indented lines)."""
    return f"{channel}:\n  kind: webhook\n  url: {url}\n  secret: {SECRET}\n{extra}"


def deliver_once(settings: Settings, timeout: float = 40.0) -> DeliveryCounters:
    """Run the delivery service in this process until the actions topic is drained."""
    destinations = load_destinations(settings.destinations_file)  # type: ignore[arg-type]
    service = DeliveryService(settings, destinations, once=True)
    return asyncio.run(asyncio.wait_for(service.run(), timeout))


def start_deliver(settings: Settings, log: Path, once: bool = True) -> subprocess.Popen[bytes]:
    """``segflow deliver`` in a child process with ``settings`` (and no other SEGFLOW_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}
    env.update(settings_env(settings))
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "engine", "deliver", *(["--once"] if once else [])],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def assert_all_committed(settings: Settings) -> None:
    """The group committed every partition of the actions topic to its end."""
    ends = asyncio.run(end_offsets(settings))
    assert asyncio.run(committed(settings)) == {p: end for p, end in ends.items() if end > 0}


def make_action(
    customer: str, n: int, channel: str = "webhook", decision: str = "send", **kw: Any
) -> ActionDecision:
    """The ``n``-th test action of ``customer``."""
    change_id = f"change-{customer}-{n}"
    fields: dict[str, Any] = {
        "action_id": action_id(customer, "winback", change_id),
        "customer_id": customer,
        "action": "winback",
        "channel": channel,
        "decision": decision,
        "change": {"change_id": change_id, "family": "churn_risk", "from": None, "to": "Likely to Churn"},
        "reason": f"score_churn=0.{80 + n} >= 0.7",
        "event_ts_ms": 1_700_000_000_000 + n,
        "send_ts_ms": 1_700_000_000_000 + n,
        "emitted_ts_ms": int(time.time() * 1000),
        "rules_version": "test",
        "features": {"recency_days": 30 + n},
        "label": "Likely to Churn",
        **kw,
    }
    return ActionDecision(**fields)


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) records to the actions topic, in order."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await start_or_close(producer)
    try:
        for key, value in records:
            await producer.send(settings.actions_topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def produce_actions(settings: Settings, actions: list[ActionDecision | tuple[bytes, bytes]]) -> None:
    """Produce actions (``encode()``, keyed by customer id) or raw (key, value) records."""
    records = [a if isinstance(a, tuple) else (a.customer_id.encode(), a.encode()) for a in actions]
    asyncio.run(produce(settings, records))


async def read_topic(settings: Settings, topic: str) -> list[Record]:
    """Every record of ``topic`` now (read without a group), in partition and offset order."""
    records: list[Record] = []
    await read_to_end(settings, topic, on_record=records.append, missing_ok=True)
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    """The actions dead-letter topic, decoded."""
    return [decode_msgpack(r.value) for r in await read_topic(settings, settings.actions_dlq_topic)]


async def end_offsets(settings: Settings) -> dict[int, int]:
    """The actions topic's end offset per partition."""
    topic = settings.actions_topic
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await start_or_close(consumer)
    try:
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def committed(settings: Settings) -> dict[int, int]:
    """The offsets ``segflow deliver``'s group committed on the actions topic (partition -> offset)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await start_or_close(admin)
    try:
        offsets = await admin.list_consumer_group_offsets(f"{settings.app_id}.deliver")
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == settings.actions_topic}
