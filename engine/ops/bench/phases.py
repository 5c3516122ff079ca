"""The phases of one bench round: bare consumer, the naive pipeline, worker groups, latency.

Each round has topics of its own (``segflow-bench-<run>-r<round>.*``) with the workload
produced afresh, and every phase that runs processes gives them a consumer group and a Redis
key prefix of their own (``segflow-bench-<run>-r<round>-<phase>``, ``<run prefix>r<round><phase>``),
so no phase sees another's state and no round another's. The latency phase restarts the
fastest worker group of the round, which resumes caught up (its offsets committed, its state in
Redis), and appends the workload's continuation to the round's topic at a paced rate.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from engine.ops.bench.latency import (
    Record,
    event_time_ms,
    measure_latency,
    new_customer_events,
    restamped,
)
from engine.ops.bench.measure import (
    APPLIED,
    DEAD,
    BenchError,
    GroupWatch,
    RedisDelta,
    bare_consume,
    group_throughput,
    redis_background,
)
from engine.ops.bench.profile import Profiler, top_frames
from engine.ops.bench.progress import Reporter
from engine.settings import Settings
from engine.worker_process import free_port, start_worker

NAIVE_ARGS = ("-m", "engine.ops.bench.naive")
WARM_UP_ROUNDS = 3
WARM_UP_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class LatencyParams:
    """The paced streams of a latency phase."""

    loads: tuple[float, ...]
    seconds: float
    timeout: float


@dataclass(frozen=True, slots=True)
class Round:
    """What every phase of one round shares."""

    settings: Settings
    run_id: str
    number: int
    target: int
    batch: int
    kafka_pid: int | None
    client: redis.Redis | None
    work: Path
    reporter: Reporter

    @property
    def timeout(self) -> float:
        """Seconds any one phase may take before the bench gives up on it."""
        return 120.0 + self.target / 100

    def phase_settings(self, phase: str) -> Settings:
        """The round's settings with a consumer group and key prefix of the phase's own."""
        return self.settings.model_copy(
            update={
                "app_id": f"{self.settings.app_id}-{phase}",
                "key_prefix": f"{self.settings.key_prefix}{phase}",
                # Worker data and the checkpoint key stay in the run's work dir.
                "stack_dir": self.work / "stack",
            }
        )


def bare_phase(r: Round) -> dict[str, Any]:
    """Read the whole topic with a bare consumer (decode only) in a new group."""
    group = f"{r.settings.app_id}-bare"
    window = asyncio.run(bare_consume(r.settings, group, r.target, r.batch, r.kafka_pid, r.timeout))
    return {
        "events_per_s": window.events_per_s,
        "window": {"events": window.events, "seconds": window.seconds},
        "cpu_us_per_event": window.per_event_us(window.cpu_seconds),
        "kafka_cpu_us_per_event": window.per_event_us(window.kafka_cpu_seconds),
    }


def _start_group(
    settings: Settings, count: int, work: Path, name: str, args: tuple[str, ...] | None = None
) -> GroupWatch:
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    logs = [work / f"{name}-{i + 1}.log" for i in range(count)]
    processes = []
    for port, log in zip(ports, logs, strict=True):
        each = settings.model_copy(update={"web_port": port})
        processes.append(start_worker(each, log) if args is None else start_worker(each, log, args))
    return GroupWatch(processes, ports, [str(log) for log in logs], token=settings.web_secret)


def _stop_group(watch: GroupWatch, timeout: float = 30.0) -> list[int]:
    """SIGTERM every process at once, then wait for each (killed after ``timeout``)."""
    for process in watch.processes:
        if process.poll() is None:
            process.terminate()
    codes = []
    deadline = time.monotonic() + timeout
    for process in watch.processes:
        try:
            codes.append(process.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes


def _group_figures(
    r: Round, watch: GroupWatch, target: int, profile: bool, name: str, background: RedisDelta | None
) -> dict[str, Any]:
    """Run the throughput window of a started group over ``target`` events; the phase's figures."""
    profiler = (
        Profiler(watch.processes[0].pid, r.work / f"profile-{name}.speedscope.json") if profile else None
    )
    started = time.perf_counter()
    try:
        measured = group_throughput(
            watch,
            target,
            r.kafka_pid,
            r.client,
            started,
            r.timeout,
            profiler.start if profiler else lambda: None,
            background,
        )
    except BaseException:
        if profiler is not None and profiler.running:
            profiler.kill()
        raise
    profile_path = profiler.stop() if profiler else None
    window, redis_stats = measured.window, measured.window.redis or {}
    batches = measured.batches
    return {
        "processes": len(watch.processes),
        "events_per_s": window.events_per_s,
        "window": {"events": window.events, "seconds": window.seconds, "coarse": measured.coarse},
        "startup_s": measured.startup_s,
        "events_each": measured.events_each,
        "cpu_us_per_event": window.per_event_us(window.cpu_seconds),
        "cpu_us_per_event_each": [
            None if cpu is None or events <= 0 else cpu / events * 1e6
            for cpu, events in zip(measured.cpu_each, measured.events_each, strict=True)
        ],
        "cores_used": None if window.cpu_seconds is None else window.cpu_seconds / window.seconds,
        "load_average": os.getloadavg()[0],
        "kafka_cpu_us_per_event": window.per_event_us(window.kafka_cpu_seconds),
        "redis_commands_per_event": redis_stats.get("commands_per_event"),
        "redis_commands_per_event_raw": redis_stats.get("commands_per_event_raw"),
        "redis_background_commands_per_s": redis_stats.get("background_commands_per_s"),
        "redis_cpu_us_per_event": redis_stats.get("cpu_us_per_event"),
        "redis_round_trips_per_event": redis_stats.get("round_trips_per_event"),
        "redis_round_trips_per_batch": redis_stats.get("round_trips_per_batch"),
        "redis_calls_per_event": redis_stats.get("calls_per_event"),
        "batches": batches,
        "events_per_batch": window.events / batches if batches else None,
        "peak_rss_mb": max(watch.peak_rss) / 2**20,
        "peak_rss_mb_each": [rss / 2**20 for rss in watch.peak_rss],
        "profile": None if profile_path is None else {"path": str(profile_path)} | top_frames(profile_path),
    }


def _finish_group(watch: GroupWatch, figures: dict[str, Any]) -> dict[str, Any]:
    stopping = time.perf_counter()
    codes = _stop_group(watch)
    return figures | {
        "stop_s": time.perf_counter() - stopping,
        "applied": watch.total(APPLIED),
        "dead_lettered": watch.total(DEAD),
        "pids": [p.pid for p in watch.processes],
        "exit_codes": codes,
        "pids_gone": [not psutil.pid_exists(p.pid) for p in watch.processes],
        "logs": watch.logs,
    }


def group_phase(r: Round, count: int, profile: bool) -> dict[str, Any]:
    """``count`` real workers in one new group read the whole topic (features, rules, Redis, changes).

    The group's Redis keys stay until the round ends: the latency phase may resume this group.
    """
    settings = r.phase_settings(f"w{count}")
    name = f"r{r.number}-worker{count}"
    background = redis_background(r.client)
    watch = _start_group(settings, count, r.work, name)
    figures: dict[str, Any] = {}
    try:
        figures = _group_figures(r, watch, r.target, profile, name, background)
    finally:
        result = _finish_group(watch, figures)
    return result | {"key_prefix": settings.key_prefix}


def naive_phase(r: Round, target: int) -> dict[str, Any]:
    """The naive pipeline (``engine.ops.bench.naive``) does the first ``target`` events of the topic."""
    settings = r.phase_settings("naive")
    settings = settings.model_copy(update={"changes_topic": f"{r.settings.app_id}.naive-changes"})
    background = redis_background(r.client)
    watch = _start_group(settings, 1, r.work, f"r{r.number}-naive", NAIVE_ARGS)
    figures: dict[str, Any] = {}
    try:
        figures = _group_figures(r, watch, target, False, f"r{r.number}-naive", background)
    finally:
        result = _finish_group(watch, figures)
    return result | {"key_prefix": settings.key_prefix}


def latency_phase(
    r: Round,
    count: int,
    max_rate: float,
    continuation: list[Record],
    params: LatencyParams,
) -> dict[str, Any]:
    """Paced streams at each load x ``max_rate`` to the round's ``count``-worker group, resumed.

    The group first handles a few first events of new customers (so it has joined, caught up
    and every process owns partitions), then for each load the next events of ``continuation``,
    at most ``params.seconds`` of them, with event times advancing at the live pace from where
    the workload ended (``restamped``).
    """
    settings = r.phase_settings(f"w{count}")
    watch = _start_group(settings, count, r.work, f"r{r.number}-latency{count}")
    figures: dict[str, Any] = {"workers": count, "max_rate": max_rate, "loads": {}}
    tag = f"bl{r.run_id.replace('-', '')}r{r.number}"
    ts_ms = event_time_ms(continuation[0]) if continuation else int(time.time() * 1000)
    try:
        handled = 0
        for attempt in range(WARM_UP_ROUNDS):
            warm = new_customer_events(f"{tag}w{attempt}", 4 * settings.events_partitions, ts_ms)
            handled += len(warm)
            asyncio.run(measure_latency(settings, warm, 100.0, _handled(watch, handled), r.timeout))
            if all(watch.sample()):
                break
        else:
            raise BenchError(f"not every latency worker got events after warm-up; see {watch.logs[0]}")
        # The restarted workers' record caches are empty: an untimed first stretch of the
        # continuation warms them, as a worker in steady state is (its first batch after a
        # restart reads every customer from Redis).
        warm_up = min(len(continuation) // 5, WARM_UP_EVENTS)
        left = continuation[warm_up:]
        if warm_up:
            rate = 0.5 * max_rate
            handled += warm_up
            asyncio.run(
                measure_latency(
                    settings,
                    restamped(continuation[:warm_up], ts_ms, rate),
                    rate,
                    _handled(watch, handled),
                    params.timeout,
                )
            )
            ts_ms += round(warm_up * 1000 / rate) + 1
        for load in params.loads:
            rate = load * max_rate
            r.reporter.step(f"round {r.number}: latency at {load:.0%} ({rate:,.0f}/s)")
            size = max(10, round(rate * params.seconds))
            chunk, left = left[:size], left[size:]
            if len(chunk) < size:
                r.reporter.note(
                    f"round {r.number}: the workload's continuation ran out: {len(chunk)} of {size} events "
                    f"at {load:.0%} (lower --latency-seconds or raise --events)"
                )
            if not chunk:
                continue
            chunk = restamped(chunk, ts_ms, rate)  # event time at the live pace, from the workload's end
            ts_ms += round(len(chunk) * 1000 / rate) + 1
            handled += len(chunk)
            result = asyncio.run(
                measure_latency(settings, chunk, rate, _handled(watch, handled), params.timeout)
            )
            summary = result.summary() | {"fraction": load}
            figures["loads"][f"{round(load * 100)}"] = summary
            e2e = summary["end_to_end"]
            r.reporter.note(
                f"round {r.number}: latency at {load:.0%}: offered {rate:,.0f}/s, achieved "
                f"{summary['achieved_per_s']:,.0f}/s, {summary['matched']} of {summary['sent']} events "
                f"changed a segment, p50 {e2e['p50']:,.0f} ms, p99 {e2e['p99']:,.0f} ms"
            )
    finally:
        figures = _finish_group(watch, figures)
    return figures


def _handled(watch: GroupWatch, events: int) -> Callable[[], bool]:
    """Whether the group has handled ``events`` since it started (its counters)."""
    return lambda: sum(watch.sample()) >= events
