"""``segflow produce``, ``tail``, ``explain``, ``dashboard`` and ``brief``: tools for people."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import click

from engine.cli.io import format_change, produce_lines, read_changes
from engine.explain import explain_customer
from engine.settings import Settings


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "jsonl", "csv"]), default="auto", show_default=True
)
@click.option(
    "--wire",
    type=click.Choice(["msgpack", "json"]),
    default="msgpack",
    show_default=True,
    help="Encoding on the topic.",
)
@click.option(
    "--keep-invalid", is_flag=True, help="Send lines that are not JSON unchanged instead of stopping."
)
@click.option("--topic", default=None, help="Topic (default: SEGFLOW_EVENTS_TOPIC).")
@click.pass_obj
def produce(
    settings: Settings, path: Path, fmt: str, wire: str, keep_invalid: bool, topic: str | None
) -> None:
    """Publish events from a JSON-lines or CSV file, keyed by customer_id."""
    count = asyncio.run(
        produce_lines(settings, path, fmt, wire, keep_invalid, topic or settings.events_topic)
    )
    click.echo(f"produced {count} events to {topic or settings.events_topic}")


@click.command()
@click.option("--from-beginning", is_flag=True, help="Start at the oldest change, not the newest.")
@click.option("--max", "max_count", type=int, default=None, help="Stop after this many changes.")
@click.option(
    "--idle-timeout", type=float, default=None, help="Stop after this many seconds without a change."
)
@click.option("--json", "as_json", is_flag=True, help="Print each change as one JSON line.")
@click.option("--topic", default=None, help="Topic (default: SEGFLOW_CHANGES_TOPIC).")
@click.pass_obj
def tail(
    settings: Settings,
    from_beginning: bool,
    max_count: int | None,
    idle_timeout: float | None,
    as_json: bool,
    topic: str | None,
) -> None:
    """Pretty-print segment changes as they are emitted."""

    def show(change: dict) -> None:
        click.echo(json.dumps(change, sort_keys=True) if as_json else format_change(change))

    asyncio.run(
        read_changes(settings, topic or settings.changes_topic, from_beginning, max_count, idle_timeout, show)
    )


@click.command()
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def explain(settings: Settings, customer_id: str, as_json: bool) -> None:
    """Show one customer's features, segments and why."""
    report = asyncio.run(explain_customer(settings, customer_id))
    if report is None:
        raise click.ClickException(f"customer {customer_id!r} is not in the store")
    click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True) if as_json else report.render())


@click.command()
@click.option("--port", type=int, default=8088, show_default=True, help="Port on 127.0.0.1.")
@click.option("--seconds", type=float, default=None, help="Stop after this many seconds (default: run).")
@click.option(
    "--scan-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="Scan the customer records again when a page needs it and the last scan is older.",
)
@click.option(
    "--refresh", type=float, default=30.0, show_default=True, help="The main page reloads itself (0: never)."
)
@click.pass_obj
def dashboard(
    settings: Settings, port: int, seconds: float | None, scan_seconds: float, refresh: float
) -> None:
    """Serve the analyst's pages: segments, R x F, trends, transitions, lag, lift, model quality."""
    from engine.dashboard import serve

    click.echo(f"dashboard on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, port, seconds, scan_seconds, refresh))


@click.command()
@click.argument("family")
@click.argument("segment")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("brief.html"),
    show_default=True,
    help="The HTML brief.",
)
@click.option(
    "--pdf", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also print it to this PDF."
)
@click.option("--chromium", default=None, help="Chromium executable for --pdf (default: chromium on PATH).")
@click.pass_obj
def brief(
    settings: Settings, family: str, segment: str, out: Path, pdf: Path | None, chromium: str | None
) -> None:
    """A one-page brief on one segment for marketing (HTML; --pdf prints it with headless Chromium)."""
    from engine.dashboard.brief import gather_brief, print_pdf, render_brief

    content = asyncio.run(gather_brief(settings, family, segment))
    out.write_text(render_brief(content), encoding="utf-8")
    click.echo(f"brief: {out}")
    if pdf is not None:
        click.echo(f"pdf: {print_pdf(out, pdf, chromium)}")
