"""Replay a stream through features and models in event time, without Kafka or Redis.

This is what ``segflow evaluate`` runs: every event updates its customer's features
(``features.state.apply_event``, the same code the worker runs), every model scores the
customer when it makes a prediction, predictions wait for their labels (``models.labels``), and
a matured label is scored at once (prequential: the prediction was made before the label existed)
and then, unless the customer is in the fixed holdout group, learned once the watermark has
passed its prediction's due time (``models.learning.MaturingLabels``: a label that resolved early
waits, so that every label is learned one horizon after its prediction). The watermark is the
newest event time minus the allowed lateness, exactly as in the worker.

Predictions made during the first ``warmup_days`` are resolved and learned from, but not scored:
an untrained model's guesses say nothing about the model.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.catalogue import catalogue, snapshot
from features.config import FeatureConfig
from features.event import SECONDS_PER_DAY, Event
from features.state import CustomerState, apply_event
from models.evaluation import ModelEvaluation, is_holdout
from models.inputs import input_features, to_model_input
from models.labels import LabelRules, PendingPrediction, ResolvedLabel
from models.learning import MaturingLabels, learn_label
from models.registry import ModelSpec, build_model
from models.scoring import score

EXCLUDED_INPUTS = ("late_events_dropped",)


@dataclass(slots=True)
class LabelRow:
    """One matured label, kept for the hindsight reference."""

    x: dict[str, float]
    y_true: float
    y_pred: float
    holdout: bool
    customer_id: str = ""


@dataclass(slots=True)
class OfflineResult:
    """Metrics per model, and the labelled rows of each model."""

    evaluations: dict[str, ModelEvaluation]
    rows: dict[str, list[LabelRow]] = field(default_factory=dict)
    events: int = 0
    too_late: int = 0
    input_names: list[str] = field(default_factory=list)


class OfflineRun:
    """The state of one replay: features, models, pending predictions, the due index."""

    def __init__(
        self,
        specs: list[ModelSpec],
        feature_config: FeatureConfig,
        rules: LabelRules,
        kind: str = "linear",
        holdout_fraction: float = 0.1,
        warmup_days: float = 30.0,
        prediction_interval_days: float = 0.0,
        balance_classes: bool = False,
        protected: tuple[str, ...] = (),
        learn_at_due: bool = True,
    ) -> None:
        self.learn_at_due = learn_at_due
        self.interval_seconds = prediction_interval_days * SECONDS_PER_DAY
        self.balance_classes = balance_classes
        self.class_counts: dict[str, list[int]] = {}
        self.last_made: dict[tuple[str, str], float] = {}
        self.specs = {spec.name: spec for spec in specs}
        self.config = feature_config
        self.rules = rules
        self.models = {spec.name: build_model(spec.task, kind) for spec in specs}
        self.holdout_fraction = holdout_fraction
        self.warmup_seconds = warmup_days * SECONDS_PER_DAY
        self.names = input_features(catalogue(feature_config), exclude=EXCLUDED_INPUTS, protected=protected)
        self.result = OfflineResult(
            evaluations={spec.name: ModelEvaluation(spec.name, spec.task) for spec in specs},
            input_names=self.names,
        )
        self.states: dict[str, CustomerState] = {}
        self.pending: dict[str, dict[str, PendingPrediction]] = {}
        self.due: list[tuple[float, int, str, str]] = []
        self.maturing = MaturingLabels()
        self._sequence = 0
        self.first_ts: float | None = None
        self.newest_ts = float("-inf")

    def feed(self, event: Event) -> None:
        """Apply one event: features, labels it resolves, scores, then labels due by time."""
        self.result.events += 1
        if self.first_ts is None:
            self.first_ts = event.ts
        state, applied = apply_event(self.states.get(event.customer_id), event, self.config)
        self.states[event.customer_id] = state
        if not applied:
            self.result.too_late += 1
            return
        own = self.pending.setdefault(event.customer_id, {})
        for name in list(own):
            label = self.rules.on_event(own[name], event)
            if label is not None:
                del own[name]
                self._finish(event.customer_id, label)
        # Only a model that makes a prediction now scores the customer (scoring is pure, so the
        # scores skipped would have been thrown away): most events start no prediction, because
        # one is pending or the last one is younger than the prediction interval.
        x: dict[str, float] | None = None
        holdout = False
        for name, spec in self.specs.items():
            last = self.last_made.get((event.customer_id, name))
            if name not in own and (last is None or event.ts - last >= self.interval_seconds):
                if x is None:
                    x = to_model_input(snapshot(event.customer_id, state, self.config), self.names)
                    holdout = is_holdout(event.customer_id, self.holdout_fraction)
                y_pred = score(self.models[name], spec.task, x)
                self.last_made[(event.customer_id, name)] = event.ts
                own[name] = self.rules.start(name, event.ts, x, y_pred, holdout)
                self._sequence += 1
                heapq.heappush(self.due, (own[name].due_ts, self._sequence, event.customer_id, name))
        self.newest_ts = max(self.newest_ts, event.ts)
        self._resolve_due(self.newest_ts - self.config.allowed_lateness_seconds)

    def _resolve_due(self, watermark: float) -> None:
        while True:
            held = self.maturing.next_due()
            if self.due and self.due[0][0] <= watermark and (held is None or self.due[0][0] < held):
                due_ts, _seq, customer_id, name = heapq.heappop(self.due)
                pending = self.pending.get(customer_id, {}).get(name)
                if pending is None or pending.due_ts != due_ts:
                    continue  # resolved early; a newer prediction has its own entry
                label = self.rules.on_time(pending, watermark)
                if label is None:
                    continue
                del self.pending[customer_id][name]
                self._finish(customer_id, label)
            elif held is not None and held <= watermark:
                for label in self.maturing.ripe(held):
                    self._learn(label)
            else:
                return

    def _finish(self, customer_id: str, label: ResolvedLabel) -> None:
        scored = self.first_ts is not None and label.made_ts - self.first_ts >= self.warmup_seconds
        if scored:
            self.result.evaluations[label.model].update(
                label.y_true, label.y_pred, label.holdout, label.resolved_ts
            )
            self.result.rows.setdefault(label.model, []).append(
                LabelRow(label.x, label.y_true, label.y_pred, label.holdout, customer_id)
            )
        if label.holdout:
            return
        due_ts = label.made_ts + self.rules.horizon_seconds(label.model)
        if self.learn_at_due and label.resolved_ts < due_ts:
            self.maturing.hold(label, due_ts)
        else:
            self._learn(label)

    def _learn(self, label: ResolvedLabel) -> None:
        counts = self.class_counts.setdefault(label.model, [0, 0])
        learn_label(
            self.models[label.model],
            self.specs[label.model].task,
            label.x,
            label.y_true,
            counts,
            self.balance_classes,
        )


def replay(events: Iterable[Event], run: OfflineRun) -> OfflineResult:
    """Feed ``events`` (in arrival order) to ``run``; return its metrics."""
    for event in events:
        run.feed(event)
    return run.result


BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 0


def hindsight_auc(rows: list[LabelRow], names: list[str]) -> dict[str, float | int | None]:
    """A scikit-learn logistic regression trained with hindsight on the non-holdout labels.

    It sees every label at once (no delay, many passes), on the same features as the online
    model, and is scored on the same holdout labels; the online model's holdout AUC is read
    from its own predictions, made before each label existed.

    Besides both AUCs and the label counts (``holdout_positives`` says how many positives the
    holdout AUCs rest on), ``gap_low``/``gap_high`` bound a 95% interval of reference minus online
    AUC from a paired bootstrap over holdout customers (a customer's labels are resampled
    together; the reference is not refitted, so it covers the holdout's sampling noise only).
    """
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise ValueError(
            "the hindsight reference needs scikit-learn: pip install 'segflow[evaluate]'"
        ) from None

    train = [r for r in rows if not r.holdout]
    test = [r for r in rows if r.holdout]
    out: dict[str, float | int | None] = {
        "train_labels": len(train),
        "holdout_labels": len(test),
        "holdout_positives": sum(1 for r in test if r.y_true),
    }
    if len({r.y_true for r in train}) < 2 or len({r.y_true for r in test}) < 2:
        return out | {"reference_auc": None, "online_auc": None, "gap_low": None, "gap_high": None}
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    reference.fit(_matrix(train, names), [r.y_true for r in train])
    reference_scores = reference.predict_proba(_matrix(test, names))[:, 1]
    truth = np.array([r.y_true for r in test])
    online_scores = np.array([r.y_pred for r in test])
    out["reference_auc"] = float(roc_auc_score(truth, reference_scores))
    out["online_auc"] = float(roc_auc_score(truth, online_scores))
    gaps = _bootstrap_gaps(test, truth, reference_scores, online_scores, roc_auc_score)
    low, high = np.percentile(gaps, [2.5, 97.5]) if gaps else (None, None)
    out["gap_low"] = None if low is None else float(low)
    out["gap_high"] = None if high is None else float(high)
    return out


def _bootstrap_gaps(
    test: list[LabelRow], truth: Any, reference_scores: Any, online_scores: Any, auc: Any
) -> list[float]:
    """Reference minus online AUC over ``BOOTSTRAP_RESAMPLES`` resamples of holdout customers."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(test):
        groups.setdefault(row.customer_id, []).append(index)
    members = [np.array(indices) for indices in groups.values()]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    gaps: list[float] = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        sample = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        y = truth[sample]
        if y.min() == y.max():
            continue
        gaps.append(float(auc(y, reference_scores[sample]) - auc(y, online_scores[sample])))
    return gaps


def _matrix(rows: list[LabelRow], names: list[str]) -> list[list[float]]:
    return [[row.x[name] for name in names] for row in rows]


def summarise(result: OfflineResult) -> dict[str, Mapping[str, Any]]:
    """Per model: the evaluation's report."""
    return {name: evaluation.report() for name, evaluation in result.evaluations.items()}
