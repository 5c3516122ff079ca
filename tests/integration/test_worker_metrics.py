"""Worker metrics, readiness and ``segflow lag`` against the real broker, Redis and worker processes.

* ``segflow lag`` prints what Kafka's own consumer-group tool prints for a group with lag;
* a worker's ``/segflow/metrics`` counts every event once by type and outcome, shows a transition
  count per family and segment equal to the change records on the changes topic, and a consumer
  lag of 0 once it caught up;
* ``/segflow/ready`` answers 503 with a Redis reason while Redis is stopped (the stack's own
  script), the lag gauge then shows exactly the events produced meanwhile, and both recover once
  Redis is started again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from helpers import ready, wait_until
from redis.asyncio import Redis

from engine.cli.io import read_to_end
from engine.codecs import decode_msgpack
from engine.reports import segment_sizes
from engine.settings import Settings
from engine.stack import redis as redis_server
from engine.topics import ensure_topics, start_or_close, topic_specs
from engine.worker_process import (
    free_port,
    metrics_text,
    parse_samples,
    read_metrics,
    settings_env,
    start_worker,
    stop_worker,
)
from models.population import PopulationConfig
from models.simulate import generate_events

pytestmark = pytest.mark.integration

GROUP_TOOL_CLASS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


async def produce(
    settings: Settings, records: list[tuple[bytes | None, bytes]], partition: int | None = None
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await start_or_close(producer)
    try:
        sent = [await producer.send(settings.events_topic, v, key=k, partition=partition) for k, v in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def clean_up(settings: Settings) -> None:
    """Delete the test's topics and Redis keys."""
    client = Redis.from_url(settings.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await start_or_close(admin)
    try:
        existing = set(await admin.list_topics())
        await admin.delete_topics([s.name for s in topic_specs(settings) if s.name in existing])
    finally:
        await admin.close()


def group_tool(settings: Settings) -> list[str]:
    """Kafka's consumer-group tool: kafka-consumer-groups.sh when installed, else the class it runs."""
    script = shutil.which("kafka-consumer-groups.sh") or next(
        (str(p) for p in Path(settings.stack_dir).rglob("kafka-consumer-groups.sh")), None
    )
    if script:
        return [script]
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java to run Kafka's consumer-group tool")
    return [java, "-cp", str(Path(settings.stack_dir) / "kafka-libs" / "*"), GROUP_TOOL_CLASS]


def describe_group(settings: Settings, group: str) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(topic, partition) -> (CURRENT-OFFSET, LOG-END-OFFSET, LAG) as Kafka's tool prints them."""
    command = [
        *group_tool(settings),
        "--bootstrap-server",
        settings.kafka_bootstrap,
        "--describe",
        "--group",
        group,
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next(line for line in lines if line[:2] == ["GROUP", "TOPIC"])
    col = {name: i for i, name in enumerate(header)}
    rows = {}
    for line in lines:
        if line[0] == group and len(line) >= len(header) - 3:
            key = (line[col["TOPIC"]], int(line[col["PARTITION"]]))
            rows[key] = (line[col["CURRENT-OFFSET"]], line[col["LOG-END-OFFSET"]], line[col["LAG"]])
    return rows


def test_segflow_lag_agrees_with_kafkas_group_tool(isolated_settings: Settings) -> None:
    settings = isolated_settings
    group = f"{settings.app_id}.deliver"  # any group, not only the workers'
    asyncio.run(ensure_topics(settings))
    try:
        for partition in range(settings.events_partitions):
            asyncio.run(produce(settings, [(b"k", b"x")] * (10 + 5 * partition), partition))

        async def commit() -> None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
            )
            await start_or_close(consumer)
            try:
                tps = [TopicPartition(settings.events_topic, p) for p in range(settings.events_partitions)]
                consumer.assign(tps)
                await consumer.commit({tp: 3 * tp.partition for tp in tps})  # partition 0: nothing consumed
            finally:
                await consumer.stop()

        asyncio.run(commit())
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SEGFLOW_")}
        env.update(settings_env(settings))
        run = subprocess.run(
            [sys.executable, "-m", "engine", "lag", "--group", group, "--interval", "0", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        ours = {(p["topic"], p["partition"]): p for p in json.loads(run.stdout)["partitions"]}
        theirs = describe_group(settings, group)
        assert (
            set(ours)
            == set(theirs)
            == {(settings.events_topic, p) for p in range(settings.events_partitions)}
        )
        for key, (current, end, lag) in theirs.items():
            row = ours[key]
            assert (str(row["committed"]), str(row["end"]), str(row["lag"])) == (current, end, lag), key
        assert all(row["lag"] > 0 for row in ours.values())
        assert ours[(settings.events_topic, 3)]["lag"] == 25 - 9
    finally:
        asyncio.run(clean_up(settings))


def samples_of(settings: Settings, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric ``name`` by their sorted label pairs (empty when unreachable)."""
    text = metrics_text(settings.web_port, settings.web_secret)
    if text is None:
        return {}
    return {tuple(sorted(s.labels.items())): s.value for s in parse_samples(text) if s.name == name}


def lag_of(settings: Settings) -> dict[int, float]:
    return {int(dict(k)["partition"]): v for k, v in samples_of(settings, "segflow_consumer_lag").items()}


async def read_changes(settings: Settings) -> list[dict[str, Any]]:
    """Every record on the changes topic, from the beginning to its end now."""
    found: list[dict[str, Any]] = []
    await read_to_end(
        settings, settings.changes_topic, on_record=lambda r: found.append(decode_msgpack(r.value))
    )
    return found


def worker_settings(isolated: Settings) -> Settings:
    # No wall-clock advance while the test looks (the stream's event time is in the past).
    return isolated.model_copy(update={"web_port": free_port(), "idle_advance_seconds": 3600.0})


def stream(customers: int, days: int, seed: int) -> list[tuple[bytes, bytes]]:
    events = generate_events(PopulationConfig(customers=customers, days=days, seed=seed))
    return [(e["customer_id"].encode(), bytes(msgpack.packb(e))) for e in events]


def test_metrics_count_events_and_match_the_changes_topic(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = worker_settings(isolated_settings)
    records = stream(40, 21, seed=5)
    malformed = [(b"c-x", b"{not json"), (b"c-y", bytes(msgpack.packb({"v": 1, "type": "teleport"})))]
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, records + malformed))
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        total = len(records) + len(malformed)

        def done() -> bool:
            counts = read_metrics(settings.web_port, settings.web_secret)
            applied = counts.get("segflow_events_applied_total", 0)
            return applied + counts.get("segflow_events_dead_lettered_total", 0) >= total

        assert wait_until(done, 50, every=0.5), f"worker did not finish; see {tmp_path / 'worker.log'}"
        # caught up: every partition's committed offset at its end, as the broker says
        assert wait_until(lambda: lag_of(settings) == dict.fromkeys(range(4), 0.0), 20), lag_of(settings)

        def settled() -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]] | None:
            before = read_metrics(settings.web_port, settings.web_secret).get(
                "segflow_segment_changes_sent_total"
            )
            on_topic = Counter((c["family"], c["to"] or "") for c in asyncio.run(read_changes(settings)))
            counted = samples_of(settings, "segflow_segment_changes_total")
            after = read_metrics(settings.web_port, settings.web_secret).get(
                "segflow_segment_changes_sent_total"
            )
            if before != after or before != sum(on_topic.values()):
                return None  # a tick delivered more meanwhile: look again
            by_label = Counter(
                {(dict(k)["family"], dict(k)["to_segment"]): int(v) for k, v in counted.items()}
            )
            return on_topic, by_label

        seen: list[tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]] = []
        assert wait_until(lambda: (found := settled()) is not None and not seen.append(found), 20)
        on_topic, by_label = seen[-1]
        assert on_topic and on_topic == by_label
        events = samples_of(settings, "segflow_events_total")
        by_outcome: Counter[str] = Counter()
        for labels, value in events.items():
            by_outcome[dict(labels)["outcome"]] += int(value)
        assert sum(by_outcome.values()) == total
        assert events[(("outcome", "dead_lettered"), ("type", "invalid"))] == len(malformed)
        purchases = sum(1 for _, v in records if msgpack.unpackb(v)["type"] == "purchase")
        applied_purchases = events[(("outcome", "applied"), ("type", "purchase"))]
        late_purchases = events.get((("outcome", "too_late"), ("type", "purchase")), 0)
        assert applied_purchases + late_purchases == purchases
        reasons = {
            dict(k)["reason"]: v for k, v in samples_of(settings, "segflow_dead_letters_total").items()
        }
        assert reasons == {"bad_json": 1, "missing_field": 1}  # the second has no event_id
        assert samples_of(settings, "segflow_batch_seconds_count")[()] > 0
        assert samples_of(settings, "segflow_redis_call_seconds_count")[()] > 0
        assert samples_of(settings, "segflow_ingest_to_emit_seconds_count")[()] > 0
        # the segment sizes are those of `segflow segments` (the same aggregates in Redis)
        report = asyncio.run(segment_sizes(settings))["families"]
        expected = {(f, s): float(row["customers"]) for f, rows in report.items() for s, row in rows.items()}
        assert sum(expected.values()) > 0

        def sizes() -> dict[tuple[str, str], float]:
            found = samples_of(settings, "segflow_segment_size")
            return {(dict(k)["family"], dict(k)["segment"]): v for k, v in found.items()}

        assert wait_until(lambda: sizes() == expected, 15), (sizes(), expected)
    finally:
        stop_worker(worker)
        asyncio.run(clean_up(settings))


def test_readiness_follows_redis_and_lag_counts_what_waits(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = worker_settings(isolated_settings)
    records = stream(10, 7, seed=9)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, records))
    worker = start_worker(settings, tmp_path / "worker.log")
    stopped = False
    try:
        assert wait_until(lambda: ready(settings)[0] == 200, 40), ready(settings)
        status, body = ready(settings)
        assert (
            status == 200
            and body["ready"] is True
            and body["reasons"] == []
            and body["assigned_partitions"] == [0, 1, 2, 3]
        )
        assert wait_until(lambda: lag_of(settings) == dict.fromkeys(range(4), 0.0), 40), lag_of(settings)

        redis_server.down(settings)
        stopped = True
        assert wait_until(lambda: ready(settings)[0] == 503, 15)
        status, body = ready(settings)
        assert (
            status == 503 and body["ready"] is False and any(r.startswith("redis: ") for r in body["reasons"])
        ), body
        # Kafka still answers and the partitions stay assigned: Redis is the one reason
        assert len(body["reasons"]) == 1, body
        # what arrives now cannot be processed: the committed offsets stay where they are
        more = stream(10, 7, seed=10)[:12]
        asyncio.run(produce(settings, more))
        assert wait_until(lambda: sum(lag_of(settings).values()) == len(more), 15), lag_of(settings)
        time.sleep(0.5)

        redis_server.up(settings)
        stopped = False
        assert wait_until(lambda: ready(settings)[0] == 200, 20), ready(settings)
        assert wait_until(lambda: lag_of(settings) == dict.fromkeys(range(4), 0.0), 30), lag_of(settings)
    finally:
        if stopped:
            redis_server.up(settings)
        stop_worker(worker)
        asyncio.run(clean_up(settings))
