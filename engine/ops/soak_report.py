"""The pure parts of ``segflow soak``: the pacing schedule, sample parsing, slopes and verdicts.

A soak samples a few quantities every ``--sample-seconds``; each one is judged on its samples:

- the medians of the first and of the last third of the samples (by count);
- the least-squares slope per 10 minutes over all samples, and over the last two thirds (the
  first third is the warm-up: rolling windows fill, customers of the fixed population are first
  seen, caches warm);
- **flat** means the slope over the last two thirds lies within ``FLAT_FRACTION`` (5%) of the
  last third's median per 10 minutes. Lag sits near zero when the worker keeps up, so 5% of
  its level is noise; its tolerance is the larger of that and one second of the offered rate per
  10 minutes (a worker that falls behind by less than a second every 10 minutes). A slope above
  the tolerance is **growing**, below minus the tolerance **falling**. A soak passes when none
  of worker RSS, Redis bytes per known customer (``used_memory`` over the customer hashes: it
  includes the population-wide keys), the customer records' own bytes (mean ``MEMORY USAGE``)
  and lag grows (Redis's total ``used_memory`` is shown but not judged: it grows with the
  customers first seen).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FLAT_FRACTION = 0.05
TEN_MINUTES = 600.0
# (sample field, label, unit) of every judged quantity, in the order they are printed.
QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("worker_rss_mb", "worker RSS", "MB"),
    ("redis_used_mb", "Redis used_memory", "MB"),
    ("redis_bytes_per_customer", "Redis bytes per customer", "B"),
    ("record_bytes_per_customer", "customer record bytes", "B"),
    ("lag", "consumer lag", "events"),
)
# Redis's total grows with the customers first seen (the population's new joiners): it is
# shown, and the pass is on the bytes per customer instead.
INFORMATIONAL = frozenset({"redis_used_mb"})


def due_events(elapsed_s: float, rate: float, total: int) -> int:
    """Events that a stream paced at ``rate`` per second should have sent ``elapsed_s`` seconds
    after it began: event ``i`` (from 0) is due at ``i / rate``, and never more than ``total``."""
    if elapsed_s < 0 or total <= 0:
        return 0
    return min(total, math.floor(elapsed_s * rate) + 1)


def sample_times(seconds: float, every: float) -> list[float]:
    """When samples are taken: at 0, every ``every`` seconds, and at the end (``seconds``)."""
    times = [i * every for i in range(math.floor(seconds / every) + 1)]
    if seconds - times[-1] > 1e-9:
        times.append(seconds)
    return times


def vm_rss_bytes(status_text: str) -> int | None:
    """Resident set size from the text of ``/proc/<pid>/status`` (its ``VmRSS: <n> kB`` line);
    None when the line is missing (a zombie has none)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                factor = 1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1
                return int(parts[1]) * factor
    return None


def per_customer(used_bytes: int | None, customers: int) -> float | None:
    """Redis bytes per known customer (None before any customer is known)."""
    if used_bytes is None or customers <= 0:
        return None
    return used_bytes / customers


def slope(times: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of ``values`` over ``times`` (units per second); None for fewer than
    two points or when every time is the same."""
    if len(times) != len(values):
        raise ValueError("times and values differ in length")
    if len(times) < 2:
        return None
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread


def thirds(n: int) -> tuple[slice, slice, slice]:
    """The first third, the last two thirds and the last third of ``n`` samples (each third at
    least one sample)."""
    third = max(1, n // 3)
    return slice(0, third), slice(third, n), slice(n - third, n)


@dataclass(frozen=True, slots=True)
class Judgement:
    """How one quantity behaved over a soak."""

    quantity: str
    label: str
    unit: str
    first_third: float | None
    last_third: float | None
    slope_all_per_10min: float | None
    slope_per_10min: float | None
    """Over the last two thirds: the figure the verdict is on."""
    tolerance_per_10min: float | None
    verdict: str
    """``flat``, ``growing``, ``falling`` or ``unknown`` (too few samples)."""

    def as_dict(self) -> dict[str, Any]:
        """The judgement as a JSON-ready mapping."""
        return {
            "quantity": self.quantity,
            "label": self.label,
            "unit": self.unit,
            "first_third_median": self.first_third,
            "last_third_median": self.last_third,
            "slope_all_per_10min": self.slope_all_per_10min,
            "slope_per_10min": self.slope_per_10min,
            "tolerance_per_10min": self.tolerance_per_10min,
            "verdict": self.verdict,
        }


def judge(
    quantity: str,
    label: str,
    unit: str,
    points: Sequence[tuple[float, float]],
    floor_per_10min: float = 0.0,
) -> Judgement:
    """Judge ``points`` (elapsed seconds, value): medians of the thirds, slopes, verdict.

    The tolerance is ``FLAT_FRACTION`` of the last third's median per 10 minutes, or
    ``floor_per_10min`` when that is larger.
    """
    n = len(points)
    if n < 3:
        return Judgement(quantity, label, unit, None, None, None, None, None, "unknown")
    first, later, last = thirds(n)
    values = [v for _, v in points]
    times = [t for t, _ in points]
    level = statistics.median(values[last])
    whole = slope(times, values)
    recent = slope(times[later], values[later])
    tolerance = max(FLAT_FRACTION * abs(level), floor_per_10min)
    per10 = None if recent is None else recent * TEN_MINUTES
    if per10 is None:
        verdict = "unknown"
    elif per10 > tolerance:
        verdict = "growing"
    elif per10 < -tolerance:
        verdict = "falling"
    else:
        verdict = "flat"
    return Judgement(
        quantity,
        label,
        unit,
        statistics.median(values[first]),
        level,
        None if whole is None else whole * TEN_MINUTES,
        per10,
        tolerance,
        verdict,
    )


def judge_samples(samples: Sequence[Mapping[str, Any]], rate: float) -> list[Judgement]:
    """Every quantity of ``QUANTITIES`` judged over the samples that have a value for it."""
    out = []
    for field, label, unit in QUANTITIES:
        points = [
            (float(s["elapsed_s"]), float(s[field]))
            for s in samples
            if isinstance(s.get(field), int | float) and math.isfinite(s[field])
        ]
        # Lag: one second of the offered rate per 10 minutes (see the module docstring).
        floor = rate if field == "lag" else 0.0
        out.append(judge(field, label, unit, points, floor))
    return out


def passed(judgements: Sequence[Judgement]) -> bool:
    """No judged quantity grows, and every one could be judged."""
    return all(j.verdict in ("flat", "falling") for j in judgements if j.quantity not in INFORMATIONAL)


SAMPLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("elapsed_s", "ELAPSED", "{:.0f}s"),
    ("sent", "SENT", "{:,}"),
    ("applied", "APPLIED", "{:,}"),
    ("lag", "LAG", "{:,}"),
    ("worker_rss_mb", "RSS MB", "{:.1f}"),
    ("redis_used_mb", "REDIS MB", "{:.1f}"),
    ("customers", "CUSTOMERS", "{:,}"),
    ("redis_bytes_per_customer", "B/CUSTOMER", "{:,.0f}"),
    ("record_bytes_per_customer", "RECORD B", "{:,.0f}"),
    ("redis_keys", "KEYS", "{:,}"),
    ("event_day", "EVENT DAY", "{:.1f}"),
)


def _cell(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return pattern.format(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in [header, *rows]]


def render(report: Mapping[str, Any]) -> str:
    """The samples table, the verdict table and the overall verdict of a soak report."""
    params = report["params"]
    lines = [
        f"soak {report['run_id']}: {params['minutes']:g} min at {params['rate']:,.0f} events/s offered, "
        f"{params['customers']:,} customers, 1 worker, {params['partitions']} partitions",
        "",
    ]
    rows = [[_cell(s.get(k), p) for k, _, p in SAMPLE_COLUMNS] for s in report["samples"]]
    lines += _table([h for _, h, _ in SAMPLE_COLUMNS], rows)
    lines.append("")
    header = ["QUANTITY", "FIRST 1/3", "LAST 1/3", "SLOPE/10MIN ALL", "SLOPE/10MIN LAST 2/3", "TOLERANCE", ""]
    judged = []
    for j in report["verdicts"]:
        cells = [
            j["first_third_median"],
            j["last_third_median"],
            j["slope_all_per_10min"],
            j["slope_per_10min"],
            j["tolerance_per_10min"],
        ]
        verdict = j["verdict"] + (" (not judged)" if j["quantity"] in INFORMATIONAL else "")
        judged.append([f"{j['label']} ({j['unit']})", *(_cell(c, "{:,.1f}") for c in cells), verdict])
    lines += _table(header, judged)
    summary = report["summary"]
    lines += [
        "",
        f"sent {summary['sent']:,} events at {summary['achieved_rate']:,.0f}/s, applied "
        f"{summary['applied']:,}, dead-lettered {summary['dead_lettered']:,}, "
        f"{summary['event_days']:.1f} days of event time; after the stream, lag "
        f"{summary['lag_after_drain']:,} in {summary['drain_seconds']:.1f}s"
        f" ({'caught up' if summary['drained'] else 'not caught up'})",
        "flat: slope over the last two thirds within 5% of the last third's median per 10 min "
        "(lag: or one second of the offered rate)",
        f"verdict: {'PASS (nothing grows)' if report['passed'] else 'FAIL (something grows)'}",
    ]
    if summary.get("note"):
        lines.append(f"note: {summary['note']}")
    return "\n".join(lines)
