"""Reading event files into Kafka, and topics back out: to their end (``read_to_end``) or as they come."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from engine.codecs import decode_msgpack, encode_msgpack
from engine.ingest_files.events_file import csv_event, missing_csv_columns
from engine.kafka_clients import kafka_options
from engine.settings import Settings
from engine.topics import start_or_close, topic_partitions


def iter_csv(path: Path) -> Iterator[dict[str, Any]]:
    """Events from a CSV with columns event_id, customer_id, type, ts and ``attrs.<name>``."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing_csv_columns(path, reader.fieldnames)
        for row in reader:
            if None in row:
                raise ValueError(f"{path}:{reader.line_num}: more cells than header columns")
            yield csv_event(row)


def iter_payloads(
    path: Path, fmt: str, wire: str, keep_invalid: bool
) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) pairs to publish, from a JSONL or CSV file.

    JSON lines are re-encoded as ``wire``; a line that is not JSON stops the run with its line
    number, or with ``keep_invalid`` is sent unchanged (to exercise the dead-letter path).
    """
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:  # before anything is produced
            missing_csv_columns(path, next(csv.reader(handle), []))
        return ((_key(event), _encode(event, wire)) for event in iter_csv(path))
    return _json_lines(path, wire, keep_invalid)


def _json_lines(path: Path, wire: str, keep_invalid: bool) -> Iterator[tuple[bytes | None, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if keep_invalid:
                    yield None, line.rstrip(b"\r\n")
                    continue
                what = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                raise ValueError(
                    f"{path}:{number}: not JSON ({what}); use --keep-invalid to send it anyway"
                ) from None
            yield _key(event), _encode(event, wire)


def _key(event: Any) -> bytes | None:
    customer = event.get("customer_id") if isinstance(event, dict) else None
    return customer.encode() if isinstance(customer, str) else None


def _encode(event: Any, wire: str) -> bytes:
    return encode_msgpack(event) if wire == "msgpack" else json.dumps(event).encode()


async def produce_lines(
    settings: Settings, path: Path, fmt: str, wire: str, keep_invalid: bool, topic: str
) -> int:
    """Publish every event of ``path`` to ``topic``; return how many were acked."""
    return await produce_payloads(settings, iter_payloads(path, fmt, wire, keep_invalid), topic)


async def produce_payloads(
    settings: Settings,
    payloads: Iterable[tuple[bytes | None, bytes]],
    topic: str,
    on_acked: Callable[[int], None] | None = None,
) -> int:
    """Publish (key, value) pairs to ``topic`` in order with an idempotent producer (acks=all);
    return how many were acked. ``on_acked(n)`` is told of every n acks as they come."""
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", linger_ms=5, enable_idempotence=True)
    await start_or_close(producer)

    def acked(done: asyncio.Future[Any]) -> None:
        if on_acked is not None and not done.cancelled() and done.exception() is None:
            on_acked(1)

    count = 0
    try:
        pending = []
        for key, value in payloads:
            future = await producer.send(topic, value=value, key=key)
            future.add_done_callback(acked)
            pending.append(future)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                count += len(pending)
                pending.clear()
        await asyncio.gather(*pending)
        count += len(pending)
    finally:
        await producer.stop()
    return count


def _when(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_change(change: dict[str, Any]) -> str:
    """One human-readable line per segment change."""
    reason = change.get("reason") or {}
    text = reason.get("text", "")
    because = text.split(" because ", 1)[1] if " because " in text else text
    source = change.get("from") or "(none)"
    return (
        f"{_when(change.get('event_ts'))}  {change.get('customer_id')}  {change.get('family')}: "
        f"{source} -> {change.get('to') or '(none)'}  because {because}"
    )


IDLE_FETCHES = 15
"""Empty fetches in a row after which reading a topic to its end gives up with a reason."""
FETCH_TIMEOUT_MS = 2000
"""How long one fetch of ``read_to_end`` waits for records."""

Record: TypeAlias = ConsumerRecord[bytes, bytes]
"""A record as a groupless consumer of a segflow topic fetches it (raw key and value)."""


class TopicReadError(ValueError):
    """A topic to read does not exist, or its records below the end offsets never arrive."""


@contextlib.asynccontextmanager
async def _assigned(
    settings: Settings, topic: str, reset: str, partitions: list[int]
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer without a group (it never commits nor takes partitions from a group) assigned
    every partition of ``topic``; ``reset`` must be the way the caller seeks (see ``read_to_end``)."""
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=reset,
    )
    await start_or_close(consumer)
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        yield consumer, assigned
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str, missing_ok: bool = False) -> list[int]:
    partitions = await topic_partitions(settings, topic)
    if not partitions and not missing_ok:
        raise TopicReadError(f"topic {topic} does not exist (run `segflow topics create`)")
    return partitions


async def _drain(
    consumer: AIOKafkaConsumer,
    assigned: list[TopicPartition],
    on_record: Callable[[Record], object],
    limit: int | None = None,
    idle_fetches: int = IDLE_FETCHES,
    fetch_timeout_ms: int = FETCH_TIMEOUT_MS,
) -> int:
    """Pass each record from the beginning to the end offsets taken now to ``on_record``; return
    how many. Unless ``limit`` stopped it, each partition is left resumed at its end offset."""
    ends = await consumer.end_offsets(assigned)
    await consumer.seek_to_beginning(*assigned)
    left = {tp: end for tp, end in ends.items() if await consumer.position(tp) < end}
    consumer.pause(*(tp for tp in assigned if tp not in left))
    read = idle = 0
    while left:
        fetched = await consumer.getmany(timeout_ms=fetch_timeout_ms, max_records=10_000)
        idle = 0 if fetched else idle + 1
        if idle >= idle_fetches:
            where = ", ".join(f"partition {tp.partition} before offset {end}" for tp, end in left.items())
            seconds = idle * fetch_timeout_ms / 1000
            raise TopicReadError(f"{assigned[0].topic}: no records arrive in {seconds:g}s for {where}")
        for tp, records in fetched.items():
            end = left.get(tp)
            if end is None:  # paused since it was fetched
                continue
            for record in records:
                if record.offset >= end:
                    break
                on_record(record)
                read += 1
                if limit is not None and read >= limit:
                    return read
            position = await consumer.position(tp)
            if position >= end:
                if position > end:  # records past the end were fetched: keep them for a follower
                    consumer.seek(tp, end)
                consumer.pause(tp)
                del left[tp]
    consumer.resume(*assigned)
    return read


async def read_to_end(
    settings: Settings,
    topic: str,
    *,
    on_record: Callable[[Record], object],
    missing_ok: bool = False,
    idle_fetches: int = IDLE_FETCHES,
    fetch_timeout_ms: int = FETCH_TIMEOUT_MS,
) -> int:
    """Pass every record of ``topic``, from the beginning of each partition to the end offsets
    taken at the start, to ``on_record`` (partition by partition in offset order, partitions
    interleaved); return how many.

    Built this way because of how aiokafka positions a consumer it was given partitions:

    * ``assign()`` starts an offset lookup of its own with the ``auto_offset_reset`` strategy, and
      its answer overrides a ``seek_to_beginning()`` made while it is in flight: with the default
      ("latest") the reader could start at the end and see nothing. So: "earliest", no group.
    * The end offsets are taken first and nothing past them is passed on, so it ends even while a
      worker keeps producing. A partition is done when the consumer's position reaches its end
      (not by its last record's offset: offsets can have gaps, and a partition whose records all
      expired has none); an empty partition is done at once.
    * Every fetch asks for all partitions, finished ones paused: asking for some partitions only
      can leave the others' fetched records in the buffer and stall the fetcher.
    * ``idle_fetches`` empty fetches of ``fetch_timeout_ms`` in a row while partitions are short of
      their end raise ``TopicReadError`` naming them, instead of waiting for ever.

    A topic that does not exist raises ``TopicReadError`` too, or with ``missing_ok`` reads 0.
    """
    partitions = await _partitions(settings, topic, missing_ok)
    if not partitions:
        return 0
    async with _assigned(settings, topic, "earliest", partitions) as (consumer, assigned):
        return await _drain(consumer, assigned, on_record, None, idle_fetches, fetch_timeout_ms)


async def read_changes(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    max_count: int | None,
    idle_timeout: float | None,
    show: Callable[[dict[str, Any]], None],
) -> int:
    """Show changes without joining a consumer group (so it never steals partitions): from the
    beginning to the end offsets as ``read_to_end`` reads them, or from the end, then as they
    come; until ``max_count`` of them or ``idle_timeout`` seconds without one."""
    # The offset reset matches the seek: assign()'s own lookup must not undo it (see read_to_end).
    reset = "earliest" if from_beginning else "latest"
    async with _assigned(settings, topic, reset, await _partitions(settings, topic)) as (consumer, assigned):
        seen = 0
        if from_beginning:
            seen = await _drain(consumer, assigned, lambda r: show(decode_msgpack(r.value)), max_count)
        else:
            await consumer.seek_to_end(*assigned)
        while max_count is None or seen < max_count:
            timeout_ms = int(idle_timeout * 1000) if idle_timeout is not None else 1000
            batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=500)
            if not batches and idle_timeout is not None:
                break
            for messages in batches.values():
                for message in messages:
                    show(decode_msgpack(message.value))
                    seen += 1
                    if max_count is not None and seen >= max_count:
                        return seen
    return seen
