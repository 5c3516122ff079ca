"""Faults done to a running fleet mid-stream, for the fault matrix (``test_determinism.py``).

Each is a ``Disturbance`` of ``determinism_runs.worker_run``: it waits until the consumer group
committed a share of the events, does something real to a real process or server, and returns
notes (what it saw, e.g. how long a takeover took) that the test reports but never times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from fleet import Fleet
from helpers import wait_until
from redis import Redis

from engine.settings import Settings
from engine.stack import kafka as kafka_server
from engine.stack import redis as redis_server
from engine.stack.toxiproxy import KAFKA_PROXY, REDIS_PROXY
from engine.stack.toxiproxy_api import ToxiproxyClient, latency, reset_peer, timeout
from engine.topics import start_or_close
from engine.worker_process import stop_worker

FORCED_EXIT = "stop took over"
"""What a worker writes when its graceful stop ran past its grace period (engine/cli/worker_cmd.py)."""
WAIT_SECONDS = 300.0
"""How long a fault waits for the run to reach its point (a slow machine's bound)."""


@dataclass(frozen=True)
class FaultScale:
    """How hard the faults hit: ``quick`` for CI, ``full`` by hand (``pytest --faults full``)."""

    name: str
    redis_pause_seconds: float
    redis_down_seconds: float
    broker_down_seconds: float
    slow_link_seconds: float
    dropped_link_seconds: float

    @property
    def full(self) -> bool:
        """Whether each fault also gets a run of its own (``--faults full``)."""
        return self.name == "full"

    @classmethod
    def named(cls, name: str) -> FaultScale:
        """``quick``: seconds of each fault; ``full``: a 30 s Redis pause (as the issue asks),
        15 s outages, 30 s of network latency and 15 s of each network drop."""
        if name == "full":
            return cls("full", 30.0, 15.0, 15.0, 30.0, 15.0)
        return cls("quick", 10.0, 4.0, 10.0, 4.0, 5.0)


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


def assigned_partitions(settings: Settings) -> list[int]:
    """The events partitions a worker holds, from its ``/segflow/ready`` page (503 included)."""
    url = f"http://127.0.0.1:{settings.web_port}/segflow/ready"
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
    """Two workers, then, each once the group committed another sixth of the events: Redis
    paused (``CLIENT PAUSE``); Redis stopped and started (AOF on); one worker SIGKILLed, the
    other taking its partitions over; the broker stopped and started; the survivor SIGTERMed
    under load and a fresh worker finishing. The run must then decide as the clean one."""

    def disturb(fleet: Fleet, total: int) -> dict[str, int]:
        settings, partitions = fleet.settings, fleet.settings.events_partitions
        notes = {"committed_before_pause": wait_committed(fleet, total // 6)}
        pause_redis(settings, scale.redis_pause_seconds)
        time.sleep(scale.redis_pause_seconds)

        notes["committed_before_redis_stop"] = wait_committed(fleet, total * 2 // 6)
        redis_server.down(settings)
        time.sleep(scale.redis_down_seconds)
        redis_server.up(settings)

        notes["committed_before_kill"] = wait_committed(fleet, total * 3 // 6)
        (_, first), (survivor_settings, survivor) = fleet.workers[0], fleet.workers[1]
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        killed = time.monotonic()
        took_over = wait_until(
            lambda: len(assigned_partitions(survivor_settings)) == partitions, WAIT_SECONDS
        )
        assert took_over, f"the survivor never held all {partitions} partitions\n{fleet.log_tail()}"
        notes["takeover_ms"] = round((time.monotonic() - killed) * 1000)

        notes["committed_before_broker_stop"] = wait_committed(fleet, total * 4 // 6)
        kafka_server.down(settings)
        time.sleep(scale.broker_down_seconds)
        kafka_server.up(settings)

        notes["committed_before_sigterm"] = wait_committed(fleet, total * 5 // 6)
        asked = time.monotonic()
        notes["sigterm_exit_code"] = stop_worker(survivor, timeout=60)
        notes["sigterm_stop_ms"] = round((time.monotonic() - asked) * 1000)
        log = (fleet.logs / "worker-1.log").read_text(errors="replace")
        notes["sigterm_forced"] = int(FORCED_EXIT in log)
        fleet.start()
        return notes

    return disturb


Fault = Callable[[], contextlib.AbstractContextManager[object]]


@contextlib.contextmanager
def _both_ways(api: ToxiproxyClient, proxy: str, ms: int) -> Iterator[None]:
    with api.applied(proxy, timeout(ms, "upstream")), api.applied(proxy, timeout(ms, "downstream")):
        yield


def link_faults(api: ToxiproxyClient, scale: FaultScale) -> list[tuple[str, Fault, float]]:
    """The faults on the worker's links, one after the other: (name, the fault, how long).

    Redis: slow (latency 50 ± 20 ms), every connection reset as a reply comes, then silent (no
    data either way, each connection closed after the drop's length). Kafka: slow, silent, then
    the proxy disabled (connections refused)."""
    drop_ms = int(scale.dropped_link_seconds * 1000)
    slow, drop = scale.slow_link_seconds, scale.dropped_link_seconds
    return [
        ("redis_slow", lambda: api.applied(REDIS_PROXY, latency(50, 20)), slow),
        ("redis_reset", lambda: api.applied(REDIS_PROXY, reset_peer(0)), drop),
        ("redis_silent", lambda: _both_ways(api, REDIS_PROXY, drop_ms), drop),
        ("kafka_slow", lambda: api.applied(KAFKA_PROXY, latency(50, 20)), slow),
        ("kafka_silent", lambda: _both_ways(api, KAFKA_PROXY, drop_ms), drop),
        ("kafka_refused", lambda: api.disabled(KAFKA_PROXY), drop),
    ]


def network_faults(api: ToxiproxyClient, scale: FaultScale) -> Callable[[Fleet, int], dict[str, int]]:
    """A disturbance for a worker behind the stack's proxies: the ``link_faults`` once the group
    committed a fifth of the events; notes what was committed as each fault ended."""

    def disturb(fleet: Fleet, total: int) -> dict[str, int]:
        notes = {"committed_at_first_fault": wait_committed(fleet, total // 5)}
        for name, fault, seconds in link_faults(api, scale):
            with fault():
                time.sleep(seconds)
            notes[f"committed_after_{name}"] = asyncio.run(_committed_sum(fleet.settings))
        return notes

    return disturb
