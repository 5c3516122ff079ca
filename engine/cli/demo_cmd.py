"""``segflow demo``: stack up, worker running, a realistic stream replayed, changes shown."""

from __future__ import annotations

import sys

import click

from engine.settings import Settings
from engine.stack import manager


@click.command()
@click.option("--customers", type=int, default=300, show_default=True, help="Simulated customers.")
@click.option("--days", type=int, default=120, show_default=True, help="Days of event time simulated.")
@click.option("--seed", type=int, default=7, show_default=True, help="Simulation seed.")
@click.option(
    "--dashboard-seconds",
    type=float,
    default=None,
    help="Serve the dashboard this long at the end (default: until Ctrl-C on a terminal, else 0).",
)
@click.option("--dashboard-port", type=int, default=8088, show_default=True)
@click.pass_obj
def demo(
    settings: Settings,
    customers: int,
    days: int,
    seed: int,
    dashboard_seconds: float | None,
    dashboard_port: int,
) -> None:
    """Run the whole product end to end on the local stack and show what it decided."""
    from engine.demo import run_demo  # imports the simulator; keep other commands light

    status = manager.up(settings)
    for server in status.servers:
        click.echo(f"[demo] {server.name}: {'healthy' if server.healthy else 'NOT healthy'} {server.detail}")
    if dashboard_seconds is None and not sys.stdin.isatty():
        dashboard_seconds = 0.0
    sys.exit(run_demo(settings, click.echo, customers, days, seed, dashboard_seconds, dashboard_port))
