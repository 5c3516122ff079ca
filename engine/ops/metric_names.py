"""Every metric name segflow's processes serve, in one place.

The monitoring files under ``deploy/monitoring`` (alert rules, the Grafana dashboard) may only
name metrics listed here (``tests/unit/test_deploy_consistency.py`` checks it), and the pages'
renderers may only serve names listed here (``tests/unit/test_metric_names.py``). A histogram
``name`` is served as ``name_bucket``, ``name_sum`` and ``name_count``.

"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.monitoring import COUNTER_HELP

WORKER, DELIVER = "worker", "deliver"


@dataclass(frozen=True)
class Metric:
    """One metric family: its name, Prometheus type, labels and the process serving it."""

    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...] = ()
    served_by: str = WORKER


def _counters(*names: str, served_by: str = WORKER) -> list[Metric]:
    return [Metric(name, "counter", served_by=served_by) for name in names]


_LIFT_LABELS = ("comparison", "name", "segment", "arm")

METRICS: tuple[Metric, ...] = (
    # The worker's plain counters, as engine.monitoring declares them.
    *_counters(*COUNTER_HELP),
    Metric("segflow_events_total", "counter", ("type", "outcome")),
    Metric("segflow_segment_changes_total", "counter", ("family", "to_segment")),
    Metric("segflow_dead_letters_total", "counter", ("reason",)),
    Metric("segflow_batch_seconds", "histogram"),
    Metric("segflow_redis_call_seconds", "histogram"),
    Metric("segflow_ingest_to_emit_seconds", "histogram"),
    Metric("segflow_event_time_to_emit_seconds", "histogram"),
    Metric("segflow_consumer_lag", "gauge", ("topic", "partition")),
    Metric("segflow_segment_size", "gauge", ("family", "segment")),
    Metric("segflow_last_batch_seconds", "gauge"),
    Metric("segflow_rules_reload_errors", "gauge"),
    # Models (engine.pages, models.report): the learner's report, the same on every worker.
    Metric("segflow_model_sealed_version", "gauge"),
    Metric("segflow_model_labels", "gauge", ("model", "group")),
    Metric("segflow_model_metric", "gauge", ("model", "group", "metric")),
    Metric("segflow_model_drift_detections", "gauge", ("model",)),
    Metric("segflow_model_ready", "gauge", ("model",)),
    # Lift (engine.activation.lift_metrics): from the latest sealed snapshot, the same on every worker.
    *(
        Metric(name, "gauge", _LIFT_LABELS)
        for name in (
            "segflow_lift_exposures",
            "segflow_lift_control_exposures",
            "segflow_lift_treated_rate",
            "segflow_lift_control_rate",
            "segflow_lift_absolute",
            "segflow_lift_absolute_low",
            "segflow_lift_absolute_high",
            "segflow_lift_relative",
            "segflow_lift_incremental_conversions",
            "segflow_lift_incremental_revenue",
        )
    ),
    Metric("segflow_lift_sample_ratio_p", "gauge", ("experiment",)),
    Metric("segflow_lift_sample_ratio_flagged", "gauge", ("experiment",)),
    Metric("segflow_lift_snapshot_version", "gauge"),
    # segflow deliver (engine.activation.delivery.metrics).
    *_counters(
        "segflow_deliver_read_total",
        "segflow_deliver_delivered_total",
        "segflow_deliver_dead_lettered_total",
        "segflow_deliver_malformed_total",
        "segflow_deliver_commits_total",
        served_by=DELIVER,
    ),
    Metric("segflow_deliver_withheld_total", "counter", ("reason",), DELIVER),
    *(
        Metric(f"segflow_deliver_destination_{what}_total", "counter", ("destination",), DELIVER)
        for what in ("attempts", "delivered", "retried", "dead_lettered")
    ),
    Metric("segflow_deliver_in_flight", "gauge", served_by=DELIVER),
)

EXTERNAL: dict[str, str] = {
    "up": "Prometheus: 1 when the last scrape of the target succeeded",
    "probe_success": "blackbox_exporter: 1 when the probe (GET /segflow/ready) succeeded",
    "probe_http_status_code": "blackbox_exporter: the probed page's HTTP status",
}
"""Series the monitoring files may use that Prometheus or the blackbox exporter make, not segflow."""

BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def family_of(series: str) -> str | None:
    """The documented family a series name belongs to (``x_bucket`` -> histogram ``x``), or None."""
    if series in BY_NAME:
        return series
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and base in BY_NAME and BY_NAME[base].kind == "histogram":
            return base
    return None


def known(series: str) -> bool:
    """True when ``series`` is a documented segflow series or one of ``EXTERNAL``."""
    return series in EXTERNAL or family_of(series) is not None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan", "atan2"}
)


def referenced_series(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's ``$variables`` allowed).

    A lexical reading, enough for the expressions of ``deploy/monitoring``: strings, label
    matchers, ranges and label lists are dropped, then every identifier that is not a function
    call or a keyword is a metric name.
    """
    text = re.sub(r"\$\{?\w+\}?", "", _STRING.sub('""', expr))
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _LABEL_LIST.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names
