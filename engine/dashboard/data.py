"""What the dashboard's main page shows, gathered from Redis, Kafka and the worker.

=============================  ==============================================================
section                        source
=============================  ==============================================================
segment sizes, revenue share   the aggregates the workers keep in Redis
                               (``engine.reports.segment_sizes``: one HGETALL per family)
R x F grid                     the scan of the customer records (``population``): the
                               quintiles each customer's last judgement read
sizes over time, transitions,  the segment-changes topic, replayed by event time
latest changes                 (``timeline``); dead letters from the dead-letter topic
lag                            the events topic's end offsets minus the offsets the worker
                               group (``SEGFLOW_APP_ID``) committed (aiokafka admin client)
lift                           the outcomes topic, deduplicated by id, through
                               ``engine.activation.lift_table`` (as ``segflow lift``)
model quality over time        every sealed model snapshot (``ModelSnapshotStore``: its
                               metrics and each model's readiness) and the learner's report
                               hash, so it shows with no worker running
worker counters                the worker's ``/segflow/metrics`` page, when one answers
=============================  ==============================================================
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from engine.activation.lift_table import LiftTable, lift_table
from engine.app import checkpoint_key
from engine.cli.lift_cmd import experiments_of
from engine.dashboard.population import HeatMap
from engine.dashboard.timeline import ChangeLog
from engine.kafka_clients import kafka_options
from engine.redis_clients import redis_client
from engine.reports import segment_sizes
from engine.settings import Settings
from engine.topics import start_or_close, topic_partitions
from engine.worker_process import read_metrics
from models.snapshots import DecodedSnapshot, ModelSnapshotStore

HISTORY_VERSIONS = 400
"""The most sealed versions the quality chart reads (the latest ones)."""
WORKER_METRICS = (
    "segflow_events_applied_total",
    "segflow_events_duplicate_total",
    "segflow_events_dead_lettered_total",
    "segflow_segment_changes_sent_total",
    "segflow_labels_sent_total",
    "segflow_customers_ticked_total",
)


@dataclass(frozen=True, slots=True)
class ModelQuality:
    """One model in one sealed snapshot."""

    task: str
    labels_learned: int
    ready: bool
    reason: str | None
    holdout: dict[str, Any]
    prequential: dict[str, Any]

    @property
    def metric(self) -> str:
        """``roc_auc`` for a classifier, ``mae`` for a regressor."""
        return "roc_auc" if self.task == "classification" else "mae"


@dataclass(frozen=True, slots=True)
class VersionQuality:
    """A sealed snapshot's models: quality as of its seal and readiness."""

    version: int
    period_start: float
    """Epoch seconds: the start of the version's event-time period."""
    models: dict[str, ModelQuality]


def quality_of(snapshot: DecodedSnapshot) -> VersionQuality:
    """The per-model quality and readiness a sealed snapshot carries."""
    models = {}
    for name, model in snapshot.models.items():
        report = snapshot.metrics.get(name) or {}
        models[name] = ModelQuality(
            model.task,
            model.labels_learned,
            model.ready,
            model.warming_up_reason,
            dict(report.get("holdout") or {}),
            dict(report.get("prequential") or {}),
        )
    return VersionQuality(snapshot.version, snapshot.version * snapshot.period_seconds, models)


@dataclass
class ModelHistory:
    """Sealed versions read so far (a sealed snapshot never changes, so each is read once)."""

    versions: dict[int, VersionQuality] = field(default_factory=dict)
    absent: set[int] = field(default_factory=set)
    """Versions sealed without a snapshot (before the first label: untrained models)."""

    async def update(self, settings: Settings) -> tuple[int | None, dict[str, Any]]:
        """Read the versions sealed since the last call; the sealed version and the learner's report."""
        client = redis_client(settings)
        try:
            store = ModelSnapshotStore(client, settings.key_prefix, checkpoint_key(settings))  # type: ignore[arg-type]
            sealed = await store.sealed_version()
            report = await store.report()
            if sealed is not None:
                first = report.get("first_version")
                start = max(int(first) if first is not None else 0, sealed - HISTORY_VERSIONS + 1)
                for version in range(start, sealed + 1):
                    if version in self.versions or version in self.absent:
                        continue
                    snapshot = await store.load(version)
                    if snapshot is None:
                        self.absent.add(version)
                    else:
                        self.versions[version] = quality_of(snapshot)
                for version in [v for v in self.versions if v < start]:
                    del self.versions[version]
        finally:
            await client.aclose()
        return sealed, report

    def ordered(self) -> list[VersionQuality]:
        """The versions read, oldest first."""
        return [self.versions[v] for v in sorted(self.versions)]


@dataclass(frozen=True, slots=True)
class Lag:
    """The worker group's lag on the events topic, per partition."""

    group: str
    partitions: dict[int, tuple[int, int | None]]
    """partition -> (end offset, committed offset or None when the group committed none)."""
    error: str | None = None

    @property
    def total(self) -> int:
        """Records not yet committed, all partitions together."""
        return sum(end - (committed or 0) for end, committed in self.partitions.values())


async def consumer_lag(settings: Settings) -> Lag:
    """End offset minus committed offset of every events partition for the worker group."""
    group = settings.app_id
    try:
        partitions = await topic_partitions(settings, settings.events_topic)
        tps = [TopicPartition(settings.events_topic, p) for p in partitions]
        consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False)
        await start_or_close(consumer)
        try:
            ends = await consumer.end_offsets(tps) if tps else {}
        finally:
            await consumer.stop()
        admin = AIOKafkaAdminClient(**kafka_options(settings))
        await start_or_close(admin)
        try:
            committed = await admin.list_consumer_group_offsets(group, partitions=tps) if tps else {}
        finally:
            await admin.close()
    except (KafkaError, OSError) as exc:
        return Lag(group, {}, f"{type(exc).__name__}: {exc}")
    rows: dict[int, tuple[int, int | None]] = {}
    for tp in tps:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        rows[tp.partition] = (int(ends.get(tp, 0)), offset)
    return Lag(group, rows)


@dataclass
class DashboardData:
    """Everything the main page shows."""

    rules_version: str | None
    sizes: dict[str, dict[str, dict[str, float]]] | None
    sizes_error: str | None
    heat_map: HeatMap | None
    scan_note: str
    log: ChangeLog
    lag: Lag
    lift: LiftTable | None
    sealed_version: int | None
    learner: dict[str, Any]
    history: list[VersionQuality]
    min_labels: int
    worker: dict[str, int]


def lift_of(settings: Settings, log: ChangeLog) -> LiftTable | None:
    """Lift per experiment from the outcomes read so far (None: no outcome yet)."""
    if not log.outcomes:
        return None
    specs, bandits = experiments_of(settings)
    table = lift_table(list(log.outcomes.values()), specs, bandits=bandits)
    return LiftTable(table.rows, table.ratio_checks, table.outcomes, log.outcome_repeats)


async def gather(
    settings: Settings, log: ChangeLog, history: ModelHistory, heat_map: HeatMap | None, scan_note: str
) -> DashboardData:
    """The main page's data now (the scan's parts as of its last run)."""
    sizes_error = None
    try:
        report = await segment_sizes(settings)
        rules_version, sizes = report["rules_version"], report["families"]
    except (OSError, RedisError) as exc:
        rules_version, sizes, sizes_error = None, None, f"{type(exc).__name__}: {exc}"
    try:
        sealed, learner = await history.update(settings)
    except (OSError, RedisError):
        sealed, learner = None, {}
    counters = await asyncio.to_thread(read_metrics, settings.web_port, settings.web_secret)
    return DashboardData(
        rules_version=rules_version,
        sizes=sizes,
        sizes_error=sizes_error,
        heat_map=heat_map,
        scan_note=scan_note,
        log=log,
        lag=await consumer_lag(settings),
        lift=lift_of(settings, log),
        sealed_version=sealed,
        learner=learner,
        history=history.ordered(),
        min_labels=settings.model_ready_min_labels,
        worker={name: counters[name] for name in WORKER_METRICS if name in counters},
    )
