"""``segflow learner``: learn from the labels topic and publish sealed model snapshots."""

from __future__ import annotations

import asyncio
import logging

import click

from engine.learner.service import run_learner
from engine.preflight import check_access
from engine.settings import Settings
from engine.topics import ensure_topics

_LEVELS = {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO}


@click.command()
@click.option(
    "--checkpoint-seconds",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Between seals, save the checkpoint this often while labels were buffered.",
)
@click.pass_obj
def learner(settings: Settings, checkpoint_seconds: float) -> None:
    """Learn one model per kind from the labels topic; publish a sealed snapshot per period.

    Run two or more for a standby: one holds the lease and learns, the others take over when
    it stops renewing it. Stop with SIGTERM or Ctrl-C.
    """
    level = _LEVELS.get(settings.log_level, logging.DEBUG)
    for name in ("engine.learner", "models.learner"):
        logging.getLogger(name).setLevel(level)
    check_access(settings)
    asyncio.run(ensure_topics(settings))
    asyncio.run(run_learner(settings, checkpoint_seconds))
