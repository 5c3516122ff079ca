"""``segflow scores export``: the file a CRM import or a BI tool takes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import click

from engine.settings import Settings


@click.group()
def scores() -> None:
    """Customers' scores for other systems."""


def _segment(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    family, sep, name = value.partition("=")
    if not sep or not family or not name:
        raise click.BadParameter(f"{value!r} is not FAMILY=SEGMENT", param_hint="--segment")
    return family, name


def _as_of(value: str | None) -> float | None:
    if value is None:
        return None
    from engine.schemas import InvalidEvent, parse_ts

    try:
        return parse_ts(int(value) if value.lstrip("-").isdigit() else value)
    except InvalidEvent as exc:
        raise click.BadParameter(str(exc).replace("ts ", "", 1), param_hint="--as-of") from None


@scores.command("export")
@click.option("--as-of", "as_of", help="Event time T (epoch ms or RFC 3339); default: the newest committed.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--segment", help="Only customers in this segment: FAMILY=SEGMENT.")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default: scores.<format>)."
)
@click.pass_obj
def export(settings: Settings, as_of: str | None, fmt: str, segment: str | None, output: Path | None) -> None:
    """Every customer's (or one segment's) features, scores and segments as of event time T."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from engine.exports.scores import ExportCounts, ExportPlan, export_rows
    from engine.exports.writers import write_csv, write_parquet

    path = output or Path(f"scores.{fmt}")
    counts = ExportCounts()
    started = time.monotonic()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True
    ) as progress:
        task = progress.add_task("reading customers", total=None)
        read = 0

        def advance(n: int) -> None:
            nonlocal read
            read += n
            rate = read / max(time.monotonic() - started, 1e-9)
            progress.update(task, description=f"{read:,} customers read ({rate:,.0f}/s)")

        async def run() -> None:
            header: list[str] = []

            def on_plan(plan: ExportPlan) -> None:
                header.extend(plan.columns)

            rows = export_rows(settings, _as_of(as_of), _segment(segment), on_plan, counts, advance)
            first: list[Any] | None = await anext(rows, None)

            async def all_rows() -> Any:
                if first is not None:
                    yield first
                async for row in rows:
                    yield row

            write = write_csv if fmt == "csv" else write_parquet
            await write(path, header or ["customer_id"], all_rows())

        asyncio.run(run())
    elapsed = time.monotonic() - started
    click.echo(
        f"wrote {counts.written:,} customers to {path} in {elapsed:.1f}s "
        f"(read {counts.read:,}; with an event after T: {counts.after_as_of:,}; "
        f"outside the segment: {counts.other_segment:,})"
    )
    if counts.warming_up:
        click.echo(f"warming up (blank scores): {', '.join(counts.warming_up)}")
