"""Worker counters in Prometheus text format, and the health summary."""

from __future__ import annotations

import re

import pytest

from engine.monitoring import COUNTER_HELP, WorkerMetrics

# The counters the worker and the docs rely on (others may be added).
COUNTERS = [
    "segflow_events_applied_total",
    "segflow_events_duplicate_total",
    "segflow_events_dead_lettered_total",
    "segflow_events_too_late_total",
    "segflow_segment_changes_sent_total",
    "segflow_batches_total",
    "segflow_batch_retries_total",
]

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*) (\S+)$")


def parse(text: str) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """A small independent reader of the exposition format: samples, TYPE and HELP lines."""
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            assert match.group(1) not in samples, f"duplicate sample {match.group(1)}"
            samples[match.group(1)] = float(match.group(2))
    return samples, types, helps


def test_fresh_metrics_render_every_counter_at_zero() -> None:
    text = WorkerMetrics().render()
    assert text.endswith("\n")
    samples, types, helps = parse(text)
    assert set(COUNTERS) <= set(COUNTER_HELP)
    gauges = ("segflow_last_batch_seconds", "segflow_rules_reload_errors")
    assert samples == {**dict.fromkeys(COUNTER_HELP, 0.0), **dict.fromkeys(gauges, 0.0)}
    assert types == {**dict.fromkeys(COUNTER_HELP, "counter"), **dict.fromkeys(gauges, "gauge")}
    assert set(helps) == set(samples)
    assert all(helps.values())


def test_counters_add_up() -> None:
    metrics = WorkerMetrics()
    metrics.add("segflow_events_applied_total", 250)
    metrics.add("segflow_events_applied_total", 250)
    metrics.add("segflow_events_dead_lettered_total")
    metrics.add("segflow_batches_total")
    metrics.add("segflow_batches_total")
    metrics.last_batch_seconds = 0.0123456789
    samples, _, _ = parse(metrics.render())
    assert samples["segflow_events_applied_total"] == 500
    assert samples["segflow_events_dead_lettered_total"] == 1
    assert samples["segflow_batches_total"] == 2
    assert samples["segflow_events_duplicate_total"] == 0
    assert samples["segflow_last_batch_seconds"] == 0.012346


def test_sample_lines_exactly() -> None:
    metrics = WorkerMetrics()
    metrics.add("segflow_segment_changes_sent_total", 7)
    metrics.last_batch_seconds = 1.5
    lines = metrics.render().splitlines()
    assert "segflow_segment_changes_sent_total 7" in lines
    assert "# TYPE segflow_segment_changes_sent_total counter" in lines
    assert "segflow_last_batch_seconds 1.500000" in lines
    # HELP and TYPE come before the sample of the same metric
    i = lines.index("segflow_segment_changes_sent_total 7")
    assert lines[i - 1] == "# TYPE segflow_segment_changes_sent_total counter"
    assert lines[i - 2].startswith("# HELP segflow_segment_changes_sent_total ")


@pytest.mark.parametrize("name", ["segflow_events_total", "events_applied", "", "SEGFLOW_BATCHES_TOTAL"])
def test_unknown_counter_raises(name: str) -> None:
    metrics = WorkerMetrics()
    with pytest.raises(KeyError, match="unknown metric"):
        metrics.add(name)
    assert name not in metrics.counters
    samples, _, _ = parse(metrics.render())
    assert all(value == 0 for value in samples.values())


def test_counter_names_follow_prometheus_conventions() -> None:
    assert set(COUNTERS) <= set(COUNTER_HELP)
    for name in COUNTER_HELP:
        assert name.endswith("_total")
        assert re.fullmatch(r"segflow_[a-z_]+", name)
        assert COUNTER_HELP[name].strip()
        assert "\n" not in COUNTER_HELP[name]


def test_instances_do_not_share_counters() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()
    first.add("segflow_batches_total")
    assert second.counters["segflow_batches_total"] == 0


def test_health() -> None:
    metrics = WorkerMetrics(started_wall_ts=0.0)
    metrics.add("segflow_events_applied_total", 3)
    metrics.last_batch_wall_ts = 1_700_000_000.0
    health = metrics.health()
    assert health["ok"] is True
    assert health["events_applied"] == 3
    assert health["last_batch_wall_ts"] == 1_700_000_000.0
    assert health["uptime_seconds"] > 1_700_000_000  # started at the epoch
