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

Decision outcomes (``models.outcome_messages``) travel the same way: buffered by period,
deduplicated by id, and added, when their period is sealed, to tallies per action, experiment,
segment, group and variant that every later snapshot carries (what bandits and lift read).

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

from features.log_names import label as log_label
from models.checkpoint import CheckpointError, dump_checkpoint, load_checkpoint
from models.config import ModelConfig
from models.evaluation import ModelEvaluation
from models.label_messages import LabelMessage, MalformedLabel, decode_label
from models.learning import learn_label
from models.outcome_messages import (
    OUTCOME_KIND,
    MalformedOutcome,
    OutcomeMessage,
    OutcomeTally,
    TallyKey,
    decode_message,
    decode_outcome,
    encode_message,
    message_id,
    message_kind,
    tally_key,
)
from models.pending import unpack_input
from models.readiness import Readiness
from models.readiness import readiness as model_readiness
from models.registry import build_model
from models.vectorized import LinearSnapshot

log = logging.getLogger(__name__)

SNAPSHOT_SCHEMA = 3  # 2: per model "ready" and "warming_up_reason"; 3: "outcomes" tallies
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
    outcomes: int = 0
    """Decision outcomes tallied (``models.outcome_messages``); copies and late ones are counted
    in ``duplicates`` and ``late`` with the labels."""


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
        self.buffer: dict[int, dict[str, LabelMessage | OutcomeMessage]] = {}
        """Period -> message id -> label or decision outcome, for the periods not sealed yet."""
        self.tallies: dict[TallyKey, list[float]] = {}
        """Sealed decision outcomes: key -> [outcomes, conversions, revenue]."""
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
        """Take one message of the labels topic: a label or a decision outcome (malformed ones
        are counted, logged and skipped)."""
        try:
            if message_kind(raw) == OUTCOME_KIND:
                return self.add_outcome(decode_outcome(raw))  # type: ignore[arg-type]
            label = decode_label(raw)
        except (MalformedLabel, MalformedOutcome) as exc:
            return self._malformed(str(exc))
        return self.add(label)

    def add_outcome(self, message: OutcomeMessage) -> Outcome:
        """Buffer a decision outcome for its period, unless it is a copy or late."""
        self.counts.consumed += 1
        return self._buffer(message_id(message), message)

    def add(self, label: LabelMessage) -> Outcome:
        """Buffer a decoded label for its period, unless it is a copy, late, or does not fit."""
        self.counts.consumed += 1
        task = self.tasks.get(label.model)
        if task is None:
            reason = f"label {log_label(label.label_id)}: unknown model {label.model!r}"
            return self._malformed(reason, counted=True)
        if len(label.x) != self._x_bytes:
            inputs = f"{len(label.x) // 4} inputs, the models read {self._x_bytes // 4}"
            return self._malformed(f"label {log_label(label.label_id)}: x has {inputs}", counted=True)
        if task == "classification" and not 0.0 <= label.y_pred <= 1.0:
            reason = f"label {log_label(label.label_id)}: probability {label.y_pred!r} out of [0, 1]"
            return self._malformed(reason, counted=True)
        return self._buffer(label.label_id, label)

    def _buffer(self, message_id: str, message: LabelMessage | OutcomeMessage) -> Outcome:
        period = period_of(message.due_ts, self.period_seconds)
        if self.sealed is not None and period <= self.sealed:
            self.counts.late += 1
            return "late"
        if message_id in self._period_of_id:
            self.counts.duplicates += 1
            return "duplicate"
        self._period_of_id[message_id] = period
        self.buffer.setdefault(period, {})[message_id] = message
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
        for mid in sorted(labels, key=lambda i: (labels[i].due_ts, i)):
            del self._period_of_id[mid]
            message = labels[mid]
            if isinstance(message, OutcomeMessage):
                self._tally(message)
            else:
                self._learn(message)
        self.sealed = version
        if self.first_version is None:
            if not labels:
                return None
            self.first_version = version
        if labels or self._previous is None:
            self._previous = self.snapshot(version)
            return self._previous
        return {**self._previous, "version": version}  # nothing learned: same models and metrics

    def _tally(self, message: OutcomeMessage) -> None:
        counts = self.tallies.setdefault(tally_key(message), [0, 0, 0.0])
        counts[0] += 1
        counts[1] += int(message.converted)
        counts[2] = round(counts[2] + message.revenue, 2)
        self.counts.outcomes += 1

    def outcome_tallies(self) -> list[OutcomeTally]:
        """The sealed decision outcomes, one tally per key, in key order."""
        return [
            OutcomeTally(*key, int(n), int(conversions), float(revenue))
            for key, (n, conversions, revenue) in sorted(self.tallies.items())
        ]

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
            "outcomes": [tally.to_wire() for tally in self.outcome_tallies()],
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
            "buffer": {p: [encode_message(m) for m in labels.values()] for p, labels in self.buffer.items()},
            "tallies": self.tallies,
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
            messages = {message_id(m): m for m in map(decode_message, raws)}
            learner.buffer[int(period)] = messages
            learner._period_of_id.update((mid, int(period)) for mid in messages)
        learner.tallies = dict(state.get("tallies", {}))  # type: ignore[call-overload]
        learner.sealed = meta["sealed"]
        learner.first_version = meta["first_version"]
        learner.counts = LearnerCounts(**meta["counts"])
        return learner, meta


def encode_snapshot(snapshot: Mapping[str, Any]) -> bytes:
    """A snapshot's published bytes (msgpack; the same snapshot always gives the same bytes)."""
    return msgpack.packb(snapshot, use_bin_type=True)
