"""Faults done to a running fleet mid-stream, for the fault matrix (``test_determinism.py``).

Each is a ``Disturbance`` of ``determinism_runs.worker_run``: it waits until the consumer group
committed a share of the events, does something real to a real process or server, and returns
notes (what it saw, e.g. how long a takeover took) that the test reports but never times.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from fleet import Fleet
from helpers import wait_until
from redis import Redis

from engine.settings import Settings
from engine.topics import start_or_close
from engine.worker_process import stop_worker

FORCED_EXIT = "stop took over"
"""What a worker writes when its graceful stop ran past its grace period (engine/cli/worker_cmd.py)."""
WAIT_SECONDS = 300.0
"""How long a fault waits for the run to reach its point (a slow machine's bound)."""


@dataclass(frozen=True)
class FaultScale:
    """How hard the faults hit: ``quick`` for CI, ``full`` by hand (``pytest --faults full``)."""

    redis_pause_seconds: float

    @classmethod
    def named(cls, name: str) -> FaultScale:
        """``quick`` (a 10 s Redis pause) or ``full`` (30 s, as the issue asks)."""
        return cls(redis_pause_seconds=30.0 if name == "full" else 10.0)


async def _committed_sum(settings: Settings) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await start_or_close(admin)
    try:
        committed = await admin.list_consumer_group_offsets(settings.app_id)
    except KafkaError:  # no coordinator yet: nothing committed
        return 0
    finally:
        await admin.close()
    return sum(max(0, c.offset) for tp, c in committed.items() if tp.topic == settings.events_topic)


def wait_committed(fleet: Fleet, at_least: int) -> int:
    """Wait until the group committed ``at_least`` events over all partitions; how many it had."""
    settings = fleet.settings
    reached = wait_until(lambda: asyncio.run(_committed_sum(settings)) >= at_least, WAIT_SECONDS, every=0.5)
    assert reached, f"the group never committed {at_least} events\n{fleet.log_tail()}"
    return asyncio.run(_committed_sum(settings))


def assigned_partitions(web_port: int) -> list[int]:
    """The events partitions a worker holds, from its ``/segflow/ready`` page (503 included)."""
    url = f"http://127.0.0.1:{web_port}/segflow/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read()
    except urllib.error.HTTPError as error:  # not ready: the body still says what it holds
        body = error.read()
    except OSError:
        return []
    return list(json.loads(body).get("assigned_partitions", []))


def pause_redis(settings: Settings, seconds: float) -> None:
    """``CLIENT PAUSE`` every client of the Redis server for ``seconds`` (real server, real pause)."""
    client = Redis(host="127.0.0.1", port=settings.redis_port, socket_timeout=5)
    try:
        client.execute_command("CLIENT", "PAUSE", round(seconds * 1000), "ALL")
    finally:
        client.close()


def gauntlet(scale: FaultScale) -> Callable[[Fleet, int], dict[str, int]]:
    """Two workers; Redis paused; one SIGKILLed, the other takes its partitions over; the
    survivor SIGTERMed under load; a fresh worker finishes. The run must then decide as the
    clean one."""

    def disturb(fleet: Fleet, total: int) -> dict[str, int]:
        partitions = fleet.settings.events_partitions
        notes = {"committed_before_pause": wait_committed(fleet, total // 5)}
        pause_redis(fleet.settings, scale.redis_pause_seconds)
        time.sleep(scale.redis_pause_seconds)
        notes["committed_before_kill"] = wait_committed(fleet, total * 2 // 5)
        (_, first), (survivor_settings, survivor) = fleet.workers[0], fleet.workers[1]
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        killed = time.monotonic()
        took_over = wait_until(
            lambda: len(assigned_partitions(survivor_settings.web_port)) == partitions, WAIT_SECONDS
        )
        assert took_over, f"the survivor never held all {partitions} partitions\n{fleet.log_tail()}"
        notes["takeover_ms"] = round((time.monotonic() - killed) * 1000)
        notes["committed_before_sigterm"] = wait_committed(fleet, total * 3 // 5)
        asked = time.monotonic()
        notes["sigterm_exit_code"] = stop_worker(survivor, timeout=60)
        notes["sigterm_stop_ms"] = round((time.monotonic() - asked) * 1000)
        log = (fleet.logs / "worker-1.log").read_text(errors="replace")
        notes["sigterm_forced"] = int(FORCED_EXIT in log)
        fleet.start()
        return notes

    return disturb
