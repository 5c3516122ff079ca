"""The throughput measurements of ``segflow bench``: a bare consumer, and groups of processes.

Throughput is measured the same way for every side: a *window* opens at the first observation
of steady progress (the bare consumer's first batch decoded and committed; for a group of
worker processes, the first metrics poll at which every process of the group has done some
events, so start-up, group joining and the first rebalance are left out) and closes when the
last event is done. The rate is the events done inside the window divided by its length.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import psutil
import redis
from aiokafka import AIOKafkaConsumer

from engine.kafka_clients import kafka_options
from engine.settings import Settings
from engine.worker_process import read_metrics

POLL_SECONDS = 0.05
APPLIED, DEAD = "segflow_events_applied_total", "segflow_events_dead_lettered_total"
BATCHES = "segflow_batches_total"


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
    """Server-wide Redis counters at one moment (the server may be shared: deltas include others).

    ``commands`` (INFO stats total_commands_processed) counts the commands that Lua scripts run
    as well as those that clients send; ``writes`` (total_writes_processed) counts reply writes
    to clients, about one per round trip (a pipeline's replies go out in one write).
    """

    at: float
    commands: int
    writes: int
    cpu_seconds: float
    calls: dict[str, int]

    @classmethod
    def take(cls, client: redis.Redis | None) -> RedisSnapshot | None:
        """Read the counters (None without a client or when Redis does not answer)."""
        if client is None:
            return None
        try:
            stats, cpu, commandstats = client.info("stats"), client.info("cpu"), client.info("commandstats")
        except redis.RedisError:
            return None
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commandstats.items()}
        used = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        writes = int(stats.get("total_writes_processed", 0))
        return cls(time.perf_counter(), int(stats["total_commands_processed"]), writes, used, calls)

    def since(self, before: RedisSnapshot, snapshots: int = 1) -> RedisDelta:
        """What the server did from ``before`` to this snapshot, less the INFO commands of the
        ``snapshots`` snapshots taken from ``before`` (included) to this one (excluded)."""
        ours = SNAPSHOT_COMMANDS * snapshots
        calls = {
            name: float(n - before.calls.get(name, 0))
            for name, n in self.calls.items()
            if name != "info" and n - before.calls.get(name, 0) > 0
        }
        return RedisDelta(
            seconds=self.at - before.at,
            commands=max(0.0, float(self.commands - before.commands - ours)),
            writes=max(0.0, float(self.writes - before.writes - ours)),
            cpu_seconds=self.cpu_seconds - before.cpu_seconds,
            calls=calls,
        )


# Each snapshot sends three INFO commands (three round trips) that are not the measured side's.
SNAPSHOT_COMMANDS = 3


@dataclass(slots=True)
class RedisDelta:
    """Redis server counters over an interval."""

    seconds: float
    commands: float
    writes: float
    cpu_seconds: float
    calls: dict[str, float]

    def over(self, seconds: float) -> RedisDelta:
        """This interval's rates over ``seconds`` instead."""
        k = seconds / self.seconds if self.seconds > 0 else 0.0
        calls = {name: n * k for name, n in self.calls.items()}
        return RedisDelta(seconds, self.commands * k, self.writes * k, self.cpu_seconds * k, calls)

    def less(self, other: RedisDelta) -> RedisDelta:
        """This interval without ``other`` (each counter at least 0)."""
        calls = {name: max(0.0, n - other.calls.get(name, 0.0)) for name, n in self.calls.items()}
        return RedisDelta(
            self.seconds,
            max(0.0, self.commands - other.commands),
            max(0.0, self.writes - other.writes),
            max(0.0, self.cpu_seconds - other.cpu_seconds),
            calls,
        )


def redis_background(client: redis.Redis | None, seconds: float = 0.5) -> RedisDelta | None:
    """What the shared server does without us, sampled for ``seconds`` before a phase starts."""
    before = RedisSnapshot.take(client)
    time.sleep(seconds)
    after = RedisSnapshot.take(client)
    return None if before is None or after is None else after.since(before)


def redis_per_event(
    delta: RedisDelta | None, events: int, batches: int | None = None, background: RedisDelta | None = None
) -> dict[str, Any] | None:
    """Commands (including those run inside Lua), CPU, round trips and per-command calls per event.

    With ``background`` (the server's activity just before the phase), that activity's rate over
    the window is taken off first: on a shared server, others' commands would count otherwise.
    """
    if delta is None or events <= 0:
        return None
    raw = delta
    if background is not None:
        delta = delta.less(background.over(delta.seconds))
    calls = {name: round(n / events, 3) for name, n in delta.calls.items() if n > 0}
    return {
        "commands_per_event": delta.commands / events,
        "commands_per_event_raw": raw.commands / events,
        "background_commands_per_s": None if background is None else background.over(1.0).commands,
        "cpu_us_per_event": delta.cpu_seconds / events * 1e6,
        "round_trips_per_event": delta.writes / events,
        "round_trips_per_batch": delta.writes / batches if batches else None,
        "calls_per_event": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
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
        """Events done in the window per second."""
        return self.events / self.seconds if self.seconds > 0 else math.nan

    def per_event_us(self, seconds: float | None) -> float | None:
        """``seconds`` spread over the window's events, in microseconds per event."""
        return None if seconds is None or self.events <= 0 else seconds / self.events * 1e6


def _delta(end: float | None, start: float | None) -> float | None:
    return None if end is None or start is None else end - start


async def bare_consume(
    settings: Settings, group: str, target: int, batch: int, kafka_pid: int | None, timeout_s: float
) -> Window:
    """Read ``target`` records in a new group, msgpack-decode each and commit every batch."""
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        **kafka_options(settings),
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
class GroupWatch:
    """Samples a group of worker-like processes: their counters, CPU time and peak RSS."""

    processes: list[subprocess.Popen[bytes]]
    ports: list[int]
    logs: list[str]
    peak_rss: list[int] = field(default_factory=list)
    counters: list[dict[str, int]] = field(default_factory=list)
    token: str = ""
    """The page token (``SEGFLOW_WEB_TOKEN``) the processes were started with."""

    def __post_init__(self) -> None:
        self.peak_rss = [0] * len(self.processes)
        self.counters = [{} for _ in self.processes]

    def sample(self) -> list[int]:
        """Poll each process once; return each one's events done (applied + dead-lettered)."""
        for i, (process, port) in enumerate(zip(self.processes, self.ports, strict=True)):
            if process.poll() is not None:
                raise BenchError(f"{self.logs[i]}: process exited with code {process.returncode}")
            with contextlib.suppress(psutil.Error):
                self.peak_rss[i] = max(self.peak_rss[i], psutil.Process(process.pid).memory_info().rss)
            self.counters[i] = read_metrics(port, self.token) or self.counters[i]
        return [c.get(APPLIED, 0) + c.get(DEAD, 0) for c in self.counters]

    def total(self, name: str) -> int:
        """Counter ``name`` summed over the group (as of the last sample)."""
        return sum(c.get(name, 0) for c in self.counters)

    def wait_done(self, target: int, timeout_s: float) -> int:
        """Poll until the group has done ``target`` events in all; return the total."""
        deadline = time.monotonic() + timeout_s
        while (done := sum(self.sample())) < target:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{len(self.processes)} process(es) did {done} of {target} events in {timeout_s:g}s; "
                    f"see {self.logs[0]}"
                )
            time.sleep(POLL_SECONDS)
        return done


@dataclass(slots=True)
class _Snap:
    at: float
    done: list[int]
    cpu: list[float | None]
    kafka_cpu: float | None
    redis: RedisSnapshot | None
    batches: int


@dataclass(slots=True)
class GroupWindow:
    """A group's throughput window: totals, per-process shares and server-side costs."""

    window: Window
    events_each: list[int]
    cpu_each: list[float | None]
    batches: int
    startup_s: float
    coarse: bool
    """The first poll that saw progress already saw every event: its rate is not a measurement."""


def group_throughput(
    watch: GroupWatch,
    target: int,
    kafka_pid: int | None,
    redis_client: redis.Redis | None,
    started: float,
    timeout_s: float,
    on_open: Callable[[], None] = lambda: None,
    background: RedisDelta | None = None,
) -> GroupWindow:
    """Poll the started group until it has done ``target`` events; measure the steady window.

    ``background`` is the Redis server's activity before the group started (see
    ``redis_per_event``); ``on_open`` is called when the window opens (e.g. to start a profiler).
    """
    deadline = time.monotonic() + timeout_s

    def snap(done: list[int]) -> _Snap:
        return _Snap(
            time.perf_counter(),
            done,
            [cpu_seconds(p.pid) for p in watch.processes],
            cpu_seconds(kafka_pid),
            RedisSnapshot.take(redis_client),
            watch.total(BATCHES),
        )

    previous = snap(watch.sample())
    first_progress: float | None = None
    while True:
        done = watch.sample()
        if sum(done) and first_progress is None:
            first_progress = time.perf_counter()
        if all(done) or sum(done) >= target:
            break
        if time.monotonic() > deadline:
            raise BenchError(
                f"{len(done)} process(es) did {sum(done)} of {target} events in {timeout_s:g}s; "
                f"see {watch.logs[0]}"
            )
        time.sleep(POLL_SECONDS)
        previous = snap(done)
    first = snap(done)
    coarse = sum(done) >= target
    opened = previous if coarse else first
    on_open()
    watch.wait_done(target, max(1.0, deadline - time.monotonic()))
    closed = snap(watch.sample())
    events = sum(closed.done) - sum(opened.done)
    batches = closed.batches - opened.batches
    cpu_each = [_delta(end, start) for end, start in zip(closed.cpu, opened.cpu, strict=True)]
    known = [c for c in cpu_each if c is not None]
    window = Window(
        seconds=closed.at - opened.at,
        events=events,
        cpu_seconds=sum(known) if len(known) == len(cpu_each) else None,
        kafka_cpu_seconds=_delta(closed.kafka_cpu, opened.kafka_cpu),
        redis=redis_per_event(
            None
            if opened.redis is None or closed.redis is None
            else closed.redis.since(opened.redis, 2 if coarse else 1),
            events,
            batches,
            background,
        ),
    )
    return GroupWindow(
        window=window,
        events_each=[end - start for end, start in zip(closed.done, opened.done, strict=True)],
        cpu_each=cpu_each,
        batches=batches,
        startup_s=(first_progress or first.at) - started,
        coarse=coarse,
    )
