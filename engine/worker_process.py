"""Running ``segflow worker`` as a child process and reading its metrics (demo, tests, bench)."""

from __future__ import annotations

import json
import math
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

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr

from engine.settings import NO_PROFILE, PROFILE_VARIABLE, Settings
from engine.web_auth import page_request


def settings_env(settings: Settings) -> dict[str, str]:
    """The SEGFLOW_* variables that reproduce ``settings`` in another process (secrets included:
    the child's environment is not logged).

    They include ``SEGFLOW_PROFILE=none``: the child reads no profile (a ``.segflow.env`` in its
    working directory would otherwise fill in the optionals left out here).
    """
    # An unset optional (None) is left out: its env var would read back as the string "None".
    env = {
        f"SEGFLOW_{k.upper()}": v.get_secret_value() if isinstance(v, SecretStr) else str(v)
        for k, v in settings.model_dump().items()
        if v is not None
    }
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


def metrics_text(port: int, token: str = "") -> str | None:
    """The worker's /segflow/metrics page, with the page ``token`` if any (None when unreachable)."""
    request = page_request(f"http://127.0.0.1:{port}/segflow/metrics", token)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


def parse_samples(text: str) -> list[Sample]:
    """Every sample of an exposition text (prometheus-client's parser: labels, escapes, NaN)."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def sample_key(sample: Sample) -> str:
    """``name`` or ``name{label="value",...}`` (labels sorted, as prometheus-client renders them)."""
    if not sample.labels:
        return sample.name
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}}"


def read_metrics(port: int, token: str = "") -> dict[str, int]:
    """Every sample of the worker's /segflow/metrics page in one request, by ``sample_key``
    (``segflow_events_total{outcome="applied",type="purchase"}``), as whole numbers; samples
    that are not finite (NaN) are left out; empty when unreachable (or refused: no ``token``)."""
    text = metrics_text(port, token)
    if text is None:
        return {}
    return {sample_key(s): int(s.value) for s in parse_samples(text) if math.isfinite(s.value)}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def read_metric(settings: Settings, name: str) -> int:
    """One counter from the worker's metrics page (0 when not reachable)."""
    return read_metrics(settings.web_port, settings.web_secret).get(name, 0)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now (for a worker's web server)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def models_status_of(settings: Settings) -> dict[str, Any]:
    """The worker's /segflow/models page (empty when unreachable)."""
    request = page_request(f"http://127.0.0.1:{settings.web_port}/segflow/models", settings.web_secret)
    try:
        with urllib.request.urlopen(request, timeout=3) as page:
            return dict(json.loads(page.read()))
    except OSError:
        return {}
