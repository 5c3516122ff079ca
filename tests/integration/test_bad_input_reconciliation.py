"""100,000 records, good and bad, through a real worker: every one is accounted for.

A seeded generator writes valid events of every type for 300 customers, copies of some of them
re-sent at later offsets, too-late events, one record of about 1 MiB and every kind of broken
record of ``tests/bad_input.py``, and counts what it made of each class. A worker process then
consumes them from the real broker into the real Redis; its ``/segflow/metrics`` must show

    applied + dead_lettered + too_late + duplicate == 100,000

with each term the generator's own count, each dead-letter category its count, and the
dead-letter topic one letter per bad or late record, with its reason and raw bytes.

"Duplicate" in segflow means a redelivered offset (at or below the customer's applied offset,
``CustomerRecord.fresh``): an event re-sent at another offset is applied again, whatever its
event_id. So the re-sent copies count as applied, and the duplicates come from a second worker
that reads partition 0 again after its committed offset is rewound to 0: each record there that
reached a customer (applied or too late) is then a duplicate, each broken one a dead letter again.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from bad_input import DEFECTS, KEEP, envelope, pack
from determinism_runs import remove

from engine.cli.io import read_to_end
from engine.ops.metrics import dead_letter_category
from engine.settings import Settings
from engine.topics import ensure_topics, start_or_close
from engine.worker_process import free_port, read_metrics, start_worker, stop_worker
from features.event import EVENT_TYPES

pytestmark = pytest.mark.integration

TOTAL = 100_000
CUSTOMERS = 300
VALID, RESENT, LATE, BIG = 12_000, 1_000, 2_000, 1
START_MS = 1_767_225_600_000  # 2026-01-01
BIG_SIZE = 1_048_400  # as large as the producer sends; its dead letter would not fit whole
OUTCOMES = ("applied", "dead_lettered", "too_late", "duplicate")

Record = tuple[int, bytes | None, bytes, str]
"""(partition, key, value, expected: an outcome or a dead-letter category)."""


def partition_of(key: bytes, partitions: int) -> int:
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def generate(partitions: int, seed: int = 14) -> list[Record]:
    """The records in produce order, each with what must become of it."""
    rng = random.Random(seed)
    customers = [f"c{i:03d}" for i in range(CUSTOMERS)]
    first_seen: dict[str, int] = {}
    valid: list[Record] = []
    # Event time moves forward with the stream, 10 s an event (33 hours in all, within the 3 days
    # of lateness allowed): neither an event nor a re-sent copy of one is late by accident.
    for n in range(VALID):
        customer, ts = rng.choice(customers), START_MS + n * 10_000
        first_seen.setdefault(customer, ts)
        env = envelope(rng, rng.choice(EVENT_TYPES), customer, f"e{n}", ts)
        valid.append((partition_of(customer.encode(), partitions), customer.encode(), pack(env), "applied"))
    records = list(valid)
    records += [rng.choice(valid) for _ in range(RESENT)]  # the same bytes again: applied again
    for n in range(LATE):  # 60 days before the customer's first event: beyond the 3 days allowed
        customer = rng.choice(sorted(first_seen))
        env = envelope(rng, "login", customer, f"late{n}", first_seen[customer] - 60 * 86_400_000)
        records.append(
            (partition_of(customer.encode(), partitions), customer.encode(), pack(env), "too_late")
        )
    names = sorted(DEFECTS)
    bad: list[Record] = []
    for n in range(TOTAL - VALID - RESENT - LATE - BIG):
        category, broken = DEFECTS[names[n % len(names)]]
        customer = rng.choice(customers)
        env = envelope(rng, "purchase", customer, f"bad{n}", START_MS)
        key, value = broken(rng, env)
        key = customer.encode() if key == KEEP else key
        partition = partition_of(key, partitions) if key is not None else rng.randrange(partitions)
        bad.append((partition, key, value, category))
    bad.append((1, b"big", b"\xc1" * BIG_SIZE, "not_a_map"))
    rng.shuffle(bad)  # broken records among the late ones, after the valid ones
    records += bad
    assert len(records) == TOTAL
    return records


async def produce(settings: Settings, records: list[Record]) -> list[tuple[int, int]]:
    """Send every record to its partition; their (partition, offset) in the same order."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20)
    await start_or_close(producer)
    try:
        sent = [await producer.send(settings.events_topic, v, key=k, partition=p) for p, k, v, _ in records]
        return [(m.partition, m.offset) for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


def outcomes(metrics: dict[str, int]) -> Counter[str]:
    """``segflow_events_total`` summed by outcome (each event counted once, when processed)."""
    counts: Counter[str] = Counter()
    for outcome in OUTCOMES:
        prefix = f'segflow_events_total{{outcome="{outcome}",'
        counts[outcome] = sum(v for k, v in metrics.items() if k.startswith(prefix))
    return counts


def categories(metrics: dict[str, int]) -> Counter[str]:
    prefix = 'segflow_dead_letters_total{reason="'
    return Counter({k[len(prefix) : -2]: v for k, v in metrics.items() if k.startswith(prefix) and v})


def run_worker(settings: Settings, log: Path, expected_in: int) -> dict[str, int]:
    """Start a worker, wait until it processed ``expected_in`` events (while it makes progress),
    read its metrics, stop it."""
    own = settings.model_copy(update={"web_port": free_port()})
    process = start_worker(own, log)
    try:
        seen, stalled = 0, 0
        while process.poll() is None and stalled < 120:  # half-second polls without progress
            now = sum(outcomes(read_metrics(own.web_port, own.web_secret)).values())
            if now >= expected_in:
                break
            seen, stalled = now, stalled + 1 if now == seen else 0
            asyncio.run(asyncio.sleep(0.5))
        metrics = read_metrics(own.web_port, own.web_secret)
    finally:
        code = stop_worker(process)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    assert sum(outcomes(metrics).values()) == expected_in, f"worker exit {code}; {outcomes(metrics)}\n{tail}"
    return metrics


async def read_letters(settings: Settings) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = []
    await read_to_end(
        settings, settings.dlq_topic, on_record=lambda r: letters.append(msgpack.unpackb(r.value))
    )
    return letters


async def rewind(settings: Settings, partition: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=settings.app_id, enable_auto_commit=False
    )
    await start_or_close(consumer)
    try:
        tp = TopicPartition(settings.events_topic, partition)
        consumer.assign([tp])
        await consumer.commit({tp: 0})
    finally:
        await consumer.stop()


def test_every_record_is_applied_dead_lettered_too_late_or_duplicate(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings
    records = generate(settings.events_partitions)
    expected = Counter(r[3] for r in records)
    try:
        positions = asyncio.run(produce(settings, records))
        by_position = dict(zip(positions, records, strict=True))

        first = run_worker(settings, tmp_path / "worker-1.log", TOTAL)
        counts = outcomes(first)
        bad = TOTAL - expected["applied"] - expected["too_late"]
        assert counts == Counter(applied=VALID + RESENT, too_late=LATE, dead_lettered=bad, duplicate=0), (
            counts
        )
        assert sum(counts.values()) == TOTAL
        wanted = Counter({k: v for k, v in expected.items() if k != "applied"})
        assert categories(first) == wanted

        letters = asyncio.run(read_letters(settings))
        assert len(letters) == bad + LATE
        for letter in letters:
            _, _, value, category = by_position[(letter["partition"], letter["offset"])]
            assert letter["topic"] == settings.events_topic
            assert dead_letter_category(letter["reason"]) == category, letter["reason"]
            if len(value) > 1_000_000:
                assert letter["raw"] == value[:1_000_000]
                assert (letter["raw_size"], letter["raw_truncated"]) == (len(value), True)
            else:
                assert letter["raw"] == value

        # Partition 0 again, from its first offset: what reached a customer is now a duplicate.
        again = [r for (p, _), r in by_position.items() if p == 0]
        asyncio.run(rewind(settings, 0))
        second = run_worker(settings, tmp_path / "worker-2.log", len(again))
        reached = sum(r[3] in ("applied", "too_late") for r in again)
        assert outcomes(second) == Counter(
            applied=0, too_late=0, duplicate=reached, dead_lettered=len(again) - reached
        )
    finally:
        asyncio.run(remove(settings))
