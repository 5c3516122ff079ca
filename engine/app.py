"""The Faust application, built from Settings.

Faust keeps no state of ours (``memory://`` store, no tables): customer state lives in Redis,
so a partition can move between workers at a rebalance without restoring a changelog.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faust
from faust.app.base import BootStrategy

from engine.kafka_clients import faust_credentials
from engine.monitoring import WorkerMetrics
from engine.redis_clients import redis_client
from engine.rules.loader import RulesError, load_label_horizons, load_rules
from engine.rules.model import RuleSet
from engine.rules.reload import RulesReloader
from engine.rules.variables import known_variables
from engine.settings import Settings, split_list
from engine.stream.customer_step import StepConfig
from engine.stream.lifetime_inputs import LIFETIME_INPUTS
from engine.stream.model_gate import ModelGate
from engine.stream.pipeline import PipelineConfig, SegmentPipeline
from engine.web_auth import token_middleware
from features.catalogue import catalogue
from features.config import FeatureConfig
from features.event import SECONDS_PER_DAY
from features.redis_store import RedisFeatureStore
from models.config import ModelConfig
from models.inputs import input_features
from models.labels import LabelRules
from models.learner import Learner, encode_snapshot
from models.readiness import ReadinessRules
from models.registry import ModelSpec, model_specs
from models.snapshots import DecodedSnapshot, ModelSnapshotStore, decode_snapshot

DEFAULT_RULES = Path(__file__).resolve().parent / "rules" / "default_rules.yaml"
EXCLUDED_INPUTS = ("late_events_dropped",)


@dataclass(slots=True)
class Runtime:
    """What the agent needs at run time: the app, its topics, the pipeline and metrics."""

    settings: Settings
    app: faust.App
    pipeline: SegmentPipeline
    metrics: WorkerMetrics
    lock: asyncio.Lock
    reloader: RulesReloader
    ingest: Any = None
    """The ``engine.stream.ingest.BatchIngest`` service, once ``engine.stream.agents`` attached it."""
    status: Any = None
    """The ``engine.ops.worker_status.WorkerStatus`` service (readiness, lag and size gauges)."""
    fatal: str | None = None
    """Why the worker is stopping although nobody asked it to (e.g. Redis is full), if it is."""
    on_fatal: Callable[[], None] = lambda: None
    """Stops the worker process, failing (``engine.cli.worker_cmd`` sets it)."""

    def reload_rules(self) -> None:
        """Swap in a changed, valid rules file (see ``engine.rules.reload``)."""
        if self.reloader.poll():
            self.metrics.add("segflow_rules_reloads_total")
        self.metrics.rules_version = self.pipeline.rules.version
        self.metrics.rules_reload_errors = self.reloader.errors


class _WebAndTimers(BootStrategy):
    # The events topic is consumed (and the outputs produced) by engine.stream.ingest, in whole
    # fetched batches; Faust's own consumer and producer would only add a group member.
    enable_kafka_consumer = False
    enable_kafka_producer = False


def specs(settings: Settings) -> list[ModelSpec]:
    """The models of this deployment: churn, clv and one propensity per product."""
    horizons = label_rules(settings)
    return model_specs(
        split_list(settings.products), horizons.churn_days, horizons.clv_days, horizons.propensity_days
    )


def label_rules(settings: Settings, named: Mapping[str, float] | None = None) -> LabelRules:
    """The label horizons: ``SEGFLOW_CHURN_DAYS`` etc., unless the rules file's ``labels`` names
    them (``named``: those of a rules file already loaded; default: read the file in force)."""
    if named is None:
        named = load_label_horizons(rules_path(settings))
    defaults = {"churn_days": settings.churn_days, "clv_days": settings.clv_days}
    defaults["propensity_days"] = settings.propensity_days
    return LabelRules(**(defaults | dict(named)))


def model_inputs(settings: Settings, features: FeatureConfig | None = None) -> tuple[str, ...]:
    """The model input names; a protected attribute among them is a start-up error."""
    names = input_features(
        catalogue(features or feature_config(settings)),
        exclude=EXCLUDED_INPUTS,
        protected=split_list(settings.protected_attributes),
    )
    return tuple(names) + (LIFETIME_INPUTS if settings.model_btyd_inputs else ())


def rules_path(settings: Settings) -> Path:
    """The rules file in force."""
    return settings.rules_file or DEFAULT_RULES


def rule_names(settings: Settings, features: FeatureConfig | None = None) -> dict[str, str]:
    """Every variable a rule may read under ``settings``."""
    external = (ExternalModel(name) for name in split_list(settings.external_scores))
    models: list[Any] = [*specs(settings), *external]
    return known_variables(catalogue(features or feature_config(settings)), models)


@dataclass(frozen=True, slots=True)
class ExternalModel:
    """An external batch model the rules may read (``SEGFLOW_EXTERNAL_SCORES``)."""

    name: str
    description: str = "external batch score (score events)"


def load_rule_set(settings: Settings, features: FeatureConfig | None = None) -> RuleSet:
    """The validated rules file in force (raises ``RulesError`` with file:line)."""
    return load_rules(rules_path(settings), rule_names(settings, features))


def checkpoint_key(settings: Settings) -> bytes:
    """The HMAC key of model checkpoints: SEGFLOW_CHECKPOINT_KEY, else a random key kept on disk."""
    if settings.checkpoint_key:
        return settings.checkpoint_key.encode()
    path = settings.stack_dir / "checkpoint.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def model_config(settings: Settings, features: FeatureConfig | None = None) -> ModelConfig:
    """What the population's models are built from."""
    return ModelConfig(
        specs=tuple(specs(settings)),
        input_names=model_inputs(settings, features),
        kind=settings.model_kind,
        rules=label_rules(settings),
        holdout_fraction=settings.holdout_fraction,
        prediction_interval_seconds=settings.prediction_interval_days * SECONDS_PER_DAY,
        drift_response=settings.drift_response,
        readiness=readiness_rules(settings),
    )


def readiness_rules(settings: Settings) -> ReadinessRules:
    """When a model's score may reach the rules (``SEGFLOW_MODEL_READY_*``)."""
    return ReadinessRules(
        min_labels=settings.model_ready_min_labels,
        require_auc=settings.model_ready_require_auc,
        auc_z=settings.model_ready_auc_z,
        min_holdout_per_class=settings.model_ready_min_holdout_per_class,
    )


def pipeline_config(settings: Settings) -> PipelineConfig:
    """The pipeline's knobs from settings."""
    horizons = label_rules(settings)
    step = StepConfig(
        features=feature_config(settings),
        labels=horizons,
        input_names=model_inputs(settings),
        holdout_fraction=settings.holdout_fraction,
        prediction_interval_seconds=settings.prediction_interval_days * SECONDS_PER_DAY,
        rescore_seconds=settings.rescore_days * SECONDS_PER_DAY,
        group_attribute=settings.group_attribute,
        lifetime_horizon_days=horizons.clv_days,
    )
    return PipelineConfig(
        step=step,
        currency=settings.currency,
        idle_advance_seconds=settings.idle_advance_seconds,
        source_partitions=settings.events_partitions,
    )


def untrained_models(
    config: ModelConfig, period_seconds: float, key: bytes
) -> Callable[[int], DecodedSnapshot]:
    """The snapshot of a version sealed before any label was learned (fresh models), by version."""
    base = decode_snapshot(encode_snapshot(Learner(config, period_seconds, key).snapshot(0)), key)
    return lambda version: replace(base, version=version)


def build_pipeline(
    settings: Settings,
    client: object | None = None,
    clock: Callable[[], float] = time.time,
    cache_capacity: int | None = None,
    features: FeatureConfig | None = None,
    store: RedisFeatureStore | None = None,
) -> SegmentPipeline:
    """The pipeline with its Redis stores, model snapshots and rules, from settings.

    ``clock`` is the wall clock (emission times, idle advance); ``features`` overrides the
    catalogue configuration and ``store`` the feature store (tests).
    """
    client = store.client if store is not None else client or redis_client(settings)
    if store is None:
        ttl = round(settings.customer_ttl_days * SECONDS_PER_DAY)
        store = RedisFeatureStore(client, prefix=settings.key_prefix, ttl_seconds=ttl)  # type: ignore[arg-type]
    key = checkpoint_key(settings)
    lateness = settings.allowed_lateness_days * SECONDS_PER_DAY
    models = ModelGate(
        ModelSnapshotStore(client, settings.key_prefix, key),  # type: ignore[arg-type]
        settings.model_period_seconds,
        lateness,
        untrained_models(model_config(settings, features), settings.model_period_seconds, key),
    )
    config = pipeline_config(settings)
    if features is not None:
        step = replace(config.step, features=features, input_names=model_inputs(settings, features))
        config = replace(config, step=step)
    capacity = settings.record_cache_size if cache_capacity is None else cache_capacity
    rules = load_rule_set(settings, features)
    return SegmentPipeline(store, config, models, rules, clock=clock, cache_capacity=capacity)


def feature_config(settings: Settings) -> FeatureConfig:
    """The feature catalogue's configuration from settings."""
    return FeatureConfig(
        allowed_lateness_seconds=settings.allowed_lateness_days * SECONDS_PER_DAY,
        engagement_half_life_days=settings.engagement_half_life_days,
        key_features=split_list(settings.key_features),
        products=split_list(settings.products),
    )


def faust_app(settings: Settings, data_dir: str, web_enabled: bool | None = None) -> faust.App:
    """A Faust app for ``settings``: its group, web server on ``web_bind``, data under the stack dir."""
    datadir = settings.stack_dir / data_dir
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(settings),
        store="memory://",
        topic_disable_leader=True,
        topic_partitions=settings.events_partitions,
        consumer_auto_offset_reset="earliest",
        # Faust's default session timeout makes a dead worker's partitions wait long for a new owner.
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        broker_commit_interval=settings.commit_interval_seconds,
        producer_acks=-1,
        web_enabled=settings.web_enabled if web_enabled is None else web_enabled,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host="127.0.0.1",
        # Every page, Faust's own included, behind SEGFLOW_WEB_TOKEN (the probes stay open).
        web_application_options={"middlewares": [token_middleware(settings.web_secret)]}
        if settings.web_secret
        else None,
        datadir=str(datadir),
    )


def reloadable_rules(settings: Settings, names: Collection[str]) -> Callable[[Path], RuleSet]:
    """How a worker loads a changed rules file: in full, refusing one that changes a label horizon.

    The horizons define the models (what ``score_churn`` predicts, which labels the learner has
    learned), so a change needs a restart with a fresh model state, not a hot swap.
    """
    in_force = label_rules(settings)

    def load(path: Path) -> RuleSet:
        rules = load_rules(path, names)
        if label_rules(settings, rules.labels) != in_force:
            raise RulesError(
                str(path),
                None,
                "labels: the label horizons changed; they define the models, so restart "
                "the workers and the learner (with a fresh model state) to apply them",
            )
        return rules

    return load


def create_runtime(settings: Settings) -> Runtime:
    """Build the Faust app, topics and pipeline; the agent is attached by engine.stream.agents."""
    app = faust_app(settings, "worker-data")
    app.boot_strategy = _WebAndTimers(app)
    pipeline = build_pipeline(settings)
    names = rule_names(settings)

    def apply(rules: RuleSet) -> None:
        pipeline.rules = rules

    reloader = RulesReloader(
        rules_path(settings), reloadable_rules(settings, names), apply, settings.rules_reload_seconds
    )
    return Runtime(
        settings=settings,
        app=app,
        pipeline=pipeline,
        metrics=WorkerMetrics(rules_version=pipeline.rules.version),
        lock=asyncio.Lock(),
        reloader=reloader,
    )
