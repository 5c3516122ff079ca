"""``segflow stack``, ``segflow topics`` and ``segflow config``: the local stack and setup."""

from __future__ import annotations

import asyncio
import sys

import click

from engine.settings import Settings
from engine.stack import manager
from engine.topics import ensure_topics, topic_specs
from features.client import redact


def _print_status(status: manager.StackStatus) -> None:
    for action in status.actions:
        click.echo(action)
    for server in status.servers:
        ports = ",".join(str(p) for p in server.ports)
        health = "healthy" if server.healthy else ("UNHEALTHY" if server.running else "not running")
        click.echo(
            f"{server.name:22} ports={ports:12} pid={server.pid or '-':<8} "
            f"version={server.version or '-':10} {health:12} {server.detail}"
        )


@click.group()
def stack() -> None:
    """Start, check and stop the local Kafka and Redis, optionally Prometheus and toxiproxy
    (loopback only)."""


SECURE_HELP = "The secure stack instead: Kafka SASL_SSL + ACLs, Redis TLS + ACL users (README, Security)."


@stack.command()
@click.option("--cluster", is_flag=True, help="Also start a 3-node Redis Cluster.")
@click.option(
    "--prometheus", is_flag=True, help="Also start Prometheus (SEGFLOW_PROMETHEUS_PORT) scraping the workers."
)
@click.option(
    "--proxy",
    is_flag=True,
    help="Also start toxiproxy (SEGFLOW_TOXIPROXY_PORT) in front of Kafka and Redis, for fault tests.",
)
@click.option("--secure", is_flag=True, help=SECURE_HELP)
@click.pass_obj
def up(settings: Settings, cluster: bool, prometheus: bool, proxy: bool, secure: bool) -> None:
    """Start Kafka (KRaft) and Redis unless already running; wait until they answer."""
    if secure and (cluster or prometheus or proxy):
        raise click.UsageError("--secure starts only the secure Kafka and Redis")
    if secure:
        _print_status(manager.up_secure(settings))
    else:
        _print_status(manager.up(settings, cluster=cluster, prometheus=prometheus, proxy=proxy))


@stack.command()
@click.option("--secure", is_flag=True, help=SECURE_HELP)
@click.pass_obj
def down(settings: Settings, secure: bool) -> None:
    """Stop every local server this stack started (fine when none runs)."""
    _print_status(manager.down_secure(settings) if secure else manager.down(settings))


@stack.command()
@click.option("--secure", is_flag=True, help=SECURE_HELP)
@click.pass_obj
def status(settings: Settings, secure: bool) -> None:
    """Print ports, pids, versions and health; exit 1 unless all servers are healthy."""
    current = manager.status_secure(settings) if secure else manager.status(settings)
    _print_status(current)
    if not current.healthy:
        sys.exit(1)


@click.group()
def topics() -> None:
    """The Kafka topics segflow uses."""


@topics.command("create")
@click.pass_obj
def topics_create(settings: Settings) -> None:
    """Create any missing topic with its configured partitions."""
    created = asyncio.run(ensure_topics(settings))
    for spec in topic_specs(settings):
        mark = "created" if spec.name in created else "exists"
        click.echo(f"{spec.name:32} partitions={spec.partitions:<4} {mark:8} {spec.carries}")


@click.command()
@click.pass_context
def config(ctx: click.Context) -> None:
    """Print the settings in force (SEGFLOW_* environment variables, the profile, defaults).

    Secrets print as ``**********`` (and a password in SEGFLOW_REDIS_URL as ``****``)."""
    settings: Settings = ctx.obj
    profile = ctx.meta.get("segflow.profile")
    click.echo(f"# profile: {profile if profile is not None else '(none)'}")
    for name, value in settings.model_dump().items():
        shown = redact(value) if name == "redis_url" else value
        if name == "checkpoint_key" and value:  # the models' HMAC key: whoever has it can sign one
            shown = "**********"
        click.echo(f"SEGFLOW_{name.upper()}={shown}")
