"""``engine.cli.io.read_to_end`` (and ``read_changes``, which reads history the same way) on the
real Kafka: every record of every partition exactly once, read after read; empty partitions and
an empty topic done at once; a missing topic named; an end even while a producer goes on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from engine.cli.io import Record, TopicReadError, read_changes, read_to_end
from engine.codecs import encode_msgpack
from engine.settings import Settings
from engine.topics import ensure_topics, start_or_close

pytestmark = pytest.mark.integration

FILLED = {0: 7, 2: 1, 5: 1500}
"""Records produced per partition of the 6 of the changes topic; 1, 3 and 4 stay empty."""


def value(partition: int, n: int) -> bytes:
    return encode_msgpack({"partition": partition, "n": n})


async def produce(settings: Settings, topic: str, counts: dict[int, int], start: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await start_or_close(producer)
    try:
        for partition, count in counts.items():
            for n in range(start, start + count):
                await producer.send(topic, value(partition, n), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await start_or_close(admin)
    try:
        existing = set(await admin.list_topics())
        await admin.delete_topics([t for t in existing if t.startswith(settings.app_id)])
    finally:
        await admin.close()


@pytest.fixture()
def settings(isolated_settings: Settings) -> Iterator[Settings]:
    """The test's topics created: the changes topic (to fill) and the actions topic (left empty)
    with 6 partitions each."""
    own = isolated_settings.model_copy(update={"changes_partitions": 6})
    assert own.changes_topic.startswith(own.app_id) and own.actions_topic.startswith(own.app_id)
    asyncio.run(ensure_topics(own))
    yield own
    asyncio.run(delete_topics(own))


def read(settings: Settings, topic: str, **options: Any) -> tuple[int, list[tuple[int, int, bytes]]]:
    """What ``read_to_end`` returns and the (partition, offset, value) of each record it passed on."""
    records: list[Record] = []
    count = asyncio.run(read_to_end(settings, topic, on_record=records.append, **options))
    return count, [(r.partition, r.offset, r.value) for r in records]


def test_every_record_of_every_partition_exactly_once_each_read(settings: Settings) -> None:
    asyncio.run(produce(settings, settings.changes_topic, FILLED))
    expected = sorted((p, n, value(p, n)) for p, count in FILLED.items() for n in range(count))
    for _ in range(3):  # each read a fresh consumer: assign()'s own offset lookup every time
        count, records = read(settings, settings.changes_topic)
        assert count == len(records) == sum(FILLED.values())
        assert sorted(records) == expected
        for partition in FILLED:  # each partition in offset order
            offsets = [offset for p, offset, _ in records if p == partition]
            assert offsets == sorted(offsets)


def test_an_empty_topic_reads_nothing_at_once(settings: Settings) -> None:
    started = time.monotonic()
    assert read(settings, settings.actions_topic) == (0, [])
    assert time.monotonic() - started < 5.0  # no fetch waited for: empty partitions are done at once


def test_a_missing_topic_is_named_or_reads_nothing_when_allowed(settings: Settings) -> None:
    missing = f"{settings.app_id}-no-such-topic"
    with pytest.raises(TopicReadError, match=f"topic {missing} does not exist"):
        read(settings, missing)
    assert read(settings, missing, missing_ok=True) == (0, [])


def test_it_ends_at_the_end_offsets_taken_at_the_start_while_a_producer_goes_on(settings: Settings) -> None:
    asyncio.run(produce(settings, settings.changes_topic, FILLED))

    async def read_while_producing() -> list[tuple[int, int]]:
        more = asyncio.create_task(produce(settings, settings.changes_topic, {0: 3000, 1: 3000}, 10_000))
        records: list[Record] = []
        try:
            await read_to_end(settings, settings.changes_topic, on_record=records.append)
        finally:
            await more
        return [(r.partition, r.offset) for r in records]

    found = asyncio.run(read_while_producing())
    assert len(found) == len(set(found))
    assert {(p, n) for p, count in FILLED.items() for n in range(count)} <= set(found)
    _, after = read(settings, settings.changes_topic)
    assert len(after) == sum(FILLED.values()) + 6000


def test_read_changes_from_the_beginning_then_as_they_come(settings: Settings) -> None:
    """``segflow tail --from-beginning``: the history once, then what is produced later."""
    asyncio.run(produce(settings, settings.changes_topic, FILLED))

    async def tail(later: dict[int, int], **options: Any) -> list[dict[str, int]]:
        shown: list[dict[str, int]] = []
        reading = asyncio.create_task(
            read_changes(settings, settings.changes_topic, show=shown.append, **options)
        )
        await asyncio.sleep(1.0)
        await produce(settings, settings.changes_topic, later, 10_000)
        assert await reading == len(shown)
        return shown

    shown = asyncio.run(tail({3: 2}, from_beginning=True, max_count=None, idle_timeout=3.0))
    history = [(p, n) for p, count in FILLED.items() for n in range(count)]
    assert sorted((c["partition"], c["n"]) for c in shown) == sorted([*history, (3, 10_000), (3, 10_001)])
    shown = asyncio.run(tail({}, from_beginning=True, max_count=5, idle_timeout=3.0))
    assert len(shown) == 5
    # From the end (plain `segflow tail`): none of the history.
    assert asyncio.run(tail({}, from_beginning=False, max_count=None, idle_timeout=1.0)) == []
