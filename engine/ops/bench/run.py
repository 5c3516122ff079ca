"""``segflow bench``: real workers beside a bare consumer and a naive pipeline on the same broker.

One run simulates the workload once, plus the events that follow it in event time (its
continuation, for the paced streams). Each round is independent of the others: it produces the
workload to topics of its own (``segflow-bench-<run id>-r<round>.*``) and runs, in this order,
each phase in a new consumer group with a new Redis key prefix:

1. a bare aiokafka consumer reads the whole topic, msgpack-decodes each value and commits every
   batch (the floor: what reading the broker costs in Python);
2. the naive reference pipeline (``engine.ops.bench.naive``: one event at a time, one Redis
   write and one awaited send per event) does the first ``--naive-events`` events;
3. for each worker count (``--workers 1,2``), that many real ``segflow worker`` processes in one
   group read the whole topic for real (features, models, rules, Redis commits, changes);
4. the group of the fastest count is started again: it resumes caught up, and the workload's
   continuation is appended to the topic at each ``--latency-loads`` fraction of that group's
   rate; the time from sending an event to reading the segment change it causes is measured.

Rates are measured in a window that leaves out start-up (see ``engine.ops.bench.measure``). The
machine may be shared and noisy, so each round is reported and the median of the rounds is the
headline. Redis keys of every phase are deleted when its round ends, and the run's topics at
the end (unless ``keep_topics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from engine.ops.bench.floor import floor_phase
from engine.ops.bench.latency import Record
from engine.ops.bench.measure import BenchError
from engine.ops.bench.phases import LatencyParams, Round, bare_phase, group_phase, latency_phase, naive_phase
from engine.ops.bench.profile import py_spy
from engine.ops.bench.progress import LineReporter, Reporter
from engine.ops.bench.report import get_path, metric_paths, set_path
from engine.ops.bench.setup import (
    build_workload,
    delete_prefix,
    delete_topics,
    machine_facts,
    produce_workload,
    records_in_topic,
    redis_client,
)
from engine.settings import Settings, namespaced
from engine.topics import ensure_topics

__all__ = ["BenchError", "BenchParams", "run_bench"]
T = TypeVar("T")
MAX_PACED_RATE = 20_000  # events/s a paced stream can reach before the continuation runs out


@dataclass(frozen=True, slots=True)
class BenchParams:
    """What one bench run does."""

    events: int = 200_000
    customers: int = 5_000
    rounds: int = 3
    partitions: int = 8
    batch: int = 500
    workers: tuple[int, ...] = (1, 2)
    naive_events: int = 20_000
    latency_loads: tuple[float, ...] = (0.25, 0.5, 0.75)
    latency_seconds: float = 10.0
    latency_timeout: float = 30.0
    seed: int = 7
    profile: bool = False
    keep_topics: bool = False

    @classmethod
    def quick(cls, **changes: Any) -> BenchParams:
        """A whole run in about a minute and a half on a 2-core machine, every figure printed."""
        # Large enough that 2 workers take several polls to read it (12,000 events took one).
        quick: dict[str, Any] = {"events": 40_000, "customers": 2_000, "rounds": 2, "naive_events": 2_000}
        quick |= {"latency_seconds": 2.0, "latency_timeout": 15.0}
        return cls(**(quick | changes))

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
            (bool(self.workers), "--workers needs at least one worker count"),
            (
                all(1 <= n <= self.partitions for n in self.workers),
                f"--workers counts must be between 1 and --partitions ({self.partitions})",
            ),
            (len(set(self.workers)) == len(self.workers), "--workers counts must differ"),
            (self.naive_events >= 1, f"--naive-events must be at least 1, not {self.naive_events}"),
            (bool(self.latency_loads), "--latency-loads needs at least one load"),
            (
                all(0 < load <= 2 for load in self.latency_loads),
                "--latency-loads must be percentages between 1 and 200",
            ),
            (self.latency_seconds > 0, f"--latency-seconds must be positive, not {self.latency_seconds:g}"),
            (self.latency_timeout > 0, f"--latency-timeout must be positive, not {self.latency_timeout:g}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def continuation_events(self) -> int:
        """Events simulated after the workload for the paced streams: as many as the workload, and
        enough for every load at up to ``MAX_PACED_RATE`` events/s."""
        return max(self.events, math.ceil(sum(self.latency_loads) * self.latency_seconds * MAX_PACED_RATE))

    def steps(self) -> int:
        """Progress steps of a run: the workload, then each round's phases."""
        return 1 + self.rounds * (4 + len(self.workers) + 1 + len(self.latency_loads))


def run_bench(
    base: Settings, params: BenchParams, reporter: Reporter | None = None, work_root: Path | None = None
) -> dict[str, Any]:
    """Run the whole benchmark and return the report (see ``engine.ops.bench.report``).

    Logs, worker data and profiles go to ``<work_root>/<run id>`` (default: the stack dir's
    ``bench`` folder).
    """
    params.validate()
    if params.profile:
        py_spy()  # fail before the run, not in the middle of it
    reporter = reporter or LineReporter()
    facts, kafka_pid = machine_facts(base)
    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]
    run_name = f"segflow-bench-{run_id}"
    settings = base.model_copy(
        update={
            "events_partitions": params.partitions,
            "changes_partitions": params.partitions,
            "batch_max_events": params.batch,
        }
    )
    work = (work_root or settings.stack_dir / "bench") / run_id
    client = redis_client(settings)
    reporter.begin(params.steps())
    try:
        extra = params.continuation_events()
        reporter.step(f"run {run_id}: building {params.events:,} events and {extra:,} that follow them")
        events = build_workload(params.events + extra, params.customers, params.seed)
        workload, continuation = events[: params.events], events[params.events :]
        workload_facts = {
            "events": params.events,
            "customers": len({key for key, _ in workload}),
            "bytes": sum(len(value) for _, value in workload),
        }
        rounds = []
        for number in range(1, params.rounds + 1):
            round_settings = namespaced(
                settings, f"{run_name}-r{number}", f"bench{run_id.replace('-', '')}r{number}"
            )
            context = Round(
                round_settings, run_id, number, params.events, params.batch, kafka_pid, client, work, reporter
            )
            rounds.append(
                _round(context, params, workload, continuation, profile=params.profile and number == 1)
            )
        produce = [r["produce_seconds"] for r in rounds]
        workload_facts |= {
            "produce_seconds": statistics.median(produce),
            "produce_events_per_s": params.events / statistics.median(produce),
        }
        report = {
            "run_id": run_id,
            "machine": facts,
            "params": asdict(params),
            "workload": workload_facts,
            "topics": [r["topic"] for r in rounds],
            "rounds": rounds,
            "median": medians(rounds, params),
            "work_dir": str(work),
        }
        if not params.keep_topics:
            report["topics_deleted"] = asyncio.run(delete_topics(settings, run_name))
        return report
    except BaseException:
        if not params.keep_topics:
            with contextlib.suppress(Exception):
                asyncio.run(delete_topics(settings, run_name))
        raise
    finally:
        reporter.end()
        if client is not None:
            client.close()


def _round(
    r: Round, params: BenchParams, workload: list[Record], continuation: list[Record], profile: bool
) -> dict[str, Any]:
    """One round: its own topic, then bare consumer, naive pipeline, each worker count, latency."""
    say, n = r.reporter, r.number
    timings: dict[str, float] = {}
    # Every phase's key prefix, known before it runs: a failed phase's keys go too.
    prefixes = [r.phase_settings(phase).key_prefix for phase in ["naive", *(f"w{c}" for c in params.workers)]]

    def timed(name: str, step: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return step()
        finally:
            timings[name] = round(time.perf_counter() - started, 2)

    try:
        say.step(f"round {n}: producing the workload to {r.settings.events_topic}")
        asyncio.run(ensure_topics(r.settings))
        produce_seconds = timed("produce", lambda: asyncio.run(produce_workload(r.settings, workload)))
        if (held := asyncio.run(records_in_topic(r.settings))) != r.target:
            raise BenchError(f"{r.settings.events_topic} holds {held} records, not the {r.target} produced")
        say.step(f"round {n}: bare consumer")
        bare = timed("bare", lambda: bare_phase(r))
        say.note(f"round {n}: bare consumer {bare['events_per_s']:,.0f} events/s")
        say.step(f"round {n}: naive pipeline")
        naive = timed("naive", lambda: naive_phase(r, min(params.naive_events, r.target)))
        say.note(f"round {n}: naive pipeline {naive['events_per_s']:,.0f} events/s")
        say.step(f"round {n}: feature step alone, in this process")
        floor = timed("floor", lambda: floor_phase(workload, r.settings))
        workers: dict[str, dict[str, Any]] = {}
        for count in params.workers:
            profiled = profile and count == params.workers[0]
            say.step(f"round {n}: {count} worker(s)" + (" (profiled)" if profiled else ""))
            result = timed(f"workers_{count}", partial(group_phase, r, count, profiled))
            result["ratio_bare"] = result["events_per_s"] / bare["events_per_s"]
            result["ratio_naive"] = result["events_per_s"] / naive["events_per_s"]
            result["cpu_ratio_floor"] = result["cpu_us_per_event"] / floor["cpu_us_per_event"]
            workers[str(count)] = result
            say.note(
                f"round {n}: {count} worker(s) {result['events_per_s']:,.0f} events/s, "
                f"{result['cpu_us_per_event']:,.0f} us CPU/event"
            )
            if result["profile"]:
                say.note(f"round {n}: profile of worker pid {result['pids'][0]}: {result['profile']['path']}")
        # A window shorter than one poll gives no rate to pace by: prefer sides measured properly.
        measured = [c for c in workers if not workers[c]["window"]["coarse"]] or list(workers)
        fastest = max(measured, key=lambda count: workers[count]["events_per_s"])
        max_rate = workers[fastest]["events_per_s"]
        say.step(f"round {n}: resuming the {fastest}-worker group for latency")
        latency_params = LatencyParams(params.latency_loads, params.latency_seconds, params.latency_timeout)
        latency = timed(
            "latency", lambda: latency_phase(r, int(fastest), max_rate, continuation, latency_params)
        )
    finally:
        for prefix in prefixes:
            delete_prefix(r.client, prefix)
    return {
        "round": n,
        "events": r.target,
        "topic": r.settings.events_topic,
        "produce_seconds": produce_seconds,
        "bare": bare,
        "naive": naive,
        "floor": floor,
        "workers": workers,
        "latency": latency,
        "phase_seconds": timings,
    }


def medians(rounds: list[dict[str, Any]], params: BenchParams) -> dict[str, Any]:
    """The median over the rounds of every reported figure, in the rounds' shape."""
    out: dict[str, Any] = {}
    for path in metric_paths(params):
        values = [v for r in rounds if isinstance(v := get_path(r, path), int | float) and not math.isnan(v)]
        if values:
            set_path(out, path, statistics.median(values))
    return out
