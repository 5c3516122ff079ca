"""Running ``segflow worker`` as a child process and reading its metrics (demo, tests, bench)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.settings import NO_PROFILE, PROFILE_VARIABLE, Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The SEGFLOW_* variables that reproduce ``settings`` in another process.

    They include ``SEGFLOW_PROFILE=none``: the child reads no profile (a ``.segflow.env`` in its
    working directory would otherwise fill in the optionals left out here).
    """
    # An unset optional (None) is left out: its env var would read back as the string "None".
    env = {f"SEGFLOW_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None}
    env[PROFILE_VARIABLE] = NO_PROFILE
    return env


WORKER_ARGS = ("-m", "engine", "worker")
LEARNER_ARGS = ("-m", "engine", "learner")


def start_worker(
    settings: Settings, log_path: Path, args: Sequence[str] = WORKER_ARGS, own_session: bool = False
) -> subprocess.Popen[bytes]:
    """Run ``segflow worker`` (or ``python <args>``) in a child process with ``settings``.

    The child inherits this process's environment (PYTHONPATH included) except ``SEGFLOW_*``,
    which come from ``settings`` alone. With ``own_session`` the terminal's Ctrl-C does not reach
    it: the caller stops it (``stop_worker``), once.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SEGFLOW_")}
    env.update(settings_env(settings))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )


def start_learner(settings: Settings, log_path: Path, args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Run ``segflow learner [args]`` in a child process with ``settings`` (as ``start_worker``)."""
    return start_worker(settings, log_path, (*LEARNER_ARGS, *args))


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM the worker and wait for it (it forces its own exit after its grace period)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def wait_for_metric(
    settings: Settings, name: str, at_least: int, stall_seconds: float, process: subprocess.Popen[bytes]
) -> int:
    """Poll the worker's metrics page until counter ``name`` reaches ``at_least``.

    Gives up (returning the last value) once the counter has not grown for ``stall_seconds``,
    however long the whole wait took (a busy machine is slow, not stuck), or when ``process``
    exited: its port may then answer for another process.
    """
    value, moved = 0, time.monotonic()
    while process.poll() is None:
        seen = read_metric(settings, name)
        if seen >= at_least:
            return seen
        if seen > value:
            value, moved = seen, time.monotonic()
        elif time.monotonic() - moved > stall_seconds:
            break
        time.sleep(0.5)
    return value


def read_metrics(port: int) -> dict[str, int]:
    """Every sample of the worker's /segflow/metrics page in one request, by name with its labels
    (``segflow_lift_exposures{...}``), as whole numbers (empty when unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/segflow/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    counters = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")  # label values may hold spaces
            counters[name] = int(float(value))
    return counters


def read_metric(settings: Settings, name: str) -> int:
    """One counter from the worker's metrics page (0 when not reachable)."""
    return read_metrics(settings.web_port).get(name, 0)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now (for a worker's web server)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def models_status_of(settings: Settings) -> dict[str, Any]:
    """The worker's /segflow/models page (empty when unreachable)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{settings.web_port}/segflow/models", timeout=3
        ) as page:
            return dict(json.loads(page.read()))
    except OSError:
        return {}
