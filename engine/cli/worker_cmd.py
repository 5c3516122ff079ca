"""``segflow worker``: run one Faust worker of the segmenting agent."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import NoReturn

import click
import faust
from mode.utils.futures import maybe_cancel

from engine.app import create_runtime
from engine.ops.task_dump import dump_task_stacks
from engine.preflight import check_access
from engine.settings import Settings
from engine.stream.agents import attach_agent
from engine.topics import ensure_topics


class GracefulWorker(faust.Worker):
    """A Faust worker whose shutdown cannot hang, and that can stop itself failing.

    Under load a stream buffering with take() can wait forever during stop. We ack events only
    after their output is delivered, so leaving hard is safe: after ``grace_seconds`` the
    process exits and the unacked events are redelivered to the next owner. ``stop_failing``
    stops it the same way, from inside (e.g. Redis is full), and makes it exit with status 1.
    """

    grace_seconds: float = 15.0
    exit_code: int = 0

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        self._start_grace_timer()
        super()._schedule_shutdown(signum)

    def stop_failing(self) -> None:
        """Stop as on SIGTERM (forced after the grace period), then exit with status 1."""
        self.exit_code = 1
        if not self._signal_stop_time:
            self._start_grace_timer()
            self._signal_stop_time = self.loop.time()
            self._signal_stop_future = asyncio.ensure_future(self._stop_failing(), loop=self.loop)

    async def _stop_failing(self) -> None:
        await self.stop()
        maybe_cancel(self._starting_fut)

    def execute_from_commandline(self) -> NoReturn:
        """Run until stopped; exit with ``exit_code`` unless something else failed first."""
        try:
            super().execute_from_commandline()
        except SystemExit as exc:
            if self.exit_code and not exc.code:
                raise SystemExit(self.exit_code) from None
            raise

    def _start_grace_timer(self) -> None:
        timer = threading.Timer(self.grace_seconds, self._force_exit)
        timer.daemon = True
        timer.start()

    def _on_sigusr1(self) -> None:
        # mode's handler prints local variables, whose repr can raise and crash the worker.
        dump_task_stacks(self.stderr)

    def _force_exit(self) -> None:
        sys.stderr.write(f"segflow worker: stop took over {self.grace_seconds:g}s; exiting now\n")
        sys.stderr.flush()
        os._exit(self.exit_code)


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
    runtime.on_fatal = instance.stop_failing
    instance.execute_from_commandline()
