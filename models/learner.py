"""One model per kind for the whole population, learned from the labels topic in canonical order.

Pure logic, no I/O (``engine.learner`` runs it against Kafka and Redis). Labels arrive in any
order and possibly more than once; each is buffered under its **period**, k = floor(due_ts /
P) for ``period_seconds`` P, and copies of a label id already buffered are dropped. **Sealing
version k** learns every buffered label of period k in canonical order (due_ts, then label_id)
and takes a snapshot of the models: version k reflects exactly the labels with due_ts <
(k+1)*P, so it is the same whatever order the labels arrived in, how they were spread over
source partitions, and however often the learner restarted on the way. Holdout labels are
evaluated (``ModelEvaluation``, prequential and holdout sets) but never learned; every other
label is evaluated against the prediction it judges, then learned (``models.learning``).

The caller seals a version only once it is complete: every source partition's frontier has
passed the period's end (``sealable_version``) and the labels topic was read to its end after
the frontiers were read. A label of an already sealed period arriving later is **late**: counted,
never learned (nor evaluated), so it cannot make a republished snapshot differ from the first.

Versions are contiguous from the first period that had a label; before it the models are
untrained and no snapshot is made (``seal_through`` still advances ``sealed``). The whole
state, buffered labels included, is one signed checkpoint (``dump``/``restore``).

Each snapshot says per model whether it is **ready** for the rules or warming up, and why
(``models.readiness``), decided from the snapshot's own ``labels_learned`` and holdout metrics
under ``config.readiness``: a pure function of version k, the same for every worker and replay.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import msgpack

from models.checkpoint import CheckpointError, dump_checkpoint, load_checkpoint
from models.config import ModelConfig
from models.evaluation import ModelEvaluation
from models.label_messages import LabelMessage, MalformedLabel, decode_label, encode_label
from models.learning import learn_label
from models.pending import unpack_input
from models.readiness import Readiness
from models.readiness import readiness as model_readiness
from models.registry import build_model
from models.vectorized import LinearSnapshot

log = logging.getLogger(__name__)

SNAPSHOT_SCHEMA = 2  # 2: per model "ready" and "warming_up_reason"
CHECKPOINT_KIND = "segflow-learner"
Outcome = Literal["buffered", "duplicate", "late", "malformed"]
_LOGGED_MALFORMED = 10


@dataclass(slots=True)
class LearnerCounts:
    """What the learner has done with the labels it consumed (all since the first one)."""

    consumed: int = 0
    duplicates: int = 0
    late: int = 0
    malformed: int = 0
    """Undecodable, or not for this configuration (unknown model, input of another length)."""
    evaluated: int = 0
    learned: int = 0
    drift_resets: int = 0


def period_of(ts: float, period_seconds: float) -> int:
    """The k with k*P <= ts < (k+1)*P, exact at period boundaries despite float division."""
    k = math.floor(ts / period_seconds)
    if k * period_seconds > ts:
        k -= 1
    elif (k + 1) * period_seconds <= ts:
        k += 1
    return k


def sealable_version(frontiers: Mapping[int, float], partitions: int, period_seconds: float) -> int | None:
    """The highest k with every frontier of partitions 0..partitions-1 >= (k+1)*P (None: one is missing)."""
    if any(p not in frontiers for p in range(partitions)):
        return None
    return min(period_of(frontiers[p], period_seconds) for p in range(partitions)) - 1


class Learner:
    """The population's models, their evaluations and the labels buffered for unsealed periods."""

    def __init__(self, config: ModelConfig, period_seconds: float, key: bytes = b"") -> None:
        """``key`` signs the models that are not linear inside snapshots (``models.checkpoint``)."""
        if not period_seconds > 0:
            raise ValueError(f"period_seconds must be positive, got {period_seconds!r}")
        self.config = config
        self.period_seconds = float(period_seconds)
        self._key = key
        self.tasks = {spec.name: spec.task for spec in config.specs}
        self.models: dict[str, Any] = {
            name: build_model(task, config.kind) for name, task in self.tasks.items()
        }
        self.evaluations = {
            spec.name: ModelEvaluation(spec.name, spec.task, config.drift_response) for spec in config.specs
        }
        self.class_counts: dict[str, list[int]] = {name: [0, 0] for name in self.tasks}
        self.labels_learned: dict[str, int] = dict.fromkeys(self.tasks, 0)
        self.buffer: dict[int, dict[str, LabelMessage]] = {}
        """Period -> label id -> label, for the periods not sealed yet."""
        self._period_of_id: dict[str, int] = {}
        self.sealed: int | None = None
        """The highest sealed version (None: nothing sealed yet)."""
        self.first_version: int | None = None
        """The first version with a snapshot (None: no label sealed yet)."""
        self.counts = LearnerCounts()
        self._previous: dict[str, Any] | None = None
        self._x_bytes = 4 * len(config.input_names)

    @property
    def fingerprint(self) -> str:
        """Changes whenever a checkpoint of another configuration or period could not be reused."""
        text = f"{self.config.fingerprint}|{self.period_seconds!r}|{self.config.balance_classes}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def buffered(self) -> int:
        """Labels waiting for their period to be sealed."""
        return len(self._period_of_id)

    def offer(self, raw: bytes | None) -> Outcome:
        """Take one message of the labels topic (malformed ones are counted, logged and skipped)."""
        try:
            label = decode_label(raw)
        except MalformedLabel as exc:
            return self._malformed(str(exc))
        return self.add(label)

    def add(self, label: LabelMessage) -> Outcome:
        """Buffer a decoded label for its period, unless it is a copy, late, or does not fit."""
        self.counts.consumed += 1
        task = self.tasks.get(label.model)
        if task is None:
            return self._malformed(f"label {label.label_id}: unknown model {label.model!r}", counted=True)
        if len(label.x) != self._x_bytes:
            inputs = f"{len(label.x) // 4} inputs, the models read {self._x_bytes // 4}"
            return self._malformed(f"label {label.label_id}: x has {inputs}", counted=True)
        if task == "classification" and not 0.0 <= label.y_pred <= 1.0:
            reason = f"label {label.label_id}: probability {label.y_pred!r} out of [0, 1]"
            return self._malformed(reason, counted=True)
        period = period_of(label.due_ts, self.period_seconds)
        if self.sealed is not None and period <= self.sealed:
            self.counts.late += 1
            return "late"
        if label.label_id in self._period_of_id:
            self.counts.duplicates += 1
            return "duplicate"
        self._period_of_id[label.label_id] = period
        self.buffer.setdefault(period, {})[label.label_id] = label
        return "buffered"

    def _malformed(self, reason: str, counted: bool = False) -> Outcome:
        if not counted:
            self.counts.consumed += 1
        self.counts.malformed += 1
        if self.counts.malformed <= _LOGGED_MALFORMED or self.counts.malformed % 1000 == 0:
            log.warning("label skipped (%d malformed so far): %s", self.counts.malformed, reason)
        return "malformed"

    def seal_through(self, version: int) -> list[tuple[int, dict[str, Any]]]:
        """Seal every version up to ``version``; the (version, snapshot) of each one made.

        Sealing starts after ``sealed`` (or, the first time, at the earliest buffered period);
        versions before the first label have no snapshot (their models are untrained).
        """
        if self.sealed is not None and version <= self.sealed:
            return []
        if self.sealed is None:
            start = min((p for p in self.buffer if p <= version), default=version)
        else:
            start = self.sealed + 1
        made = []
        for k in range(start, version + 1):
            snapshot = self._seal(k)
            if snapshot is not None:
                made.append((k, snapshot))
        return made

    def _seal(self, version: int) -> dict[str, Any] | None:
        labels = self.buffer.pop(version, {})
        for label in sorted(labels.values(), key=lambda m: (m.due_ts, m.label_id)):
            del self._period_of_id[label.label_id]
            self._learn(label)
        self.sealed = version
        if self.first_version is None:
            if not labels:
                return None
            self.first_version = version
        if labels or self._previous is None:
            self._previous = self.snapshot(version)
            return self._previous
        return {**self._previous, "version": version}  # nothing learned: same models and metrics

    def _learn(self, label: LabelMessage) -> None:
        name, task = label.model, self.tasks[label.model]
        evaluation = self.evaluations[name]
        evaluation.update(label.y_true, label.y_pred, label.holdout, label.resolved_ts)
        self.counts.evaluated += 1
        if label.holdout:
            return
        x = unpack_input(label.x, self.config.input_names)
        learn_label(
            self.models[name], task, x, label.y_true, self.class_counts[name], self.config.balance_classes
        )
        self.labels_learned[name] += 1
        self.counts.learned += 1
        if evaluation.reset_due:
            log.warning("drift in %s at event time %s; model reset", name, label.resolved_ts)
            self.models[name] = build_model(task, self.config.kind)
            self.class_counts[name] = [0, 0]
            self.counts.drift_resets += 1

    def snapshot(self, version: int) -> dict[str, Any]:
        """The published form of the current models as ``version`` (see ``engine.learner``)."""
        models: dict[str, Any] = {}
        metrics = self.reports()
        ready = self.readiness(metrics)
        for name, model in self.models.items():
            task = self.tasks[name]
            entry: dict[str, Any] = {
                "task": task,
                "labels_learned": self.labels_learned[name],
                "ready": ready[name].ready,
                "warming_up_reason": ready[name].reason,
            }
            linear = LinearSnapshot.from_model(model, task, self.config.input_names)
            if linear is not None:
                entry.update(kind="linear", linear=linear.to_dict())
            else:
                meta = {"model": name, "version": version, "fingerprint": self.config.fingerprint}
                entry.update(kind="river", blob=dump_checkpoint({name: model}, meta, self._require_key()))
            models[name] = entry
        return {
            "schema": SNAPSHOT_SCHEMA,
            "version": version,
            "period_seconds": self.period_seconds,
            "input_names": list(self.config.input_names),
            "fingerprint": self.config.fingerprint,
            "labels_learned_total": sum(self.labels_learned.values()),
            "models": models,
            "metrics": metrics,
        }

    def reports(self) -> dict[str, dict[str, Any]]:
        """Per model, its evaluation report (prequential and holdout metrics, drift)."""
        return {name: evaluation.report() for name, evaluation in self.evaluations.items()}

    def readiness(self, reports: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Readiness]:
        """Per model, whether it is ready (``models.readiness``) given ``reports`` (default: now).

        Labels are learned only when a version is sealed, so between seals this is the
        readiness of the last sealed snapshot.
        """
        reports = self.reports() if reports is None else reports
        rules = self.config.readiness
        return {
            name: model_readiness(task, self.labels_learned[name], reports[name], rules)
            for name, task in self.tasks.items()
        }

    def _require_key(self) -> bytes:
        if not self._key:
            raise CheckpointError("models that are not linear need the checkpoint key to be published")
        return self._key

    def dump(self, extra_meta: Mapping[str, Any] | None = None) -> bytes:
        """The whole state as one signed checkpoint; ``extra_meta`` (plain JSON) rides along."""
        meta = {
            "kind": CHECKPOINT_KIND,
            "fingerprint": self.fingerprint,
            "period_seconds": self.period_seconds,
            "sealed": self.sealed,
            "first_version": self.first_version,
            "counts": asdict(self.counts),
            **(extra_meta or {}),
        }
        state = {
            "models": self.models,
            "evaluations": self.evaluations,
            "class_counts": self.class_counts,
            "labels_learned": self.labels_learned,
            "buffer": {p: [encode_label(m) for m in labels.values()] for p, labels in self.buffer.items()},
        }
        return dump_checkpoint(state, meta, self._require_key())

    @classmethod
    def restore(
        cls, config: ModelConfig, period_seconds: float, key: bytes, blob: bytes
    ) -> tuple[Learner, dict[str, Any]]:
        """The learner a checkpoint holds, with the checkpoint's meta.

        Raises ``CheckpointError`` for a blob that does not verify (nothing is unpickled) or
        was made for another configuration or period (its state would be meaningless here).
        """
        learner = cls(config, period_seconds, key)
        state, meta = load_checkpoint(blob, key)
        if meta.get("kind") != CHECKPOINT_KIND or meta.get("fingerprint") != learner.fingerprint:
            raise CheckpointError(
                f"the learner checkpoint was made for another model configuration or period "
                f"(fingerprint {meta.get('fingerprint')}, this one {learner.fingerprint})"
            )
        learner.models = dict(state["models"])  # type: ignore[call-overload]
        learner.evaluations = dict(state["evaluations"])  # type: ignore[call-overload]
        learner.class_counts = dict(state["class_counts"])  # type: ignore[call-overload]
        learner.labels_learned = dict(state["labels_learned"])  # type: ignore[call-overload]
        buffer: Mapping[int, list[bytes]] = state["buffer"]  # type: ignore[assignment]
        for period, raws in buffer.items():
            labels = [decode_label(raw) for raw in raws]
            learner.buffer[int(period)] = {m.label_id: m for m in labels}
            learner._period_of_id.update((m.label_id, int(period)) for m in labels)
        learner.sealed = meta["sealed"]
        learner.first_version = meta["first_version"]
        learner.counts = LearnerCounts(**meta["counts"])
        return learner, meta


def encode_snapshot(snapshot: Mapping[str, Any]) -> bytes:
    """A snapshot's published bytes (msgpack; the same snapshot always gives the same bytes)."""
    return msgpack.packb(snapshot, use_bin_type=True)
