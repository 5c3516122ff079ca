"""``segflow bench``: real workers beside a bare consumer and a naive pipeline on the local stack."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from engine.settings import Settings

DEFAULTS: dict[str, Any] = {
    "events": 200_000,
    "customers": 5_000,
    "rounds": 3,
    "partitions": 8,
    "batch": 500,
    "naive_events": 20_000,
    "latency_seconds": 10.0,
    "latency_timeout": 30.0,
    "seed": 7,
}


def _ints(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.ClickException(
            f"--workers: expected comma-separated whole numbers, got {value!r}"
        ) from None


def _loads(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) / 100 for part in value.split(",") if part.strip())
    except ValueError:
        raise click.ClickException(
            f"--latency-loads: expected comma-separated percentages, got {value!r}"
        ) from None


@click.command()
@click.option(
    "--events", type=int, default=DEFAULTS["events"], show_default=True, help="Events in the workload."
)
@click.option(
    "--customers", type=int, default=DEFAULTS["customers"], show_default=True, help="Simulated customers."
)
@click.option(
    "--rounds", type=int, default=DEFAULTS["rounds"], show_default=True, help="Rounds; medians are reported."
)
@click.option(
    "--partitions", type=int, default=DEFAULTS["partitions"], show_default=True, help="Topic partitions."
)
@click.option(
    "--batch", type=int, default=DEFAULTS["batch"], show_default=True, help="Events per batch, both sides."
)
@click.option("--workers", default="1,2", show_default=True, help="Worker counts to measure, one group each.")
@click.option(
    "--naive-events",
    type=int,
    default=DEFAULTS["naive_events"],
    show_default=True,
    help="Events the naive pipeline does per round (the first of the topic).",
)
@click.option(
    "--latency-loads",
    default="25,50,75",
    show_default=True,
    help="Paced loads, in % of the round's fastest worker rate.",
)
@click.option(
    "--latency-seconds",
    type=float,
    default=DEFAULTS["latency_seconds"],
    show_default=True,
    help="Length of each paced stream.",
)
@click.option(
    "--latency-timeout",
    type=float,
    default=DEFAULTS["latency_timeout"],
    show_default=True,
    help="Seconds to wait for the last changes of a paced stream.",
)
@click.option("--seed", type=int, default=DEFAULTS["seed"], show_default=True, help="Simulation seed.")
@click.option("--quick", is_flag=True, help="A small run (under 2 minutes); options given still apply.")
@click.option(
    "--profile", is_flag=True, help="py-spy profile of the first worker's throughput window, round 1."
)
@click.option("--keep-topics", is_flag=True, help="Keep the run's Kafka topics (deleted by default).")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where logs and profiles go (default: <stack dir>/bench).",
)
@click.option("--json", "as_json_output", is_flag=True, help="Print a JSON document instead of a table.")
@click.pass_context
def bench(ctx: click.Context, **options: Any) -> None:
    """Measure real workers against a bare consumer and a naive pipeline on the local stack.

    Produces a simulated workload once to a new topic segflow-bench-<run id>.events, then each
    round reads it all with a bare aiokafka consumer (msgpack decode only), with 1 and 2 real
    segflow workers in one group, and with a naive one-event-at-a-time pipeline, and times
    segment changes of paced streams at fractions of the fastest rate. Progress goes to stderr;
    the run's topics and Redis keys are deleted at the end.
    """
    from engine.ops.bench import BenchError, BenchParams, run_bench  # imports the simulator
    from engine.ops.bench import report as bench_report
    from engine.ops.bench.progress import RichReporter

    settings: Settings = ctx.obj
    given = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) != ParameterSource.DEFAULT
        and name not in ("quick", "work_dir", "as_json_output")
    }
    if "workers" in given:
        given["workers"] = _ints(given["workers"])
    if "latency_loads" in given:
        given["latency_loads"] = _loads(given["latency_loads"])
    params = BenchParams.quick(**given) if options["quick"] else BenchParams(**given)
    # aiokafka warns about retried sends to just-created topics; the bar has no room for it.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        report = run_bench(settings, params, RichReporter(), options["work_dir"])
    except (BenchError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(bench_report.as_json(report) if options["as_json_output"] else bench_report.render(report))
