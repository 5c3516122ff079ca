"""Entry point of the ``segflow`` command; errors at this edge are one-line messages."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from engine import log_ids
from engine.cli.bench_cmd import bench
from engine.cli.data_cmds import brief, dashboard, explain, produce, tail
from engine.cli.deliver_cmd import deliver
from engine.cli.demo_cmd import demo
from engine.cli.features_cmds import features
from engine.cli.import_cmd import import_group
from engine.cli.lag_cmd import lag
from engine.cli.learner_cmd import learner
from engine.cli.lift_cmd import lift
from engine.cli.models_cmds import evaluate
from engine.cli.rules_cmds import rules
from engine.cli.scores_cmds import scores
from engine.cli.segments_cmds import models, segments
from engine.cli.soak_cmd import soak
from engine.cli.stack_cmds import config, stack, topics
from engine.cli.worker_cmd import worker
from engine.kafka_clients import describe_failure
from engine.settings import Settings, SettingsError, load_settings, profile_path
from engine.stack.processes import StackError
from engine.stream.backpressure import RedisStop

PROFILE_META = "segflow.profile"
"""``ctx.meta`` key of the profile file in force (None: none)."""
_IN_FORCE: dict[str, Settings] = {}
"""The settings the command runs with, for explaining a Kafka failure at the edge."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--profile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read SEGFLOW_* settings from FILE (default: $SEGFLOW_PROFILE, else ./.segflow.env if any).",
)
@click.pass_context
def cli(ctx: click.Context, profile: Path | None) -> None:
    """segflow: real-time customer segmentation on Kafka, Redis and River."""
    ctx.meta[PROFILE_META] = profile_path(profile)
    ctx.obj = _IN_FORCE["settings"] = load_settings(profile)
    log_ids.configure(ctx.obj)  # SEGFLOW_LOG_CUSTOMER_IDS, before any command logs a customer


for command in (
    stack,
    topics,
    config,
    worker,
    learner,
    deliver,
    lift,
    lag,
    produce,
    import_group,
    tail,
    explain,
    features,
    evaluate,
    models,
    segments,
    scores,
    bench,
    soak,
    dashboard,
    brief,
    demo,
    rules,
):
    cli.add_command(command)


def _kafka_failure(exc: KafkaError) -> str:
    settings = _IN_FORCE.get("settings")
    return str(exc) if settings is None else describe_failure(exc, settings)


def main() -> None:
    """Run the CLI, turning expected failures into one-line messages and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="segflow: %(levelname)s %(name)s: %(message)s")
    # Retriable produce errors (e.g. a leader still being elected for a new topic) are retried
    # by aiokafka and raise only if they persist; they are noise at the CLI.
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    # Connection failures surface as one-line `segflow: error:` messages; aiokafka's own
    # error log lines would repeat them.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KafkaError as exc:
        click.echo(f"segflow: error: {_kafka_failure(exc)}", err=True)
        sys.exit(1)
    except (SettingsError, StackError, FileNotFoundError, ValueError, OSError, RedisError, RedisStop) as exc:
        click.echo(f"segflow: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("SEGFLOW_DEBUG"):
            raise
        where = "SEGFLOW_DEBUG=1 shows where"
        click.echo(f"segflow: internal error: {type(exc).__name__}: {exc} ({where})", err=True)
        sys.exit(2)
    sys.exit(0)
