"""The models of one source partition: scored on its events, taught by its labels, checkpointed.

Ownership rule: a Kafka partition of the events topic has exactly one owner (the consumer-group
member it is assigned to), and each partition has its own bank of models, so with N workers
each model is trained by exactly one worker at a time and no two workers ever train diverging
copies of one model. The price is that a partition's models learn from that partition's
customers only (1/P of the labels); with the default 8 partitions that is plenty for the
linear models. A bank is checkpointed to Redis with the label sequence number it reflects and
claimed by the next owner with a generation number that fences out a former owner's late save
(``models.store``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.checkpoint import dump_checkpoint, load_checkpoint
from models.evaluation import ModelEvaluation
from models.labels import LabelRules
from models.learning import learn_label
from models.pending import LearnEntry, unpack_input
from models.registry import ModelSpec, build_model
from models.scoring import score
from models.vectorized import BatchScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BankConfig:
    """What every bank of a deployment is built from (the engine derives it from settings)."""

    specs: tuple[ModelSpec, ...]
    input_names: tuple[str, ...]
    kind: str = "linear"
    rules: LabelRules = field(default_factory=LabelRules)
    holdout_fraction: float = 0.1
    prediction_interval_seconds: float = 7 * 86_400.0
    drift_response: str = "alert"
    balance_classes: bool = False  # measured: weighting positives hurt AUC and calibration (models.learning)

    @property
    def fingerprint(self) -> str:
        """Changes whenever a checkpoint made with another config could not be reused."""
        parts = [self.kind, *self.input_names, *(f"{s.name}:{s.task}:{s.horizon_days}" for s in self.specs)]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


class ModelBank:
    """The River models, their live evaluations and label bookkeeping of one partition."""

    def __init__(self, partition: int, config: BankConfig) -> None:
        self.partition = partition
        self.config = config
        self.models: dict[str, Any] = {
            spec.name: build_model(spec.task, config.kind) for spec in config.specs
        }
        self.evaluations = {
            spec.name: ModelEvaluation(spec.name, spec.task, config.drift_response) for spec in config.specs
        }
        self.class_counts: dict[str, list[int]] = {spec.name: [0, 0] for spec in config.specs}
        self.learned_through = 0
        """The highest label sequence number learned."""
        self.checkpointed_through = 0
        """The highest label sequence number the last saved checkpoint reflects."""
        self.next_seq = 1
        self.labels_learned = 0
        self.drift_resets = 0
        self._tasks = {spec.name: spec.task for spec in config.specs}
        self._scorer: BatchScorer | None = None

    def score_all(self, x: Mapping[str, float]) -> dict[str, float]:
        """Every model's score of ``x`` (probability of True, or predicted value)."""
        return {name: score(model, self._tasks[name], x) for name, model in self.models.items()}

    def score_rows(self, rows: Sequence[Sequence[float]]) -> list[dict[str, float]]:
        """``score_all`` of many model-input rows (values in ``config.input_names`` order).

        Every linear model scores all rows with one matrix product, from a snapshot of its
        weights and scaler taken when the bank last learned (``models.vectorized``); equal to
        River's own prediction within 1e-9.
        """
        if self._scorer is None:
            self._scorer = BatchScorer(list(self.models), self._tasks, self.config.input_names)
        matrix = self._scorer.score(
            self.models, (self.learned_through, self.drift_resets), np.asarray(rows, dtype=np.float64)
        )
        names = self._scorer.model_names
        return [dict(zip(names, values, strict=True)) for values in matrix.tolist()]

    def take_seq(self) -> int:
        """The next label sequence number of this partition."""
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def learn(self, entry: LearnEntry) -> None:
        """Evaluate the label against its prediction, then learn it (unless holdout).

        Entries at or below ``learned_through`` were learned already and are ignored, so a
        replayed learn box cannot teach a label twice.
        """
        if entry.seq <= self.learned_through:
            return
        name = entry.model
        task = self._tasks.get(name)
        self.learned_through = entry.seq
        self.next_seq = max(self.next_seq, entry.seq + 1)
        if task is None:  # a model removed from the configuration since the label was made
            return
        evaluation = self.evaluations[name]
        evaluation.update(entry.y_true, entry.y_pred, entry.holdout, entry.resolved_ts)
        if not entry.holdout:
            try:
                x = unpack_input(entry.x, self.config.input_names)
            except ValueError as exc:  # made under another input configuration
                log.warning("partition %d: label %d of %s skipped: %s", self.partition, entry.seq, name, exc)
                return
            learn_label(
                self.models[name], task, x, entry.y_true, self.class_counts[name], self.config.balance_classes
            )
        self.labels_learned += 1
        if evaluation.reset_due:
            log.warning("partition %d: drift in %s; model reset", self.partition, name)
            self.models[name] = build_model(task, self.config.kind)
            self.class_counts[name] = [0, 0]
            self.drift_resets += 1

    def learn_all(self, entries: Sequence[LearnEntry]) -> int:
        """Learn entries in sequence order; return how many were new."""
        before = self.labels_learned
        for entry in sorted(entries, key=lambda e: e.seq):
            self.learn(entry)
        return self.labels_learned - before

    def reports(self) -> dict[str, dict[str, Any]]:
        """Per model, its evaluation report."""
        return {name: evaluation.report() for name, evaluation in self.evaluations.items()}

    def dump(self, key: bytes) -> bytes:
        """A signed checkpoint of this bank (``models.checkpoint``)."""
        meta = {
            "partition": self.partition,
            "fingerprint": self.config.fingerprint,
            "kind": self.config.kind,
            "learned_through": self.learned_through,
            "next_seq": self.next_seq,
            "labels_learned": self.labels_learned,
            "drift_resets": self.drift_resets,
            "created_wall_ts": time.time(),
        }
        state = {"models": self.models, "evaluations": self.evaluations, "class_counts": self.class_counts}
        return dump_checkpoint(state, meta, key)

    @classmethod
    def restore(cls, partition: int, config: BankConfig, blob: bytes | None, key: bytes) -> ModelBank:
        """The bank a checkpoint holds; a fresh one without a checkpoint or for another config.

        A blob that fails verification raises ``CheckpointError``: it is never unpickled.
        """
        bank = cls(partition, config)
        if not blob:
            return bank
        state, meta = load_checkpoint(blob, key)
        if meta.get("fingerprint") != config.fingerprint or meta.get("partition") != partition:
            log.warning(
                "partition %d: checkpoint made for another model configuration; starting fresh", partition
            )
            bank.learned_through = bank.checkpointed_through = int(meta.get("learned_through", 0))
            bank.next_seq = int(meta.get("next_seq", 1))
            return bank
        bank.models = state["models"]
        bank.evaluations = state["evaluations"]
        bank.class_counts = state["class_counts"]
        bank.learned_through = bank.checkpointed_through = int(meta["learned_through"])
        bank.next_seq = int(meta["next_seq"])
        bank.labels_learned = int(meta["labels_learned"])
        bank.drift_resets = int(meta.get("drift_resets", 0))
        return bank
