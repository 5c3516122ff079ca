"""``segflow lag``: a consumer group's committed offsets, end offsets, lag and rates, from the broker."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from engine.kafka_clients import kafka_options
from engine.ops.lag import LagRow, LagSample, lag_rows, sample
from engine.settings import Settings
from engine.topics import start_or_close

COLUMNS = ("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "RATE/S", "PRODUCED/S", "CATCH-UP")


def duration(seconds: float | None) -> str:
    """``3s``, ``2m05s``, ``1h02m``; ``never`` for a lag that does not shrink, ``-`` for unknown."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        return "never"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_rows(group: str, rows: Sequence[LagRow]) -> str:
    """The table ``segflow lag`` prints, with a total line."""
    table = [COLUMNS] + [
        (
            group,
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.end),
            str(r.lag),
            _rate(r.consume_rate),
            _rate(r.produce_rate),
            duration(r.catch_up_seconds),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    total = sum(r.lag for r in rows)
    consumed = [r.consume_rate for r in rows]
    rate = (
        f", consuming {sum(c for c in consumed if c is not None):.1f}/s"
        if any(c is not None for c in consumed)
        else ""
    )
    lines.append(f"total lag {total} over {len(rows)} partitions{rate}")
    return "\n".join(lines)


def rows_json(group: str, rows: Sequence[LagRow]) -> dict[str, Any]:
    """The ``--json`` document (``catch_up_seconds`` null when unknown or never; ``gaining``
    false when the group does not consume faster than the producers produce)."""
    return {
        "group": group,
        "total_lag": sum(r.lag for r in rows),
        "partitions": [
            {
                "topic": r.topic,
                "partition": r.partition,
                "committed": r.committed,
                "end": r.end,
                "lag": r.lag,
                "consume_rate": r.consume_rate,
                "produce_rate": r.produce_rate,
                "catch_up_seconds": None
                if r.catch_up_seconds is None or math.isinf(r.catch_up_seconds)
                else r.catch_up_seconds,
                "gaining": None if r.catch_up_seconds is None else not math.isinf(r.catch_up_seconds),
            }
            for r in rows
        ],
    }


@asynccontextmanager
async def broker(settings: Settings) -> AsyncIterator[tuple[AIOKafkaAdminClient, AIOKafkaConsumer]]:
    """An admin client (the group's offsets) and a consumer in no group (end offsets)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=10_000)
    await start_or_close(admin)
    consumer = AIOKafkaConsumer(
        **kafka_options(settings), enable_auto_commit=False, request_timeout_ms=10_000
    )
    try:
        await start_or_close(consumer)
        try:
            yield admin, consumer
        finally:
            await consumer.stop()
    finally:
        await admin.close()


async def read_lag(settings: Settings, group: str, interval: float) -> list[LagRow]:
    """The group's rows; with rates over ``interval`` seconds between two samples (0: none)."""
    async with broker(settings) as (admin, consumer):
        first = await _sample(admin, consumer, group)
        if interval <= 0:
            return lag_rows(first)
        await asyncio.sleep(interval)
        same = [TopicPartition(p.topic, p.partition) for p in first.partitions]
        return lag_rows(await sample(admin, consumer, group, same), first)


async def _sample(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str) -> LagSample:
    found = await sample(admin, consumer, group)
    if not found.partitions:
        raise click.ClickException(
            f"consumer group {group!r} has no committed offsets (unknown, or never committed)"
        )
    return found


async def watch(settings: Settings, group: str, every: float, as_json: bool) -> None:
    """Print the group's rows every ``every`` seconds, rates over the last interval, until Ctrl-C."""
    async with broker(settings) as (admin, consumer):
        previous: LagSample | None = None
        while True:
            current = await _sample(admin, consumer, group)
            rows = lag_rows(current, previous)
            if as_json:
                click.echo(json.dumps({"at": time.time(), **rows_json(group, rows)}))
            else:
                click.echo(f"{time.strftime('%H:%M:%S')}\n{render_rows(group, rows)}\n")
            previous = current
            await asyncio.sleep(every)


@click.command("lag")
@click.option("--group", default=None, help="Consumer group (default: the workers', SEGFLOW_APP_ID).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds between the two samples the rates come from (0: one sample, no rates).",
)
@click.option(
    "--watch",
    "every",
    type=click.FloatRange(min=0.5),
    is_flag=False,
    flag_value=5.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh every SECONDS (5 when omitted) until Ctrl-C; rates over the last refresh.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON lines with --watch).")
@click.pass_obj
def lag(settings: Settings, group: str | None, interval: float, every: float | None, as_json: bool) -> None:
    """Per partition of a consumer group: committed and end offsets, lag, rates, time to catch up.

    Works with any group: the workers' (SEGFLOW_APP_ID, the default), ``<app_id>.deliver``, ...
    The figures are the broker's, as kafka-consumer-groups.sh --describe shows them.
    """
    name = group or settings.app_id
    if every is not None:
        asyncio.run(watch(settings, name, every, as_json))
        return
    rows = asyncio.run(read_lag(settings, name, interval))
    click.echo(json.dumps(rows_json(name, rows), indent=2) if as_json else render_rows(name, rows))
