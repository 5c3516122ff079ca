"""The throughput measurements of ``segflow bench``: a bare consumer beside a real worker.

Throughput is measured the same way for both sides: a *window* opens at the first observation
of progress (the bare consumer's first batch decoded and committed; the worker's first metrics
poll showing applied > 0) and closes when the last event is done; the rate is the events done
inside the window divided by its length, so start-up and group joining are left out of it and
reported on their own.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import psutil
import redis
from aiokafka import AIOKafkaConsumer

from engine.settings import Settings
from engine.worker_process import read_metrics

POLL_SECONDS = 0.05
APPLIED, DEAD = "segflow_events_applied_total", "segflow_events_dead_lettered_total"


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message is one line meant for a person."""


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (so p50 <= p95 <= p99 <= max always holds)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None when it cannot be read)."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    return times.user + times.system


@dataclass(slots=True)
class RedisSnapshot:
    """Server-wide Redis counters at one moment (the server may be shared: deltas include others)."""

    commands: int
    cpu_seconds: float
    calls: dict[str, int]

    @classmethod
    def take(cls, client: redis.Redis | None) -> RedisSnapshot | None:
        if client is None:
            return None
        try:
            stats, cpu, commandstats = client.info("stats"), client.info("cpu"), client.info("commandstats")
        except redis.RedisError:
            return None
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commandstats.items()}
        used = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return cls(int(stats["total_commands_processed"]), used, calls)


def redis_per_event(
    before: RedisSnapshot | None, after: RedisSnapshot | None, events: int
) -> dict[str, Any] | None:
    """Commands (including those run inside Lua scripts), CPU and per-command calls per event."""
    if before is None or after is None or events <= 0:
        return None
    per_command = {
        name: round((calls - before.calls.get(name, 0)) / events, 3)
        for name, calls in after.calls.items()
        if name != "info" and calls - before.calls.get(name, 0) > 0
    }
    return {
        "commands_per_event": (after.commands - before.commands) / events,
        "cpu_us_per_event": (after.cpu_seconds - before.cpu_seconds) / events * 1e6,
        "calls_per_event": dict(sorted(per_command.items(), key=lambda kv: -kv[1])),
    }


@dataclass(slots=True)
class Window:
    """Resource counters at the start and end of a throughput window."""

    seconds: float
    events: int
    cpu_seconds: float | None
    kafka_cpu_seconds: float | None
    redis: dict[str, Any] | None = None

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.nan

    def per_event_us(self, seconds: float | None) -> float | None:
        return None if seconds is None or self.events <= 0 else seconds / self.events * 1e6


def _delta(end: float | None, start: float | None) -> float | None:
    return None if end is None or start is None else end - start


async def bare_consume(
    settings: Settings, group: str, target: int, batch: int, kafka_pid: int | None, timeout_s: float
) -> Window:
    """Read ``target`` records in a new group, msgpack-decode each and commit every batch."""
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        seen, first = 0, None
        while seen < target:
            batches = await consumer.getmany(timeout_ms=1000, max_records=batch)
            for records in batches.values():
                for record in records:
                    msgpack.unpackb(record.value, raw=False, strict_map_key=False)
                seen += len(records)
            if batches:
                await consumer.commit()
                if first is None:
                    first = (time.perf_counter(), seen, time.process_time(), cpu_seconds(kafka_pid))
            if time.monotonic() > deadline:
                raise BenchError(f"bare consumer read {seen} of {target} records in {timeout_s:g}s")
        end = (time.perf_counter(), seen, time.process_time(), cpu_seconds(kafka_pid))
    finally:
        await consumer.stop()
    assert first is not None
    return Window(
        seconds=end[0] - first[0],
        events=end[1] - first[1],
        cpu_seconds=end[2] - first[2],
        kafka_cpu_seconds=_delta(end[3], first[3]),
    )


@dataclass(slots=True)
class WorkerWatch:
    """Samples one worker process: its counters, CPU time and peak RSS."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: str
    peak_rss: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    def sample(self) -> int:
        """Poll once; return events done (applied + dead-lettered). Raises if the worker died."""
        if self.process.poll() is not None:
            raise BenchError(f"worker exited with code {self.process.returncode}; see {self.log_path}")
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, psutil.Process(self.process.pid).memory_info().rss)
        self.counters = read_metrics(self.port) or self.counters
        return self.counters.get(APPLIED, 0) + self.counters.get(DEAD, 0)

    def wait_done(self, target: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.sample() < target:
            if time.monotonic() > deadline:
                raise BenchError(f"worker did {self.sample()} of {target} events in {timeout_s:g}s")
            time.sleep(POLL_SECONDS)


def worker_throughput(
    watch: WorkerWatch,
    target: int,
    kafka_pid: int | None,
    redis_client: redis.Redis | None,
    started: float,
    timeout_s: float,
) -> tuple[Window, float, bool]:
    """Poll the started worker until ``target`` events are done.

    Returns the window, the start-up seconds (start to the first poll that saw applied > 0)
    and whether the window was too short to measure: when the first poll that saw progress
    already saw every event, the window is the last poll interval and the rate a lower bound.
    """
    deadline = time.monotonic() + timeout_s

    def snapshot(done: int) -> tuple[float, int, float | None, float | None, RedisSnapshot | None]:
        pid = watch.process.pid
        return (
            time.perf_counter(),
            done,
            cpu_seconds(pid),
            cpu_seconds(kafka_pid),
            RedisSnapshot.take(redis_client),
        )

    previous = snapshot(0)
    while (done := watch.sample()) == 0:
        if time.monotonic() > deadline:
            raise BenchError(f"worker applied nothing in {timeout_s:g}s; see {watch.log_path}")
        time.sleep(POLL_SECONDS)
        previous = snapshot(0)
    first = snapshot(done)
    coarse = done >= target
    opened = previous if coarse else first
    watch.wait_done(target, max(1.0, deadline - time.monotonic()))
    closed = snapshot(watch.sample())
    events = closed[1] - opened[1]
    window = Window(
        seconds=closed[0] - opened[0],
        events=events,
        cpu_seconds=_delta(closed[2], opened[2]),
        kafka_cpu_seconds=_delta(closed[3], opened[3]),
        redis=redis_per_event(opened[4], closed[4], events),
    )
    return window, first[0] - started, coarse
