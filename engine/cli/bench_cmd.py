"""``segflow bench``: a real worker beside a bare consumer on the local stack, as a ratio."""

from __future__ import annotations

import click

from engine.settings import Settings


@click.command()
@click.option("--events", type=int, default=200_000, show_default=True, help="Events in the workload.")
@click.option("--customers", type=int, default=5_000, show_default=True, help="Simulated customers.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Rounds; medians are reported.")
@click.option("--partitions", type=int, default=8, show_default=True, help="Partitions of the bench topic.")
@click.option("--batch", type=int, default=500, show_default=True, help="Events per batch, both sides.")
@click.option(
    "--latency-events", type=int, default=2_000, show_default=True, help="Paced events timed per round."
)
@click.option(
    "--latency-rate", type=float, default=500.0, show_default=True, help="Events/s of the paced stream."
)
@click.option("--seed", type=int, default=7, show_default=True, help="Simulation seed.")
@click.option("--json", "as_json_output", is_flag=True, help="Print a JSON document instead of a table.")
@click.pass_obj
def bench(
    settings: Settings,
    events: int,
    customers: int,
    rounds: int,
    partitions: int,
    batch: int,
    latency_events: int,
    latency_rate: float,
    seed: int,
    as_json_output: bool,
) -> None:
    """Measure a real worker against a bare consumer on the local stack's Kafka and Redis.

    Produces a simulated workload once to new topics segflow-bench-<run id>.*, then each round
    reads it all with a bare aiokafka consumer (msgpack decode only) and with a real segflow
    worker, and times segment changes of a paced stream. Progress goes to stderr. The topics
    remain afterwards; Redis keys are deleted.
    """
    from engine import bench_report
    from engine.bench import BenchError, BenchParams, run_bench  # imports the simulator

    params = BenchParams(events, customers, rounds, partitions, batch, latency_events, latency_rate, seed)
    try:
        report = run_bench(settings, params, lambda line: click.echo(line, err=True))
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(bench_report.as_json(report) if as_json_output else bench_report.render(report))
