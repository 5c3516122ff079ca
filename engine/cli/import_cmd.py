"""``segflow import transactions|events FILE``: check a whole file, then produce it with progress.

Both commands read the whole file first (``engine.ingest_files``). Rows that cannot become events
are listed with their line numbers on stderr and nothing is produced, unless ``--skip-bad``
(then they are counted in the summary). The events are produced in event-time order (stable;
``--keep-order`` keeps the file's), keyed by customer, with the idempotent producer of
``segflow produce`` (``engine.cli.io.produce_payloads``) and a progress bar on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from engine.cli.io import produce_payloads
from engine.ingest_files.events_file import FORMATS as EVENT_FORMATS
from engine.ingest_files.events_file import prepare_events
from engine.ingest_files.tables import FORMATS as TABLE_FORMATS
from engine.ingest_files.tables import Prepared
from engine.ingest_files.transactions import TransactionOptions, prepare_transactions
from engine.settings import Settings
from engine.topics import topic_partitions

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
PROGRESS_SECONDS = 0.25


def _shared(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options both import commands take."""
    for option in reversed(
        (
            click.option("--skip-bad", is_flag=True, help="Produce the good rows; count the bad ones."),
            click.option("--max-problems", type=click.IntRange(1), default=20, show_default=True),
            click.option("--keep-order", is_flag=True, help="Produce in file order, not event-time order."),
            click.option("--dry-run", is_flag=True, help="Check the file and summarise; produce nothing."),
            click.option("--no-progress", is_flag=True, help="No progress bar on stderr."),
            click.option("--topic", default=None, help="Topic (default: SEGFLOW_EVENTS_TOPIC)."),
        )
    ):
        command = option(command)
    return command


@click.group("import")
def import_group() -> None:
    """Load files people have: purchases (CSV or Parquet) or schema-v1 events."""


@import_group.command()
@click.argument("path", type=_FILE)
@click.option("--customer", help="Customer id column (default: CustomerID, customer_id, customer, ...).")
@click.option("--date", help="Purchase date column (default: PurchaseDate, date, order_date, ...).")
@click.option("--amount", help="Amount column (default: OrderTotal, amount, total, revenue, ...).")
@click.option("--product", help="Product column (default: product, sku, ...; none: 'unspecified').")
@click.option("--currency", help="Currency column (default: currency; none: SEGFLOW_CURRENCY).")
@click.option(
    "--date-format",
    help="strftime format of the dates, e.g. %d/%m/%Y (default: ISO 8601, or epoch seconds/ms by size).",
)
@click.option("--timezone", default="UTC", show_default=True, help="Zone of dates given without one.")
@click.option("--format", "fmt", type=click.Choice(TABLE_FORMATS), default="auto", show_default=True)
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of a CSV.")
@_shared
@click.pass_obj
def transactions(settings: Settings, path: Path, **options: Any) -> None:
    """Import purchases: one purchase event per row of a CSV or Parquet file."""
    roles = ("customer", "date", "amount", "product", "currency")
    read = TransactionOptions(
        currency=settings.currency,
        columns={role: options.pop(role) for role in roles},
        date_format=options.pop("date_format"),
        timezone=_zone(options.pop("timezone")),
        fmt=options.pop("fmt"),
        encoding=options.pop("encoding"),
        max_problems=options.pop("max_problems"),
    )
    _import(settings, path, lambda: prepare_transactions(path, read), **options)


@import_group.command()
@click.argument("path", type=_FILE)
@click.option("--format", "fmt", type=click.Choice(EVENT_FORMATS), default="auto", show_default=True)
@_shared
@click.pass_obj
def events(settings: Settings, path: Path, fmt: str, **options: Any) -> None:
    """Import schema-v1 events from JSON lines or CSV (checked as the worker would)."""
    limit = options.pop("max_problems")
    _import(settings, path, lambda: prepare_events(path, settings.currency, fmt, limit), **options)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--timezone {name!r} is not a known time zone (e.g. UTC, Europe/London)") from None


def _import(
    settings: Settings,
    path: Path,
    prepare: Callable[[], Prepared],
    *,
    skip_bad: bool,
    keep_order: bool,
    dry_run: bool,
    no_progress: bool,
    topic: str | None,
) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(f"checking {path}") if not no_progress else contextlib.nullcontext():
        prepared = prepare()
    problems = prepared.problems
    if problems.count and not skip_bad:
        good = prepared.rows - problems.count
        others = f"--skip-bad produces the other {good}" if good else "no row can"
        click.echo(
            f"segflow: error: {path}: {problems.count} of {prepared.rows} rows cannot become "
            f"{prepared.kind}; nothing produced ({others}):",
            err=True,
        )
        click.echo("\n".join(problems.lines()), err=True)
        sys.exit(1)
    if problems.count:
        click.echo(f"segflow: skipping {problems.count} bad rows of {path}:", err=True)
        click.echo("\n".join(problems.lines()), err=True)
    if not prepared.events:
        raise ValueError(f"nothing to import: {prepared.summary()}")
    click.echo(prepared.summary())
    if dry_run:
        click.echo("dry run: nothing produced")
        return
    target = topic or settings.events_topic
    produced = asyncio.run(_produce(settings, prepared, target, keep_order, console, not no_progress))
    order = "file order" if keep_order else "event-time order"
    click.echo(f"produced {produced} events to {target} ({order}, keyed by customer)")


async def _produce(
    settings: Settings, prepared: Prepared, topic: str, keep_order: bool, console: Any, show: bool
) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not await topic_partitions(settings, topic):
        raise ValueError(f"topic {topic} does not exist (run `segflow topics create`)")
    payloads = prepared.payloads(keep_order)
    columns = (
        TextColumn("producing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not show) as progress:
        task = progress.add_task("produce", total=len(payloads), rate="")
        acked = 0

        def count(n: int) -> None:  # per ack: only count (the bar is redrawn from the count)
            nonlocal acked
            acked += n

        started = time.monotonic()

        def draw() -> None:
            rate = acked / max(time.monotonic() - started, 1e-3)
            progress.update(task, completed=acked, rate=f"{rate:,.0f} events/s" if acked else "")

        async def redraw() -> None:
            while True:
                draw()
                await asyncio.sleep(PROGRESS_SECONDS)

        drawing = asyncio.create_task(redraw())
        try:
            produced = await produce_payloads(settings, payloads, topic, count)
        finally:
            drawing.cancel()
        draw()
        return produced
