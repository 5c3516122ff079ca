"""``segflow demo``: stack up, worker running, a realistic stream replayed, changes shown."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from engine.profiles import written_by_demo
from engine.settings import LOCAL_PROFILE, Settings, load_settings
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
@click.option(
    "--write-profile/--no-write-profile",
    default=True,
    show_default=True,
    help=f"Leave the run's settings in ./{LOCAL_PROFILE} for the commands that follow.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    customers: int,
    days: int,
    seed: int,
    dashboard_seconds: float | None,
    dashboard_port: int,
    write_profile: bool,
) -> None:
    """Run the whole product end to end on the local stack and show what it decided."""
    from engine.demo import run_demo  # imports the simulator; keep other commands light

    settings: Settings = ctx.obj
    in_force: Path | None = ctx.meta.get("segflow.profile")
    if in_force is not None and written_by_demo(in_force):
        # An earlier demo's profile names that run's topics and rules: start from the defaults.
        settings = load_settings(read_profile=False)
    # Prometheus joins the stack when it is installed (deploy/local/setup.sh installs it).
    status = manager.up(settings, prometheus=shutil.which("prometheus") is not None)
    for server in status.servers:
        click.echo(f"[demo] {server.name}: {'healthy' if server.healthy else 'NOT healthy'} {server.detail}")
    if dashboard_seconds is None and not sys.stdin.isatty():
        dashboard_seconds = 0.0
    profile = Path.cwd() / LOCAL_PROFILE if write_profile else None
    code = run_demo(settings, click.echo, customers, days, seed, dashboard_seconds, dashboard_port, profile)
    sys.exit(code)
