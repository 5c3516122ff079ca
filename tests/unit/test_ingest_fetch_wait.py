"""How long the ingest loop lets a fetch wait while partitions are held (no servers)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition

from engine.settings import Settings
from engine.stream.batch_records import RawRecord
from engine.stream.ingest import HOLD_SECONDS, BatchIngest, Handled


async def _handle(records: list[object]) -> Handled:
    return Handled(0, {})


async def _flush() -> int:
    return 0


async def _revoked(partitions: list[int]) -> None:
    return None


def _ingest() -> BatchIngest:
    return BatchIngest(Settings(), _handle, _flush, lambda: 0, _revoked, asyncio.Lock())  # type: ignore[arg-type]


def test_nothing_held_waits_the_whole_timeout() -> None:
    assert _ingest()._fetch_wait_ms(200) == 200


def test_a_hold_ending_sooner_shortens_the_wait() -> None:
    ingest = _ingest()
    now = time.monotonic()
    ingest._paused = {TopicPartition("t", 0): now + 0.5, TopicPartition("t", 1): now + HOLD_SECONDS}
    ingest._held = {tp: [RawRecord("t", tp.partition, 1, b"k", b"v")] for tp in ingest._paused}
    wait = ingest._fetch_wait_ms(200)
    # The earliest hold ends within HOLD_SECONDS (50 ms): the fetch waits no longer than that.
    assert 0 < wait <= round(HOLD_SECONDS * 1000)


def test_a_hold_already_over_does_not_wait() -> None:
    ingest = _ingest()
    ingest._paused = {TopicPartition("t", 3): time.monotonic() - 1.0}
    ingest._held = {TopicPartition("t", 3): [RawRecord("t", 3, 1, b"k", b"v")]}
    assert ingest._fetch_wait_ms(200) == 0


def test_a_pause_without_held_records_does_not_shorten_the_wait() -> None:
    # Its records were taken for a batch (or dropped): no hold ends, so nothing to wake up for.
    ingest = _ingest()
    ingest._paused = {TopicPartition("t", 3): time.monotonic() - 1.0}
    assert ingest._fetch_wait_ms(200) == 200


@pytest.mark.parametrize("timeout_ms", [1, 50])
def test_a_later_hold_keeps_the_timeout(timeout_ms: int) -> None:
    ingest = _ingest()
    ingest._paused = {TopicPartition("t", 0): time.monotonic() + 10.0}
    ingest._held = {TopicPartition("t", 0): [RawRecord("t", 0, 1, b"k", b"v")]}
    assert ingest._fetch_wait_ms(timeout_ms) == timeout_ms


def test_every_held_partition_is_offered_again_when_asked() -> None:
    ingest = _ingest()

    class Consumer:  # the one call _due_held makes: the assignment it checks against
        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition("t", 0), TopicPartition("t", 1)}

    ingest.consumer = Consumer()  # type: ignore[assignment]
    later = time.monotonic() + 10.0
    held = {p: [RawRecord("t", p, 7, b"k", b"v")] for p in (0, 1, 2)}
    ingest._held = {TopicPartition("t", p): records for p, records in held.items()}
    ingest._paused = {TopicPartition("t", p): later for p in held}
    assert ingest._due_held() == []  # their pauses are not over
    due = ingest._due_held(everything=True)
    # Partition 2 is no longer assigned: its records are dropped, not offered.
    assert sorted(r.partition for r in due) == [0, 1]
    assert ingest._held == {}


def test_records_of_partitions_revoked_during_the_fetch_are_dropped() -> None:
    ingest = _ingest()
    topic = ingest.settings.events_topic

    class Consumer:  # the one call _due_held makes: the assignment it checks against
        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition(topic, p) for p in (0, 1, 2)}

    ingest.consumer = Consumer()  # type: ignore[assignment]
    ingest._held = {TopicPartition(topic, p): [RawRecord(topic, p, 3, b"k", b"v")] for p in (0, 1, 2)}
    # Held records are taken after the fetch; partition 1 was revoked (and assigned again) while
    # it waited: it restarts from its committed offset, so its held records would come twice.
    asyncio.run(ingest.revoked([1]))
    assert [r.partition for r in ingest._due_held(everything=True)] == [0, 2]


def test_held_records_of_a_partition_the_fetch_returned_are_stale() -> None:
    from engine.stream.ingest import _merged

    held = [RawRecord("t", 0, o, b"k", b"v") for o in (5, 6)] + [RawRecord("t", 1, 9, b"k", b"v")]
    # Partition 0 came back from its committed offset 4 (reassigned): its held copies would be
    # a second 5 and 6 in the batch. Partition 1 is still paused: its held record stays.
    fresh = [RawRecord("t", 0, o, b"k", b"v") for o in (4, 5, 6, 7)]
    merged = _merged(held, fresh)
    assert [(r.partition, r.offset) for r in merged] == [(0, 4), (0, 5), (0, 6), (0, 7), (1, 9)]
