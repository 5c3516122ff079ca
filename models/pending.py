"""A customer's predictions waiting for their labels.

The **prediction book** lives in the customer's record in Redis (committed atomically with the
features), never only in a worker's memory, so a crash or a rebalance loses nothing: per model
at most one pending prediction (the input it saw, its score, when it was made and falls due),
the labels that resolved early and wait for their due time, and when the model last predicted
for this customer. A resolved label leaves through the customer's outbox, committed with the
same write, for the labels topic, where the learner learns it exactly once (``engine.learner``).

Inputs are stored as float32 in input-name order (a 52-input vector is 208 bytes, shared by the
predictions made at one event). A prediction is stored, learned and replayed from the same
rounded vector, so a replayed label teaches exactly what the live one did.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgpack

from features.event import Event
from models.labels import LabelRules, PendingPrediction, ResolvedLabel


def pack_input(x: dict[str, float], names: Sequence[str]) -> bytes:
    """``x`` as float32 bytes in ``names`` order."""
    return array("f", [x[name] for name in names]).tobytes()


def pack_row(row: Sequence[float]) -> bytes:
    """A model-input row (values in input-name order) as float32 bytes, as ``pack_input`` stores it."""
    return array("f", row).tobytes()


def unpack_input(raw: bytes, names: Sequence[str]) -> dict[str, float]:
    """Inverse of ``pack_input``; raises ValueError when the vector does not fit ``names``."""
    values = array("f")
    values.frombytes(raw)
    if len(values) != len(names):
        raise ValueError(f"stored model input has {len(values)} values, the models read {len(names)}")
    return dict(zip(names, values, strict=True))


@dataclass(slots=True)
class PredictionBook:
    """Pending predictions of one customer (``x`` of each is the stored float32 vector)."""

    pending: dict[str, PendingPrediction] = field(default_factory=dict)
    last_made: dict[str, float] = field(default_factory=dict)
    held: list[tuple[float, ResolvedLabel]] = field(default_factory=list)
    """Labels that resolved before their prediction's due time, waiting for it (see on_event)."""
    timed_out: dict[str, float] = field(default_factory=dict)
    """Per model, the due time of its last prediction that resolved by time (see may_predict)."""
    changed: bool = field(default=False, compare=False)
    """Whether anything changed since the book was decoded (unchanged: its stored bytes stand)."""

    def encode(self) -> bytes:
        """Storage bytes; predictions made at one event share one stored vector."""
        vectors: dict[bytes, int] = {}
        rows = {}
        for name, p in sorted(self.pending.items()):
            assert isinstance(p.x, bytes)
            index = vectors.setdefault(p.x, len(vectors))
            rows[name] = [index, p.made_ts, p.due_ts, p.y_pred, p.realised, p.holdout]
        held = []
        for due, label in self.held:
            assert isinstance(label.x, bytes)
            index = vectors.setdefault(label.x, len(vectors))
            held.append(
                [
                    due,
                    label.model,
                    index,
                    label.y_true,
                    label.y_pred,
                    label.made_ts,
                    label.resolved_ts,
                    label.holdout,
                ]
            )
        return msgpack.packb(
            {
                "x": list(vectors),
                "p": rows,
                "m": dict(sorted(self.last_made.items())),
                "h": held,
                "r": dict(sorted(self.timed_out.items())),
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> PredictionBook:
        """Inverse of ``encode`` (an empty book for None)."""
        if not raw:
            return cls()
        data = msgpack.unpackb(raw, raw=False)
        vectors = data["x"]
        pending = {
            name: PendingPrediction(name, made, due, vectors[index], y_pred, bool(holdout), realised)
            for name, (index, made, due, y_pred, realised, holdout) in data["p"].items()
        }
        held = [
            (due, ResolvedLabel(model, vectors[index], y_true, y_pred, made, resolved, bool(holdout)))
            for due, model, index, y_true, y_pred, made, resolved, holdout in data.get("h", [])
        ]
        return cls(pending, dict(data["m"]), held, dict(data.get("r", {})))

    def on_event(self, rules: LabelRules, event: Event) -> list[tuple[float, ResolvedLabel]]:
        """Labels that ``event`` resolves at their due time, with it; earlier ones wait in ``held``.

        A label that resolves early (churn: active again; a propensity: bought) is kept until
        its prediction's due time, so that every label is learned one horizon after its
        prediction, whichever way it resolved. Learned at once, early outcomes would flood the
        newest part of the training stream (see ``models.learning``). Its prediction leaves the
        book at once, so the model may predict for the customer again.
        """
        resolved = []
        for name in list(self.pending):
            pending = self.pending[name]
            label = rules.on_event(pending, event)
            if label is None:
                continue
            del self.pending[name]
            self.changed = True
            if label.resolved_ts < pending.due_ts:
                self.held.append((pending.due_ts, label))
            else:
                resolved.append((pending.due_ts, label))
        return resolved

    def on_time(self, rules: LabelRules, watermark: float) -> list[tuple[float, ResolvedLabel]]:
        """Labels matured by the watermark, held ones included, with their due times, in due order."""
        ripe = [(due, label) for due, label in self.held if due <= watermark]
        if ripe:
            self.held = [(due, label) for due, label in self.held if due > watermark]
        for name in list(self.pending):
            label = rules.on_time(self.pending[name], watermark)
            if label is not None:
                due = self.pending.pop(name).due_ts
                self.timed_out[name] = due
                ripe.append((due, label))
        if ripe:
            self.changed = True
        return sorted(ripe, key=lambda item: (item[0], item[1].model))

    def may_predict(self, model: str, ts: float, interval_seconds: float, lateness_seconds: float) -> bool:
        """Whether a new prediction of ``model`` at ``ts`` is to be kept for its label.

        Not while one is pending, and at most one per ``interval_seconds`` of event time, so a
        very active customer does not flood the labels with near-copies of one moment. After a
        prediction that resolved by time, not until ``ts`` is more than ``lateness_seconds`` past
        its due time: from then on it is resolved whatever the partition's watermark did (the
        customer's own lateness makes it final), so when the next prediction starts depends on
        the customer's own events only, not on how the log is partitioned or batched.
        """
        if model in self.pending:
            return False
        if ts - lateness_seconds <= self.timed_out.get(model, float("-inf")):
            return False
        last = self.last_made.get(model)
        return last is None or ts - last >= interval_seconds

    def start(self, rules: LabelRules, model: str, ts: float, x: bytes, y_pred: float, holdout: bool) -> None:
        """Keep a prediction made at ``ts`` until its label resolves."""
        self.changed = True
        self.last_made[model] = ts
        self.pending[model] = PendingPrediction(
            model,
            ts,
            ts + rules.horizon_seconds(model),
            x,
            y_pred,
            holdout,  # type: ignore[arg-type]
        )

    def next_due(self) -> float | None:
        """The earliest due time of a pending prediction or held label (None: nothing waits)."""
        dues = [p.due_ts for p in self.pending.values()] + [due for due, _ in self.held]
        return min(dues, default=None)
