"""``segflow evaluate``: features and models over a stream in event time, metrics side by side.

The stream is a JSON-lines file of schema-v1 events or the population simulator; the replay
(``models.offline``) is the worker's feature code and label rules without Kafka or Redis.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.app import feature_config
from engine.event_decoder import decode_event
from engine.schemas import InvalidEvent
from engine.settings import Settings, split_list
from features.event import Event
from models.labels import LabelRules
from models.offline import OfflineResult, OfflineRun, hindsight_auc, replay
from models.population import PopulationConfig
from models.registry import model_specs
from models.simulate import generate_events, to_event


def file_events(path: Path, currency: str) -> Iterator[Event]:
    """Valid events of a JSON-lines file (invalid lines stop with path:line and the reason)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield decode_event(line.strip(), currency)
            except InvalidEvent as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None


def simulated_events(customers: int, days: int, seed: int) -> Iterator[Event]:
    """The simulator's stream as typed events."""
    return (to_event(w) for w in generate_events(PopulationConfig(customers=customers, days=days, seed=seed)))


def run_evaluation(
    settings: Settings, events: Iterator[Event], models: list[str] | None, warmup_days: float
) -> tuple[OfflineResult, dict[str, Any]]:
    """Replay ``events``; return the result and the churn model's hindsight comparison."""
    config = feature_config(settings)
    specs = model_specs(config.products, settings.churn_days, settings.clv_days, settings.propensity_days)
    if models:
        unknown = set(models) - {spec.name for spec in specs}
        if unknown:
            raise ValueError(
                f"unknown model(s) {', '.join(sorted(unknown))}; known: {[s.name for s in specs]}"
            )
        specs = [spec for spec in specs if spec.name in models]
    rules = LabelRules(settings.churn_days, settings.clv_days, settings.propensity_days)
    run = OfflineRun(
        specs,
        config,
        rules,
        settings.model_kind,
        settings.holdout_fraction,
        warmup_days,
        settings.prediction_interval_days,
        # Unweighted positives: weighting them cost holdout ROC AUC and calibration (models.learning).
        balance_classes=False,
        protected=split_list(settings.protected_attributes),
    )
    result = replay(events, run)
    reference = (
        hindsight_auc(result.rows.get("churn", []), result.input_names) if "churn" in result.rows else {}
    )
    return result, reference


def render(result: OfflineResult, reference: dict[str, Any]) -> str:
    """The metrics as a table, then the hindsight comparison."""
    lines = [f"events {result.events} (too late: {result.too_late}); inputs {len(result.input_names)}"]
    lines.append(
        f"{'model':24} {'group':12} {'labels':>7} {'pos':>6} {'roc_auc':>8} {'log_loss':>9} {'ece':>7} "
        f"{'mae':>9} {'rmse':>9}"
    )
    for name, evaluation in result.evaluations.items():
        report = evaluation.report()
        for group in ("prequential", "holdout"):
            row = report.get(group, {})
            lines.append(
                f"{name:24} {group:12} {row.get('n', 0):>7} {_fmt(row.get('positives'), 'd'):>6} "
                f"{_fmt(row.get('roc_auc')):>8} {_fmt(row.get('log_loss')):>9} {_fmt(row.get('ece')):>7} "
                f"{_fmt(row.get('mae')):>9} {_fmt(row.get('rmse')):>9}"
            )
        drift = report.get("drift", {})
        lines.append(
            f"{name:24} drift detections: {drift.get('detections', 0)} (response: {drift.get('response')})"
        )
    if reference:
        lines.append(
            "churn on the holdout labels: online (prequential predictions) ROC AUC "
            f"{_fmt(reference.get('online_auc'))} vs scikit-learn with hindsight "
            f"{_fmt(reference.get('reference_auc'))} ({reference.get('train_labels')} training labels, "
            f"{reference.get('holdout_labels')} holdout labels, "
            f"{reference.get('holdout_positives')} of them positive)"
        )
        online, hindsight = reference.get("online_auc"), reference.get("reference_auc")
        if online is not None and hindsight is not None:
            lines.append(
                f"churn hindsight minus online ROC AUC: {hindsight - online:.3f} (95% interval over "
                f"holdout customers {_fmt(reference.get('gap_low'))} to {_fmt(reference.get('gap_high'))})"
            )
    return "\n".join(lines)


def as_json(result: OfflineResult, reference: dict[str, Any]) -> str:
    """Machine-readable form of the same."""
    return json.dumps(
        {
            "events": result.events,
            "too_late": result.too_late,
            "models": {name: e.report() for name, e in result.evaluations.items()},
            "churn_hindsight": reference,
        },
        indent=2,
        default=str,
    )


def _fmt(value: Any, kind: str = ".3f") -> str:
    if value is None:
        return "-"
    return format(value, kind)
