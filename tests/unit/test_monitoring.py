"""Worker metrics in Prometheus text format (prometheus-client, one registry per worker), health."""

from __future__ import annotations

import re

import pytest

from engine.activation.lift_metrics import lift_lines
from engine.monitoring import COUNTER_HELP, WorkerMetrics
from engine.schemas import EVENT_TYPES
from engine.worker_process import parse_samples, sample_key
from models.report import prometheus_lines

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
NEW_METRICS = {
    "segflow_events_total": "counter",
    "segflow_segment_changes_total": "counter",
    "segflow_dead_letters_total": "counter",
    "segflow_batch_seconds": "histogram",
    "segflow_redis_call_seconds": "histogram",
    "segflow_ingest_to_emit_seconds": "histogram",
    "segflow_event_time_to_emit_seconds": "histogram",
    "segflow_consumer_lag": "gauge",
    "segflow_segment_size": "gauge",
}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse(text: str) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """A small independent reader of the exposition format: samples (by name and labels as
    written), TYPE and HELP lines."""
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert name not in types, f"{name} declared twice"
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            key = match.group(1) + (match.group(2) or "")
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = float(match.group(3))
    return samples, types, helps


def plain(samples: dict[str, float]) -> dict[str, float]:
    """The unlabelled samples, without prometheus-client's ``_created`` timestamps."""
    return {k: v for k, v in samples.items() if "{" not in k and not k.endswith("_created")}


def test_fresh_metrics_render_every_counter_at_zero() -> None:
    text = WorkerMetrics().render()
    assert text.endswith("\n")
    samples, types, helps = parse(text)
    assert set(COUNTERS) <= set(COUNTER_HELP)
    gauges = ("segflow_last_batch_seconds", "segflow_rules_reload_errors")
    histogram_parts = {k for k in plain(samples) if k.endswith(("_count", "_sum"))}
    assert {k: v for k, v in plain(samples).items() if k not in histogram_parts} == {
        **dict.fromkeys(COUNTER_HELP, 0.0),
        **dict.fromkeys(gauges, 0.0),
    }
    for name in COUNTER_HELP:
        assert types[name] == "counter"
        assert name.removesuffix("_total") + "_created" not in types  # no _created series
    assert all(types[g] == "gauge" for g in gauges)
    for name, kind in NEW_METRICS.items():
        assert types[name] == kind, name
    assert set(helps) == set(types)
    assert all(helps.values())
    # every event type's outcomes start at 0, so a rate() has a series from the first scrape
    for event_type in EVENT_TYPES:
        for outcome in ("applied", "duplicate", "too_late"):
            assert samples[f'segflow_events_total{{outcome="{outcome}",type="{event_type}"}}'] == 0
    assert samples['segflow_events_total{outcome="dead_lettered",type="invalid"}'] == 0
    assert samples['segflow_batch_seconds_bucket{le="+Inf"}'] == 0


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
    assert samples["segflow_last_batch_seconds"] == pytest.approx(0.0123456789)
    assert metrics.counters["segflow_events_applied_total"] == 500


def test_sample_lines_exactly() -> None:
    metrics = WorkerMetrics()
    metrics.add("segflow_segment_changes_sent_total", 7)
    metrics.last_batch_seconds = 1.5
    metrics.segment_changes.labels("lifecycle", "").inc(2)
    lines = metrics.render().splitlines()
    assert "segflow_segment_changes_sent_total 7.0" in lines
    assert "# TYPE segflow_segment_changes_sent_total counter" in lines
    assert "segflow_last_batch_seconds 1.5" in lines
    assert 'segflow_segment_changes_total{family="lifecycle",to_segment=""} 2.0' in lines
    # HELP and TYPE come before the sample of the same metric
    i = lines.index("segflow_segment_changes_sent_total 7.0")
    assert lines[i - 1] == "# TYPE segflow_segment_changes_sent_total counter"
    assert lines[i - 2].startswith("# HELP segflow_segment_changes_sent_total ")


@pytest.mark.parametrize("name", ["segflow_events_total", "events_applied", "", "SEGFLOW_BATCHES_TOTAL"])
def test_unknown_counter_raises(name: str) -> None:
    metrics = WorkerMetrics()
    with pytest.raises(KeyError, match="unknown metric"):
        metrics.add(name)
    assert name not in metrics.counters
    samples, _, _ = parse(metrics.render())
    assert all(value == 0 for key, value in samples.items() if not key.split("{")[0].endswith("_created"))


def test_counter_names_follow_prometheus_conventions() -> None:
    assert set(COUNTERS) <= set(COUNTER_HELP)
    for name in COUNTER_HELP:
        assert name.endswith("_total")
        assert re.fullmatch(r"segflow_[a-z_]+", name)
        assert COUNTER_HELP[name].strip()
        assert "\n" not in COUNTER_HELP[name]


def test_instances_do_not_share_counters() -> None:
    # Each has its own registry: the second would raise "Duplicated timeseries" in a shared one.
    first, second = WorkerMetrics(), WorkerMetrics()
    first.add("segflow_batches_total")
    first.events.labels("purchase", "applied").inc(3)
    assert second.counters["segflow_batches_total"] == 0
    assert (
        second.registry.get_sample_value("segflow_events_total", {"type": "purchase", "outcome": "applied"})
        == 0
    )


def test_extra_lines_keep_their_names_labels_and_values() -> None:
    reports = {
        "churn": {
            "prequential": {"n": 120, "roc_auc": 0.8125, "log_loss": 0.4},
            "holdout": {"n": 12, "roc_auc": 0.75},
            "drift": {"detections": 1},
        }
    }
    lines = [
        "# HELP segflow_model_sealed_version The highest sealed model snapshot version.",
        "# TYPE segflow_model_sealed_version gauge",
        "segflow_model_sealed_version 4",
        *prometheus_lines(reports, {"churn": {"ready": True}}),
        'segflow_lift_exposures{comparison="experiment",name="win back",segment="At \\"risk\\"",arm="a"} 12',
    ]
    metrics = WorkerMetrics()
    metrics.model_lines = lines
    text = metrics.render()
    _, types, _ = parse(text)  # each family declared once, its samples together
    assert types["segflow_model_labels"] == types["segflow_model_metric"] == "gauge"
    samples = {sample_key(s): s.value for s in parse_samples(text)}
    assert samples["segflow_model_sealed_version"] == 4
    assert samples['segflow_model_labels{group="prequential",model="churn"}'] == 120
    assert samples['segflow_model_labels{group="holdout",model="churn"}'] == 12
    assert samples['segflow_model_metric{group="prequential",metric="roc_auc",model="churn"}'] == 0.8125
    assert samples['segflow_model_drift_detections{model="churn"}'] == 1
    assert samples['segflow_model_ready{model="churn"}'] == 1
    key = 'segflow_lift_exposures{arm="a",comparison="experiment",name="win back",segment="At \\"risk\\""}'
    assert samples[key] == 12


def test_lift_lines_without_a_snapshot_render() -> None:
    from engine.app import load_rule_set
    from engine.settings import Settings

    metrics = WorkerMetrics()
    metrics.model_lines = lift_lines(None, load_rule_set(Settings()))
    samples, types, _ = parse(metrics.render())
    assert samples["segflow_lift_snapshot_version"] == -1
    assert types["segflow_lift_snapshot_version"] == "gauge"


def test_labelled_gauges_replace_their_series() -> None:
    metrics = WorkerMetrics()
    metrics.consumer_lag.replace({("events", "0"): 5, ("events", "1"): 0})
    metrics.segment_size.replace({("rfm", "Champions"): 42})
    samples, _, _ = parse(metrics.render())
    assert samples['segflow_consumer_lag{partition="0",topic="events"}'] == 5
    assert samples['segflow_consumer_lag{partition="1",topic="events"}'] == 0
    assert samples['segflow_segment_size{family="rfm",segment="Champions"}'] == 42
    metrics.consumer_lag.replace({("events", "1"): 3})  # partition 0 was revoked
    samples, _, _ = parse(metrics.render())
    assert 'segflow_consumer_lag{partition="0",topic="events"}' not in samples
    assert samples['segflow_consumer_lag{partition="1",topic="events"}'] == 3


def test_health() -> None:
    metrics = WorkerMetrics(started_wall_ts=0.0)
    metrics.add("segflow_events_applied_total", 3)
    metrics.last_batch_wall_ts = 1_700_000_000.0
    health = metrics.health()
    assert health["ok"] is True
    assert health["events_applied"] == 3
    assert health["last_batch_wall_ts"] == 1_700_000_000.0
    assert health["uptime_seconds"] > 1_700_000_000  # started at the epoch
