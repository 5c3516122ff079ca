"""``segflow bench``: a real worker beside a bare consumer on the same broker, as a ratio.

One run builds a simulated workload once, produces it once to its own topics
(``segflow-bench-<run id>.events``, ``.segment-changes``, ``.dlq``), then in each round:

1. a bare aiokafka consumer in a new group reads the whole topic, msgpack-decodes each value
   and commits every batch (the floor: what reading the broker costs in Python);
2. a real ``segflow worker`` in a new group with a new Redis key prefix does the same work for
   real (features, rules, Redis commits, segment changes);
3. with that worker caught up, a paced stream of first events of new customers measures the
   latency from sending an event to reading the segment change it causes.

Rates are measured in a window that leaves out start-up (see ``engine.bench_measure``). The
machine may be shared and noisy, so each round is reported and the median of the rounds is the
headline. Redis keys of every bench prefix are deleted at the end; the topics and the consumer
groups remain (delete them with ``kafka-topics.sh --delete --topic 'segflow-bench-.*'``).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from engine.bench_latency import measure_latency
from engine.bench_measure import (
    APPLIED,
    DEAD,
    BenchError,
    WorkerWatch,
    bare_consume,
    worker_throughput,
)
from engine.bench_setup import (
    build_workload,
    delete_prefix,
    machine_facts,
    produce_workload,
    records_in_topic,
    redis_client,
)
from engine.settings import Settings, namespaced
from engine.topics import ensure_topics
from engine.worker_process import free_port, start_worker, stop_worker

__all__ = ["BenchError", "BenchParams", "run_bench"]

Progress = Callable[[str], None]
MEDIAN_KEYS = (
    "bare_events_per_s",
    "worker_events_per_s",
    "ratio",
    "bare_cpu_us_per_event",
    "worker_cpu_us_per_event",
    "kafka_cpu_us_per_event_bare",
    "kafka_cpu_us_per_event_worker",
    "redis_commands_per_event",
    "redis_cpu_us_per_event",
    "worker_peak_rss_mb",
    "worker_startup_s",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "latency_worker_p50_ms",
    "latency_worker_p99_ms",
)


@dataclass(frozen=True, slots=True)
class BenchParams:
    """What one bench run does."""

    events: int = 200_000
    customers: int = 5_000
    rounds: int = 3
    partitions: int = 8
    batch: int = 500
    latency_events: int = 2_000
    latency_rate: float = 500.0
    seed: int = 7

    def validate(self) -> None:
        """Raise ValueError with a one-line reason for parameters that cannot work."""
        if not 1 <= self.batch <= 100_000:
            raise ValueError(f"--batch must be between 1 and 100000, not {self.batch}")
        if self.events < 2 * self.batch:
            raise ValueError(
                f"--events ({self.events}) must be at least twice --batch ({self.batch}): "
                "rates are measured after the first batch"
            )
        checks = [
            (self.customers >= 1, f"--customers must be at least 1, not {self.customers}"),
            (self.rounds >= 1, f"--rounds must be at least 1, not {self.rounds}"),
            (1 <= self.partitions <= 1024, f"--partitions must be between 1 and 1024, not {self.partitions}"),
            (self.latency_events >= 1, f"--latency-events must be at least 1, not {self.latency_events}"),
            (self.latency_rate > 0, f"--latency-rate must be positive, not {self.latency_rate:g}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def run_bench(base: Settings, params: BenchParams, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Run the whole benchmark and return the report (see ``engine.bench_report``)."""
    params.validate()
    facts, kafka_pid = machine_facts(base)
    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]
    # Topics segflow-bench-<run id>.{events,segment-changes,dlq}; each round gets its own group and prefix.
    settings = namespaced(base, f"segflow-bench-{run_id}", f"bench{run_id.replace('-', '')}").model_copy(
        update={
            "events_partitions": params.partitions,
            "changes_partitions": params.partitions,
            "batch_max_events": params.batch,
        }
    )
    work = settings.stack_dir / "bench" / run_id
    client = redis_client(settings)
    prefixes: list[str] = []
    try:
        progress(f"[bench] run {run_id}: building {params.events} events of {params.customers} customers")
        workload = build_workload(params.events, params.customers, params.seed)
        customers = len({key for key, _ in workload})
        asyncio.run(ensure_topics(settings))
        seconds = asyncio.run(produce_workload(settings, workload))
        size = sum(len(value) for _, value in workload)
        del workload
        progress(f"[bench] produced {params.events} events to {settings.events_topic} in {seconds:.1f}s")
        rounds = []
        for number in range(1, params.rounds + 1):
            prefix = f"{settings.key_prefix}r{number}"
            prefixes.append(prefix)
            rounds.append(_round(settings, params, run_id, number, prefix, kafka_pid, client, work, progress))
            delete_prefix(client, prefix)
        return {
            "run_id": run_id,
            "machine": facts,
            "params": asdict(params),
            "workload": {
                "events": params.events,
                "customers": customers,
                "bytes": size,
                "produce_seconds": seconds,
                "produce_events_per_s": params.events / seconds,
            },
            "topics": [settings.events_topic, settings.changes_topic, settings.dlq_topic],
            "rounds": rounds,
            "median": {
                key: statistics.median(values)
                for key in MEDIAN_KEYS
                if (values := [r[key] for r in rounds if r.get(key) is not None and not math.isnan(r[key])])
            },
            "work_dir": str(work),
        }
    finally:
        for prefix in prefixes:
            delete_prefix(client, prefix)
        if client is not None:
            client.close()


def _round(
    settings: Settings,
    params: BenchParams,
    run_id: str,
    number: int,
    prefix: str,
    kafka_pid: int | None,
    client: redis.Redis | None,
    work: Path,
    progress: Progress,
) -> dict[str, Any]:
    """One round: bare consumer, then a real worker for throughput and latency."""
    target = asyncio.run(records_in_topic(settings))
    timeout = 120.0 + target / 200
    bare = asyncio.run(
        bare_consume(
            settings, f"segflow-bench-{run_id}-bare-r{number}", target, params.batch, kafka_pid, timeout
        )
    )
    progress(f"[bench] round {number}: bare consumer {bare.events_per_s:,.0f} events/s")
    worker_settings = settings.model_copy(
        update={"app_id": f"segflow-bench-{run_id}-r{number}", "key_prefix": prefix, "web_port": free_port()}
    )
    log_path = work / f"worker-r{number}.log"
    started = time.perf_counter()
    process = start_worker(worker_settings, log_path)
    watch = WorkerWatch(process, worker_settings.web_port, str(log_path))
    try:
        window, startup, coarse = worker_throughput(watch, target, kafka_pid, client, started, timeout)
        applied, dead = watch.counters.get(APPLIED, 0), watch.counters.get(DEAD, 0)
        progress(f"[bench] round {number}: segflow worker {window.events_per_s:,.0f} events/s")
        tag = f"bl{run_id.replace('-', '')}r{number}"
        latency = asyncio.run(
            measure_latency(worker_settings, tag, params.latency_events, params.latency_rate, 30.0)
        ).summary()
        watch.wait_done(target + latency["matched"], 30.0)
        e2e = latency["end_to_end"]
        progress(f"[bench] round {number}: latency p50 {e2e['p50']:.0f} ms, p99 {e2e['p99']:.0f} ms")
    finally:
        exit_code = stop_worker(process)
    pid_gone = not psutil.pid_exists(process.pid)
    redis_stats = window.redis or {}
    return {
        "round": number,
        "events": target,
        "bare_events_per_s": bare.events_per_s,
        "bare_window": {"events": bare.events, "seconds": bare.seconds},
        "bare_cpu_us_per_event": bare.per_event_us(bare.cpu_seconds),
        "kafka_cpu_us_per_event_bare": bare.per_event_us(bare.kafka_cpu_seconds),
        "worker_events_per_s": window.events_per_s,
        "worker_window": {"events": window.events, "seconds": window.seconds, "coarse": coarse},
        "ratio": window.events_per_s / bare.events_per_s,
        "worker_startup_s": startup,
        "worker_cpu_us_per_event": window.per_event_us(window.cpu_seconds),
        "kafka_cpu_us_per_event_worker": window.per_event_us(window.kafka_cpu_seconds),
        "worker_peak_rss_mb": watch.peak_rss / 2**20,
        "redis_commands_per_event": redis_stats.get("commands_per_event"),
        "redis_cpu_us_per_event": redis_stats.get("cpu_us_per_event"),
        "redis_calls_per_event": redis_stats.get("calls_per_event"),
        "worker_applied": applied,
        "worker_dead_lettered": dead,
        "worker_pid": process.pid,
        "worker_exit_code": exit_code,
        "worker_pid_gone": pid_gone,
        "worker_log": str(log_path),
        "latency": latency,
        "latency_p50_ms": e2e["p50"],
        "latency_p95_ms": e2e["p95"],
        "latency_p99_ms": e2e["p99"],
        "latency_max_ms": e2e["max"],
        "latency_worker_p50_ms": latency["to_worker_produce"]["p50"],
        "latency_worker_p99_ms": latency["to_worker_produce"]["p99"],
    }
