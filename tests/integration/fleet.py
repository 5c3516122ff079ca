"""The worker processes of one test run, and what a failure message shows about them."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from engine.settings import Settings
from engine.worker_process import free_port, read_metrics, start_worker, stop_worker

APPLIED = "segflow_events_applied_total"
DIAGNOSED = ("segflow_events_total", "segflow_batch", "segflow_customers_ticked", "segflow_model_ready")
"""Metrics (by prefix) a failure message shows."""


class Fleet:
    """The worker processes of one run: each has its own web port (metrics) and log file."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.workers: list[tuple[Settings, subprocess.Popen[bytes]]] = []

    def start(self) -> subprocess.Popen[bytes]:
        """Start one more worker in the run's consumer group."""
        own = self.settings.model_copy(update={"web_port": free_port()})
        process = start_worker(own, self.logs / f"worker-{len(self.workers)}.log")
        self.workers.append((own, process))
        return process

    def metric(self, name: str) -> int:
        """Counter ``name`` summed over the live workers."""
        return sum(
            read_metrics(s.web_port, s.web_secret).get(name, 0) for s, p in self.workers if p.poll() is None
        )

    def stop(self) -> None:
        """SIGTERM every worker and wait for it."""
        for _, process in self.workers:
            stop_worker(process)

    def diagnose(self) -> str:
        """For a failure message: each live worker's counters and the stacks of its asyncio tasks."""
        parts = []
        for index, (own, process) in enumerate(self.workers):
            if process.poll() is not None:
                parts.append(f"--- worker-{index}: exited with {process.returncode}")
                continue
            try:
                counters = {
                    k: v
                    for k, v in read_metrics(own.web_port, own.web_secret).items()
                    if k.startswith(DIAGNOSED) and "_bucket" not in k and v
                }
            except OSError as exc:
                counters = {"metrics not read": str(exc)}
            # The worker writes the stack of every asyncio task on SIGUSR1 (engine.ops.task_dump).
            log_path = self.logs / f"worker-{index}.log"
            seen = log_path.stat().st_size
            process.send_signal(signal.SIGUSR1)
            time.sleep(3)
            with log_path.open("rb") as log:
                log.seek(seen)
                tasks = _our_frames(log.read().decode(errors="replace"))
            parts.append(f"--- worker-{index}: {counters}\n{tasks}")
        return "\n".join(parts)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every worker's log, for a failure message."""
        tails = []
        for index in range(len(self.workers)):
            text = (self.logs / f"worker-{index}.log").read_text(errors="replace").splitlines()
            tails.append(f"--- worker-{index}.log\n" + "\n".join(text[-lines:]))
        return "\n".join(tails)


def _our_frames(dump: str) -> str:
    """The task headers and segflow's own frames (file line and code) of a task dump."""
    kept, lines = [], dump.splitlines()
    for index, line in enumerate(lines):
        text = line.strip()
        if text.startswith("--- task"):
            kept.append(text[:160])
        elif text.startswith("File") and any(f"/{top}/" in text for top in ("engine", "features", "models")):
            code = lines[index + 1].strip() if index + 1 < len(lines) else ""
            kept.append(f"    {text} | {code}")
    return "\n".join(kept)
