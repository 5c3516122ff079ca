"""``segflow features``: the declared catalogue, and the memory it takes in Redis."""

from __future__ import annotations

import asyncio

import click

from engine.app import feature_config
from engine.settings import Settings
from features.catalogue import catalogue


@click.group()
def features() -> None:
    """The feature catalogue of the store."""


@features.command("list")
@click.pass_obj
def features_list(settings: Settings) -> None:
    """Print every declared feature: name, group, kind, meaning (shaped by SEGFLOW_* settings)."""
    for spec in catalogue(feature_config(settings)):
        click.echo(f"{spec.name:34} {spec.group:11} {spec.kind:7} {spec.description}")


@features.command("memory")
@click.option("--customers", type=int, default=100_000, show_default=True)
@click.option("--days", type=int, default=30, show_default=True, help="Days of simulated history.")
@click.option("--seed", type=int, default=11, show_default=True)
@click.option("--keep", is_flag=True, help="Leave the measured keys in Redis.")
@click.pass_obj
def features_memory(settings: Settings, customers: int, days: int, seed: int, keep: bool) -> None:
    """Measure Redis bytes per customer for a simulated population (single Redis)."""
    from engine.feature_memory import measure  # imports the simulator

    click.echo(asyncio.run(measure(settings, customers, days, seed, keep)).render())
