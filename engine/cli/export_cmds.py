"""``segflow export``: data out of Redis for batch jobs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from engine.settings import Settings


@click.group()
def export() -> None:
    """Export what the engine keeps, for batch jobs (reports: they scan customers)."""


@export.command()
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV file to write (default: standard output).",
)
@click.option("--limit", type=int, default=None, help="At most this many customers.")
@click.pass_obj
def scores(settings: Settings, out_path: Path | None, limit: int | None) -> None:
    """Per customer: customer_id, as_of (epoch ms), the model inputs and every score_<name>."""
    from engine.export import export_scores

    if out_path is None:
        asyncio.run(export_scores(settings, sys.stdout, limit))
        return
    with out_path.open("w", newline="") as out:
        count = asyncio.run(export_scores(settings, out, limit))
    click.echo(f"exported {count} customers to {out_path}", err=True)
