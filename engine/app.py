"""The Faust application, built from Settings.

Faust keeps no state of ours (``memory://`` store, no tables): customer state lives in Redis,
so a partition can move between workers at a rebalance without restoring a changelog.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from engine.monitoring import WorkerMetrics
from engine.pipeline import PipelineConfig, SegmentPipeline
from engine.rules.lifecycle import LifecycleParams
from engine.settings import Settings, split_list
from features.client import connect
from features.config import FeatureConfig
from features.event import SECONDS_PER_DAY
from features.redis_store import RedisFeatureStore


@dataclass(slots=True)
class Runtime:
    """What the agent needs at run time: the app, its topics, the pipeline and metrics."""

    settings: Settings
    app: faust.App
    events: faust.TopicT
    changes: faust.TopicT
    dead_letters: faust.TopicT
    pipeline: SegmentPipeline
    metrics: WorkerMetrics


def _raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    return app.topic(
        name,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


def pipeline_config(settings: Settings) -> PipelineConfig:
    """The pipeline's knobs from settings."""
    return PipelineConfig(
        lifecycle=LifecycleParams(
            new_days=settings.lifecycle_new_days, active_days=settings.lifecycle_active_days
        ),
        rules_version=settings.rules_version,
        features=feature_config(settings),
        currency=settings.currency,
    )


def feature_config(settings: Settings) -> FeatureConfig:
    """The feature catalogue's configuration from settings."""
    return FeatureConfig(
        allowed_lateness_seconds=settings.allowed_lateness_days * SECONDS_PER_DAY,
        engagement_half_life_days=settings.engagement_half_life_days,
        key_features=split_list(settings.key_features),
        products=split_list(settings.products),
    )


def create_runtime(settings: Settings) -> Runtime:
    """Build the Faust app, topics and pipeline; the agent is attached by engine.agents."""
    datadir = settings.stack_dir / "worker-data"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_disable_leader=True,
        topic_partitions=settings.events_partitions,
        consumer_auto_offset_reset="earliest",
        # Faust's default session timeout makes a dead worker's partitions wait long for a new owner.
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        broker_commit_interval=settings.commit_interval_seconds,
        producer_acks=-1,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        datadir=str(datadir),
    )
    client = connect(settings.redis_url)
    ttl = round(settings.customer_ttl_days * SECONDS_PER_DAY)
    store = RedisFeatureStore(client, prefix=settings.key_prefix, ttl_seconds=ttl)
    return Runtime(
        settings=settings,
        app=app,
        events=_raw_topic(app, settings.events_topic, settings.events_partitions),
        changes=_raw_topic(app, settings.changes_topic, settings.changes_partitions),
        dead_letters=_raw_topic(app, settings.dlq_topic, settings.events_partitions),
        pipeline=SegmentPipeline(store, pipeline_config(settings), cache_capacity=settings.record_cache_size),
        metrics=WorkerMetrics(),
    )
