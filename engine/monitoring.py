"""Worker metrics (prometheus-client, one registry per worker) and health, served by Faust's web server.

Endpoints on the worker's web port (``SEGFLOW_WEB_PORT``, see ``engine.pages``):
  GET /segflow/metrics   every metric below in the Prometheus text format (``generate_latest``)
  GET /segflow/health    JSON liveness: ok, uptime, the last batch's wall-clock time
  GET /segflow/ready     JSON readiness (``engine.ops.worker_status``): 200 or 503 with reasons

Each ``WorkerMetrics`` has its own ``CollectorRegistry`` (never prometheus-client's global one),
so two workers (or tests) in one process do not share counters. The hot path counts once per
batch (``engine.ops.metrics``: ``Counter.inc(n)`` per label set, not a call per event).

Besides the counters of ``COUNTER_HELP`` (without ``_created`` samples: see below) and the
gauges ``segflow_last_batch_seconds`` and ``segflow_rules_reload_errors``:

  segflow_events_total{type,outcome}            counter  outcome: applied | duplicate | too_late |
                                                         dead_lettered (type "invalid": did not decode)
  segflow_segment_changes_total{family,to_segment} counter  changes delivered ("" : the customer left)
  segflow_dead_letters_total{reason}            counter  dead letters delivered, by reason category
                                                         (``engine.ops.metrics.DEAD_LETTER_CATEGORIES``)
  segflow_batch_seconds                         histogram a batch: process, deliver, count
  segflow_redis_call_seconds                    histogram the pipeline's pipelined Redis round trips
  segflow_ingest_to_emit_seconds                histogram input record's Kafka timestamp -> its change acked
  segflow_event_time_to_emit_seconds            histogram the change's event time -> the change acked
  segflow_consumer_lag{topic,partition}         gauge    log end offset - the group's committed offset
  segflow_segment_size{family,segment}          gauge    customers per segment (Redis aggregates)

plus the extra exposition lines the page computes per scrape (``extra_lines``: model quality
``segflow_model_*``, lift ``segflow_lift_*``, ``segflow_model_sealed_version``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from engine.schemas import EVENT_TYPES
from engine.stream.batch_records import APPLIED, DEAD_LETTERED, DUPLICATE, INVALID_TYPE, TOO_LATE

# Each counter's and histogram's ``_created`` series is served as a gauge in the text format:
# twice the series for nothing a rate() needs (Prometheus detects counter resets itself).
disable_created_metrics()

COUNTER_HELP: dict[str, str] = {
    "segflow_events_applied_total": "Events applied to customer state.",
    "segflow_events_duplicate_total": "Redelivered events skipped because already applied.",
    "segflow_events_dead_lettered_total": "Events sent to the dead-letter topic (invalid or too late).",
    "segflow_events_too_late_total": "Events older than the allowed lateness: not applied, dead-lettered.",
    "segflow_segment_changes_sent_total": "Segment-change events delivered (re-sends included).",
    "segflow_batches_total": "Batches processed.",
    "segflow_batches_held_total": (
        "Batches whose rest waits for other partitions in event time (a population snapshot not sealed yet)."
    ),
    "segflow_customers_expired_total": "Customers removed from the ranking sets after their TTL.",
    "segflow_batch_retries_total": "Batches retried after a Redis or Kafka error.",
    "segflow_labels_sent_total": "Resolved labels delivered to the labels topic (re-sends included).",
    "segflow_action_decisions_sent_total": (
        "Action decisions (sent or withheld) delivered to the actions topic (re-sends included)."
    ),
    "segflow_outcomes_sent_total": "Decision outcomes delivered to the outcomes topic (re-sends included).",
    "segflow_customers_ticked_total": "Customers moved on by event time alone (labels, timed segments).",
    "segflow_rules_reloads_total": "Rules files reloaded after a change.",
}
EVENT_OUTCOMES = (APPLIED, DUPLICATE, TOO_LATE, DEAD_LETTERED)

BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""A batch of up to SEGFLOW_BATCH_MAX_EVENTS events: tens to hundreds of ms; retries take longer."""
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""One pipelined round trip on loopback: under a ms for a few commands, tens of ms for a big commit."""
EMIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)
"""Live: tens of ms to seconds; an hour and a day catch backlogs and replays of old event time."""


class _Lines(Collector):
    """Collects the extra exposition lines (computed per scrape by the page) as metric families.

    The lines may declare several families first and interleave their samples (as
    ``models.report.prometheus_lines`` does); the text format wants each family's samples
    together, so samples are grouped under the family declared with their name (undeclared:
    an untyped family of their own).
    """

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._families: list[Metric] = []

    @property
    def lines(self) -> list[str]:
        """The lines in force."""
        return self._lines

    @lines.setter
    def lines(self, lines: list[str]) -> None:
        if lines != self._lines:  # parsed once per change, not per scrape
            self._lines, self._families = list(lines), _families(lines)

    def collect(self) -> Iterable[Metric]:
        """One family per declared name, with its samples."""
        return iter(self._families)


def _families(lines: Sequence[str]) -> list[Metric]:
    """The lines' samples grouped under their declared families (parsed by prometheus-client)."""
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: dict[str, list[Sample]] = {}
    for line in lines:
        if line.startswith(("# HELP ", "# TYPE ")):
            _, kind, name, *text = line.split(" ", 3)
            (helps if kind == "HELP" else types)[name] = text[0] if text else ""
            samples.setdefault(name, [])
        elif line.strip() and not line.startswith("#"):
            for family in text_string_to_metric_families(line + "\n"):
                for sample in family.samples:
                    samples.setdefault(sample.name, []).append(sample)
    families = []
    for name, found in samples.items():
        metric = Metric(name, helps.get(name, ""), types.get(name, "untyped"))
        metric.samples = found
        families.append(metric)
    return families


class LabelledGauge(Collector):
    """A gauge whose whole set of series is replaced at once (series that went away disappear)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def replace(self, values: dict[tuple[str, ...], float]) -> None:
        """The series in force from now on: label values (in ``labels`` order) -> value."""
        self.values = dict(values)

    def collect(self) -> Iterable[Metric]:
        """One gauge family with the current series."""
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for label_values, value in sorted(self.values.items()):
            family.add_metric(label_values, value)
        yield family


class WorkerMetrics:
    """The metrics of one worker, in its own registry."""

    def __init__(self, rules_version: str = "", started_wall_ts: float | None = None) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._counters = {name: Counter(name, text, registry=registry) for name, text in COUNTER_HELP.items()}
        self.last_batch_wall_ts: float | None = None
        self.last_batch_seconds = 0.0
        self.started_wall_ts = time.time() if started_wall_ts is None else started_wall_ts
        self.rules_version = rules_version
        self.rules_reload_errors = 0
        last_batch = Gauge(
            "segflow_last_batch_seconds", "Wall-clock seconds the last batch took.", registry=registry
        )
        last_batch.set_function(lambda: self.last_batch_seconds)
        errors = Gauge(
            "segflow_rules_reload_errors",
            "Rules files rejected since start (old rules kept).",
            registry=registry,
        )
        errors.set_function(lambda: self.rules_reload_errors)
        self.events = Counter(
            "segflow_events_total",
            "Input events by type and outcome (applied, duplicate, too_late; dead_lettered: did not decode).",
            ("type", "outcome"),
            registry=registry,
        )
        for event_type in EVENT_TYPES:
            for outcome in (APPLIED, DUPLICATE, TOO_LATE):
                self.events.labels(event_type, outcome)
        self.events.labels(INVALID_TYPE, DEAD_LETTERED)
        self.segment_changes = Counter(
            "segflow_segment_changes_total",
            'Segment changes delivered, by family and new segment ("": left the family; re-sends included).',
            ("family", "to_segment"),
            registry=registry,
        )
        self.dead_letters = Counter(
            "segflow_dead_letters_total",
            "Dead letters delivered (invalid and too-late events; re-sends included), by reason category.",
            ("reason",),
            registry=registry,
        )

        def histogram(name: str, text: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, text, buckets=buckets, registry=registry)

        self.batch_seconds = histogram(
            "segflow_batch_seconds", "Seconds a batch took: process, deliver and count.", BATCH_BUCKETS
        )
        self.redis_call_seconds = histogram(
            "segflow_redis_call_seconds",
            "Seconds of the pipeline's pipelined Redis round trips (record reads, commits, outbox clears).",
            REDIS_BUCKETS,
        )
        self.ingest_to_emit_seconds = histogram(
            "segflow_ingest_to_emit_seconds",
            "Seconds from the input record's Kafka timestamp to its segment change acked by the broker.",
            EMIT_BUCKETS,
        )
        self.event_time_to_emit_seconds = histogram(
            "segflow_event_time_to_emit_seconds",
            "Seconds from a segment change's event time to the change acked by the broker.",
            EMIT_BUCKETS,
        )
        self.consumer_lag = LabelledGauge(
            "segflow_consumer_lag",
            "Log end offset minus the group's committed offset, per assigned partition (from the broker).",
            ("topic", "partition"),
        )
        self.segment_size = LabelledGauge(
            "segflow_segment_size",
            "Customers per segment and family (the aggregates in Redis; the same on every worker).",
            ("family", "segment"),
        )
        self._extra = _Lines()
        for collector in (self.consumer_lag, self.segment_size, self._extra):
            registry.register(collector)

    @property
    def counters(self) -> dict[str, int]:
        """The unlabelled counters' values by exposition name (``COUNTER_HELP``)."""
        values = {}
        for name, counter in self._counters.items():
            for metric in counter.collect():
                values[name] = next(int(s.value) for s in metric.samples if s.name == name)
        return values

    @property
    def model_lines(self) -> list[str]:
        """Extra exposition lines (model quality, lift), rendered with the registry's metrics."""
        return self._extra.lines

    @model_lines.setter
    def model_lines(self, lines: list[str]) -> None:
        self._extra.lines = lines

    def add(self, name: str, amount: int = 1) -> None:
        """Increase counter ``name`` (must be one of COUNTER_HELP)."""
        counter = self._counters.get(name)
        if counter is None:
            raise KeyError(f"unknown metric {name}")
        if amount:
            counter.inc(amount)

    def render(self) -> str:
        """Prometheus exposition text of the whole registry."""
        return generate_latest(self.registry).decode()

    def health(self) -> dict[str, object]:
        """Liveness summary for the health endpoint."""
        applied = self._counters["segflow_events_applied_total"]
        return {
            "ok": True,
            "uptime_seconds": round(time.time() - self.started_wall_ts, 3),
            "last_batch_wall_ts": self.last_batch_wall_ts,
            "events_applied": int(next(iter(applied.collect())).samples[0].value),
            "rules_version": self.rules_version,
        }
