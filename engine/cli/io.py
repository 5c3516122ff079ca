"""Reading event files into Kafka and reading segment changes back out."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.codecs import decode_msgpack, encode_msgpack
from engine.ingest_files.events_file import csv_event, missing_csv_columns
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
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5, enable_idempotence=True
    )
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


async def read_changes(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    max_count: int | None,
    idle_timeout: float | None,
    show: Callable[[dict[str, Any]], None],
) -> int:
    """Read changes without joining a consumer group (so it never steals partitions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await start_or_close(consumer)
    seen = 0
    try:
        partitions = await topic_partitions(settings, topic)
        if not partitions:
            raise ValueError(f"topic {topic} does not exist (run `segflow topics create`)")
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
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
    finally:
        await consumer.stop()
    return seen
