"""``segflow worker``: run one Faust worker of the segmenting agent."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading

import click
import faust

from engine.app import create_runtime
from engine.ops.task_dump import dump_task_stacks
from engine.preflight import check_access
from engine.settings import Settings
from engine.stream.agents import attach_agent
from engine.topics import ensure_topics


class GracefulWorker(faust.Worker):
    """A Faust worker whose shutdown cannot hang.

    Under load a stream buffering with take() can wait forever during stop. We ack events only
    after their output is delivered, so leaving hard is safe: after ``grace_seconds`` the
    process exits and the unacked events are redelivered to the next owner.
    """

    grace_seconds: float = 15.0

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        timer = threading.Timer(self.grace_seconds, self._force_exit)
        timer.daemon = True
        timer.start()
        super()._schedule_shutdown(signum)

    def _on_sigusr1(self) -> None:
        # mode's handler prints local variables, whose repr can raise and crash the worker.
        dump_task_stacks(self.stderr)

    def _force_exit(self) -> None:
        sys.stderr.write(f"segflow worker: stop took over {self.grace_seconds:g}s; exiting now\n")
        sys.stderr.flush()
        os._exit(0)


@click.command()
@click.option("--web-port", type=int, default=None, help="Web port for metrics/health (default: settings).")
@click.option(
    "--grace", type=float, default=15.0, show_default=True, help="Seconds to stop before forcing exit."
)
@click.pass_obj
def worker(settings: Settings, web_port: int | None, grace: float) -> None:
    """Consume the events topic, keep features and segments in Redis, emit segment changes."""
    if web_port is not None:
        settings = settings.model_copy(update={"web_port": web_port})
    check_access(settings, group=settings.app_id)
    asyncio.run(ensure_topics(settings))
    runtime = create_runtime(settings)
    attach_agent(runtime)
    instance = GracefulWorker(runtime.app, loglevel=settings.log_level, quiet=True)
    instance.grace_seconds = grace
    instance.execute_from_commandline()
