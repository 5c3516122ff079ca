"""The output of ``segflow bench``: a table for people, a JSON document for machines."""

from __future__ import annotations

import json
import math
from typing import Any

ROWS: tuple[tuple[str, str, str], ...] = (
    ("bare consumer events/s", "bare_events_per_s", "{:,.0f}"),
    ("segflow worker events/s", "worker_events_per_s", "{:,.0f}"),
    ("ratio segflow / bare", "ratio", "{:.3f}"),
    ("bare consumer CPU us/event", "bare_cpu_us_per_event", "{:.1f}"),
    ("worker CPU us/event", "worker_cpu_us_per_event", "{:.1f}"),
    ("Kafka broker CPU us/event, bare", "kafka_cpu_us_per_event_bare", "{:.1f}"),
    ("Kafka broker CPU us/event, worker", "kafka_cpu_us_per_event_worker", "{:.1f}"),
    ("Redis commands/event", "redis_commands_per_event", "{:.2f}"),
    ("Redis server CPU us/event", "redis_cpu_us_per_event", "{:.1f}"),
    ("worker peak RSS MB", "worker_peak_rss_mb", "{:.0f}"),
    ("worker start-up s", "worker_startup_s", "{:.1f}"),
    ("latency p50 ms", "latency_p50_ms", "{:.1f}"),
    ("latency p95 ms", "latency_p95_ms", "{:.1f}"),
    ("latency p99 ms", "latency_p99_ms", "{:.1f}"),
    ("latency max ms", "latency_max_ms", "{:.1f}"),
    ("  of which to worker produce p50 ms", "latency_worker_p50_ms", "{:.0f}"),
    ("  of which to worker produce p99 ms", "latency_worker_p99_ms", "{:.0f}"),
)


def _cell(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


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
        f"workload: {workload['events']:,} simulated events of {workload['customers']:,} customers "
        f"({workload['bytes'] / 2**20:.1f} MB msgpack), {params['partitions']} partitions, "
        f"batch {params['batch']}",
        f"produced once at {workload['produce_events_per_s']:,.0f} events/s (acks=all, linger 5 ms)",
        "",
    ]
    head = [""] + [f"round {r['round']}" for r in rounds] + ["median"]
    table = [head]
    for label, key, fmt in ROWS:
        table.append(
            [label] + [_cell(fmt, r.get(key)) for r in rounds] + [_cell(fmt, report["median"].get(key))]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        lines.append(
            "  ".join(
                [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            )
        )
    lines.append("")
    for r in rounds:
        calls = r.get("redis_calls_per_event") or {}
        top = ", ".join(f"{name} {per:g}" for name, per in list(calls.items())[:6])
        window = r["worker_window"]
        coarse = " (window shorter than a poll: rate is a lower bound)" if window["coarse"] else ""
        lines.append(
            f"round {r['round']}: {r['events']:,} events; worker applied {r['worker_applied']:,}, "
            f"dead-lettered {r['worker_dead_lettered']}; latency matched "
            f"{r['latency']['matched']}/{r['latency']['sent']}{coarse}"
        )
        if top:
            lines.append(f"  Redis calls/event (server-wide, incl. inside Lua): {top}")
    lines += [
        "",
        "Rates: events done after the first progress seen, over the time since (start-up excluded);",
        "  each round reads the whole topic, including the paced events of earlier rounds; the median",
        "  ratio is the median of the rounds' ratios.",
        "CPU: process user+system time over that window; Kafka and Redis figures are server-wide",
        "  (others' load on a shared stack counts too). Redis commands include those run inside Lua.",
        f"Latency: {params['latency_events']} first events of new customers at {params['latency_rate']:g}/s "
        "to the caught-up worker, each causing a segment change;",
        "  end to end = this process's clock just before send -> the change read back from the changes",
        "  topic here; to worker produce = input record's Kafka timestamp -> the change record's (stamped",
        "  by the worker's producer).",
        "Left in Kafka (delete with kafka-topics --delete): " + ", ".join(report["topics"]),
        f"Worker logs: {report['work_dir']}",
    ]
    return "\n".join(lines)


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
