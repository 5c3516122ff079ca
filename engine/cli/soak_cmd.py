"""``segflow soak``: one real worker under a paced simulated stream for a long time, sampled."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import click

from engine.settings import Settings


def _json_ready(value: Any) -> Any:
    """NaN and infinities as null: the document stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


@click.command()
@click.option("--minutes", type=float, default=30.0, show_default=True, help="Length of the paced stream.")
@click.option(
    "--rate", type=float, default=1300.0, show_default=True, help="Events per second offered to the worker."
)
@click.option(
    "--customers",
    type=int,
    default=5_000,
    show_default=True,
    help="The fixed simulated population (5,000: the population of the bench workload).",
)
@click.option(
    "--sample-seconds", type=float, default=30.0, show_default=True, help="Seconds between samples."
)
@click.option("--partitions", type=int, default=8, show_default=True, help="Events topic partitions.")
@click.option("--batch", type=int, default=500, show_default=True, help="The worker's events per batch.")
@click.option("--seed", type=int, default=7, show_default=True, help="Simulation seed.")
@click.option("--keep", is_flag=True, help="Keep the run's topics and Redis keys (deleted by default).")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the worker's log and data go (default: <stack dir>/soak).",
)
@click.option("--json", "as_json_output", is_flag=True, help="Print a JSON document instead of tables.")
@click.pass_obj
def soak(settings: Settings, work_dir: Path | None, as_json_output: bool, **options: Any) -> None:
    """Run one real worker for --minutes under a paced simulated stream and judge its samples.

    A fixed population of --customers sends its events in event-time order at --rate per
    second to a new topic segflow-soak-<run id>.events; every --sample-seconds the soak records
    events sent and applied, consumer lag, worker RSS, Redis used_memory, bytes per known
    customer and keys. At the end it prints the samples and, per quantity, the medians of the
    first and last thirds, least-squares slopes per 10 minutes and whether it is flat. Each
    sample also goes to stderr as it is taken. Exits 1 when a quantity grows.
    """
    from engine.ops.soak import SoakError, SoakParams, run_soak  # imports the simulator
    from engine.ops.soak_report import render

    params = SoakParams(**options)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    def progress(sample: dict[str, Any]) -> None:
        rss, each = sample["worker_rss_mb"], sample["redis_bytes_per_customer"]
        click.echo(
            f"{sample['elapsed_s']:>7.0f}s sent {sample['sent']:,} applied {sample['applied'] or 0:,} "
            f"lag {sample['lag']:,} rss {rss or 0:.1f} MB redis {sample['redis_used_mb']:.1f} MB "
            f"customers {sample['customers']:,} ({each or 0:,.0f} B each) keys {sample['redis_keys']:,}",
            err=True,
        )

    try:
        report = run_soak(settings, params, progress, work_dir)
    except (SoakError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(_json_ready(report), indent=2) if as_json_output else render(report))
    if not report["passed"]:
        raise SystemExit(1)
