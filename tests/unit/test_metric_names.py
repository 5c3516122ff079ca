"""engine.ops.metric_names: every name the pages serve is documented; PromQL names read right."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from engine.activation.delivery.counters import DeliveryCounters
from engine.activation.delivery.metrics import render_metrics
from engine.monitoring import COUNTER_HELP, WorkerMetrics
from engine.ops.metric_names import (
    BY_NAME,
    DELIVER,
    EXTERNAL,
    METRICS,
    WORKER,
    family_of,
    known,
    referenced_series,
)
from models.report import prometheus_lines


def served(text: str) -> dict[str, str]:
    """Documented name -> type of every family on a page, read with prometheus-client's parser
    (a counter family ``x`` is served as ``x_total`` and ``x_created``: its documented name is
    ``x_total``)."""
    families: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        families[name] = family.type
    return families


def test_names_are_unique_and_typed() -> None:
    assert len(BY_NAME) == len(METRICS)
    assert {m.kind for m in METRICS} <= {"counter", "gauge", "histogram"}
    assert {m.served_by for m in METRICS} <= {WORKER, DELIVER}
    assert all(m.name.startswith("segflow_") for m in METRICS)
    assert all(m.name.endswith("_total") for m in METRICS if m.kind == "counter")
    assert not set(EXTERNAL) & set(BY_NAME)


def test_the_worker_page_serves_only_documented_names_with_their_types() -> None:
    metrics = WorkerMetrics()
    report = {
        "prequential": {"n": 3, "roc_auc": 0.7},
        "holdout": {"n": 1, "mae": 2.0},
        "drift": {"detections": 0},
    }
    metrics.model_lines = prometheus_lines({"churn": report}, {"churn": {"ready": True}})
    for name, kind in served(metrics.render()).items():
        assert name in BY_NAME, f"{name} is served but not in engine/ops/metric_names.py"
        assert BY_NAME[name].kind == kind, name
        assert BY_NAME[name].served_by == WORKER
    assert set(COUNTER_HELP) <= set(BY_NAME)


def test_the_deliver_page_serves_only_documented_names() -> None:
    counters = DeliveryCounters()
    counters.destination("crm")
    for name, kind in served(render_metrics(counters)).items():
        assert name in BY_NAME and BY_NAME[name].kind == kind, name
        assert BY_NAME[name].served_by == DELIVER, name


def test_histogram_series_belong_to_their_family() -> None:
    assert family_of("segflow_batch_seconds_bucket") == "segflow_batch_seconds"
    assert family_of("segflow_batch_seconds_count") == "segflow_batch_seconds"
    assert family_of("segflow_events_applied_total") == "segflow_events_applied_total"
    assert family_of("segflow_model_ready_bucket") is None  # a gauge has no buckets
    assert known("up") and known("probe_success") and not known("segflow_nonsense")


def test_referenced_series_reads_metric_names_only() -> None:
    assert referenced_series(
        'sum by (topic) (rate(segflow_events_total{outcome="applied",x=~"a|b"}[$__rate_interval]))'
    ) == {"segflow_events_total"}
    assert referenced_series(
        "histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) > 2e-3 and on(instance) b offset 1h"
    ) == {"a_bucket", "b"}
    assert referenced_series('absent(up{job="segflow-worker"} == 1) / ignoring(le) group_left c') == {
        "up",
        "c",
    }
    assert referenced_series('max(x) by (model) unless sum without (le, "q") (y)') == {"x", "y"}
