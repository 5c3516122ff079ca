"""The output of ``segflow bench``: a table for people, a JSON document for machines.

A report holds ``rounds`` (one dict per round: ``bare``, ``workers`` by count, ``naive`` and
``latency`` with its ``loads`` by percent) and ``median``, the same shape with the median over
the rounds of every figure in the table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

Path = tuple[str | int, ...]
Row = tuple[str, Path, str]


def get_path(data: Any, path: Path) -> Any:
    """The value at ``path`` (dict keys and list indexes) or None when any step is missing."""
    for step in path:
        if isinstance(data, dict) and (step in data or str(step) in data):
            data = data[step] if step in data else data[str(step)]
        elif isinstance(data, list) and isinstance(step, int) and 0 <= step < len(data):
            data = data[step]
        else:
            return None
    return data


def set_path(data: dict[str, Any], path: Path, value: Any) -> None:
    """Set ``value`` at ``path``, making dicts on the way (list indexes become dict keys)."""
    for step in path[:-1]:
        data = data.setdefault(str(step), {})
    data[str(path[-1])] = value


def _pct(load: float) -> str:
    return f"{round(load * 100)}"


def metric_rows(params: dict[str, Any] | Any) -> list[Row]:
    """Every figure of the table: label, path in a round, format."""
    get: Callable[[str], Any] = params.get if isinstance(params, dict) else lambda name: getattr(params, name)
    counts = [str(n) for n in get("workers")]
    rows: list[Row] = [("bare consumer events/s", ("bare", "events_per_s"), "{:,.0f}")]
    rows += [(f"{n} worker(s) events/s", ("workers", n, "events_per_s"), "{:,.0f}") for n in counts]
    rows.append(("naive pipeline events/s", ("naive", "events_per_s"), "{:,.0f}"))
    for n in counts:
        rows.append((f"ratio {n} worker(s) / bare", ("workers", n, "ratio_bare"), "{:.4f}"))
        rows.append((f"ratio {n} worker(s) / naive", ("workers", n, "ratio_naive"), "{:.2f}"))
    rows.append(("bare consumer CPU us/event", ("bare", "cpu_us_per_event"), "{:.1f}"))
    for n in counts:
        rows.append((f"{n} worker(s) CPU us/event, all", ("workers", n, "cpu_us_per_event"), "{:,.0f}"))
        for i in range(int(n)):
            rows.append(
                (
                    f"  worker {i + 1} of {n}: own events",
                    ("workers", n, "cpu_us_per_event_each", i),
                    "{:,.0f}",
                )
            )
    rows.append(("naive CPU us/event", ("naive", "cpu_us_per_event"), "{:,.0f}"))
    rows.append(("feature step alone CPU us/event", ("floor", "cpu_us_per_event"), "{:.1f}"))
    for n in counts:
        rows.append((f"ratio {n} worker(s) CPU / feature step", ("workers", n, "cpu_ratio_floor"), "{:.1f}"))
    for n in counts:
        rows.append((f"cores used, {n} worker(s)", ("workers", n, "cores_used"), "{:.2f}"))
    rows.append(("cores used, naive", ("naive", "cores_used"), "{:.2f}"))
    rows.append(("load average (1 min) after the windows", ("workers", counts[-1], "load_average"), "{:.1f}"))
    rows.append(("Kafka broker CPU us/event, bare", ("bare", "kafka_cpu_us_per_event"), "{:.1f}"))
    for n in counts:
        rows.append(
            (f"Kafka broker CPU us/event, {n} worker(s)", ("workers", n, "kafka_cpu_us_per_event"), "{:.1f}")
        )
    rows.append(("Kafka broker CPU us/event, naive", ("naive", "kafka_cpu_us_per_event"), "{:.1f}"))
    for side, base in [(f"{n} worker(s)", ("workers", n)) for n in counts] + [("naive", ("naive",))]:
        rows.append((f"Redis commands/event, {side}", (*base, "redis_commands_per_event"), "{:.2f}"))
        rows.append((f"Redis round trips/event, {side}", (*base, "redis_round_trips_per_event"), "{:.3f}"))
    for n in counts:
        rows.append(
            (
                f"Redis round trips/batch, {n} worker(s)",
                ("workers", n, "redis_round_trips_per_batch"),
                "{:.1f}",
            )
        )
        rows.append((f"events/batch, {n} worker(s)", ("workers", n, "events_per_batch"), "{:.0f}"))
    for n in counts:
        rows.append(
            (f"Redis server CPU us/event, {n} worker(s)", ("workers", n, "redis_cpu_us_per_event"), "{:.1f}")
        )
    rows += [(f"peak RSS MB, {n} worker(s) (max)", ("workers", n, "peak_rss_mb"), "{:.0f}") for n in counts]
    rows.append(("peak RSS MB, naive", ("naive", "peak_rss_mb"), "{:.0f}"))
    rows += [(f"start-up s, {n} worker(s)", ("workers", n, "startup_s"), "{:.1f}") for n in counts]
    rows.append(("latency: workers", ("latency", "workers"), "{:.0f}"))
    rows.append(("latency: max rate events/s", ("latency", "max_rate"), "{:,.0f}"))
    for load in get("latency_loads"):
        at = ("latency", "loads", _pct(load))
        rows += [
            (f"at {_pct(load)}%: offered events/s", (*at, "offered_per_s"), "{:,.0f}"),
            (f"at {_pct(load)}%: achieved events/s", (*at, "achieved_per_s"), "{:,.0f}"),
            (f"at {_pct(load)}%: matched", (*at, "matched"), "{:.0f}"),
            (f"at {_pct(load)}%: latency p50 ms", (*at, "end_to_end", "p50"), "{:,.1f}"),
            (f"at {_pct(load)}%: latency p95 ms", (*at, "end_to_end", "p95"), "{:,.1f}"),
            (f"at {_pct(load)}%: latency p99 ms", (*at, "end_to_end", "p99"), "{:,.1f}"),
            (f"at {_pct(load)}%: latency max ms", (*at, "end_to_end", "max"), "{:,.1f}"),
            (f"at {_pct(load)}%:   to worker produce p50 ms", (*at, "to_worker_produce", "p50"), "{:,.0f}"),
            (f"at {_pct(load)}%:   to worker produce p99 ms", (*at, "to_worker_produce", "p99"), "{:,.0f}"),
        ]
    return rows


def metric_paths(params: Any) -> list[Path]:
    """The paths of every figure of the table (what the medians are taken of)."""
    return [path for _, path, _ in metric_rows(params)]


def _cell(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _table(head: Sequence[str], body: list[list[str]]) -> list[str]:
    table = [list(head), *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return [
        "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)])
        for row in table
    ]


def render(report: dict[str, Any]) -> str:
    """The report as a human-readable table (rounds side by side, medians last)."""
    machine, workload, params = report["machine"], report["workload"], report["params"]
    rounds = report["rounds"]
    load = " ".join(f"{x:g}" for x in machine["load_average_at_start"])
    lines = [
        f"segflow bench  run {report['run_id']}",
        f"machine: {machine['nproc']} CPUs ({machine['cpus_usable']} usable), {machine['cpu_model']}, "
        f"{machine['memory_gb']:g} GB; load at start {load}",
        f"software: Kafka {machine['kafka_version']}, Redis {machine['redis_version']}, Python "
        f"{machine['python']}, aiokafka {machine['aiokafka']}, faust-streaming {machine['faust_streaming']}",
        f"code: {_code(machine)}",
        f"workload: {workload['events']:,} simulated events of {workload['customers']:,} customers "
        f"({workload['bytes'] / 2**20:.1f} MB msgpack), {params['partitions']} partitions, "
        f"batch {params['batch']}; produced once at {workload['produce_events_per_s']:,.0f} events/s",
        f"naive pipeline: first {min(params['naive_events'], workload['events']):,} events of the topic",
        "",
    ]
    head = ["", *(f"round {r['round']}" for r in rounds), "median"]
    body = [
        [
            label,
            *(_cell(fmt, get_path(r, path)) for r in rounds),
            _cell(fmt, get_path(report["median"], path)),
        ]
        for label, path, fmt in metric_rows(params)
    ]
    lines += _table(head, body)
    lines.append("")
    for r in rounds:
        lines += _round_notes(r)
    lines += [
        "",
        "Rates: events done from the first poll at which every process of the side had done some,",
        "  over the time since (start-up, group join and the first rebalance excluded); ratios are",
        "  quotients of the round's rates, and the median ratio is the median of the rounds' ratios.",
        "CPU: user+system time over that window; 'all' is the sum over the worker processes divided",
        "  by all events, 'own events' one process's CPU over the events it did; 'cores used' is CPU",
        "  seconds per second of window: well under 1 per process while CPU us/event holds steady means",
        "  the processes waited for a core (a busy machine), not that they did more work. Kafka and",
        "  Redis figures are server-wide; Redis's activity in the half second before a phase (others'",
        "  clients) is taken off at the same rate. Redis commands include those run inside Lua; round",
        "  trips are Redis's reply writes (INFO total_writes_processed); the naive pipeline's 1 HSET",
        "  per event is the check: 1.00 command and 1.00 round trip per event on a quiet server.",
        "Feature step alone: decode, apply_event and snapshot of the workload's first 20,000 events",
        "  in this process, no server, median of 3 passes (engine.ops.bench.floor): the least any",
        "  pipeline on features/ costs per event on this machine that day; a worker's CPU per event",
        "  over it is a ratio of one run, comparable across days when the machine's speed is not.",
        "Latency: the round's fastest worker group, started again (it resumes caught up), gets the",
        "  workload's continuation at each load (fraction of that group's rate, at most "
        f"{params['latency_seconds']:g}s each);",
        "  the events that change a segment are timed ('matched'); end to end = this process's clock",
        "  just before send -> the change read back here; to worker produce = the input record's",
        "  Kafka timestamp -> the change record's (leaves out our reading of the changes).",
        f"Work dir (logs, profiles): {report['work_dir']}",
    ]
    deleted = report.get("topics_deleted")
    lines.append(
        f"Topics deleted: {len(deleted)}"
        if deleted is not None
        else f"Topics kept: segflow-bench-{report['run_id']}*"
    )
    return "\n".join(lines)


def _round_notes(r: dict[str, Any]) -> list[str]:
    lines = []
    for count, w in r["workers"].items():
        coarse = (
            " (window shorter than a poll: the rate is not measured; raise --events)"
            if w["window"]["coarse"]
            else ""
        )
        lines.append(
            f"round {r['round']}, {count} worker(s): applied {w['applied']:,} of {r['events']:,}, "
            f"dead-lettered {w['dead_lettered']}; window {w['window']['events']:,} events in "
            f"{w['window']['seconds']:.1f}s, per process {w['events_each']}{coarse}"
        )
        calls = w.get("redis_calls_per_event") or {}
        if calls:
            top = ", ".join(f"{name} {per:g}" for name, per in list(calls.items())[:6])
            lines.append(f"  Redis calls/event (server-wide, incl. inside Lua): {top}")
        if w.get("profile"):
            profile = w["profile"]
            lines.append(
                f"  py-spy profile of worker 1 during the window ({profile['samples']} samples, "
                f"{profile['seconds']:g}s on CPU), open in speedscope: {profile['path']}"
            )
            lines += [f"    {f['self_pct']:5.1f}% self  {f['function']}" for f in profile["top_self"]]
    naive = r["naive"]
    lines.append(
        f"round {r['round']}, naive: applied {naive['applied']:,}; window {naive['window']['events']:,} "
        f"events in {naive['window']['seconds']:.1f}s"
    )
    phases = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in r.get("phase_seconds", {}).items())
    lines.append(f"round {r['round']}, phase seconds: {phases}")
    return lines


def as_json(report: dict[str, Any]) -> str:
    """The report as a JSON document (NaN as null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(report), indent=2)


def _code(machine: dict[str, Any]) -> str:
    code = machine.get("code") or {}
    return f"{code.get('path', '?')} at {code.get('revision') or 'an unknown revision'}"
