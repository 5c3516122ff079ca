"""Delayed labels in event time: a prediction waits, pending, until its label has matured.

Each model keeps at most one pending prediction per customer: the features it saw, the score it
gave, and the event time it was made. The label then resolves in one of two ways:

========================  ==================================  ====================================
model                     resolved by an event                resolved by time (watermark >= due)
========================  ==================================  ====================================
churn (days D)            login or purchase after the         positive: inactive for D days
                          prediction, before the due time:
                          negative (active again)
clv (days H)              purchases in (made, due] add to     the revenue realised in (made, due]
                          the realised revenue
propensity_<p> (days H)   a purchase of p in (made, due]:     negative: no purchase of p in time
                          positive
========================  ==================================  ====================================

"Time" is the watermark: the newest event time seen minus the allowed lateness, so an event
that may still arrive late within the lateness is never missed by a label that resolves by time.
Nothing here looks at the wall clock or at events after the moment of resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from features.event import SECONDS_PER_DAY, Event

ACTIVITY_TYPES = frozenset({"login", "purchase"})
PROPENSITY_PREFIX = "propensity_"


@dataclass(slots=True)
class PendingPrediction:
    """A prediction waiting for its label."""

    model: str
    made_ts: float
    due_ts: float
    x: dict[str, float] | bytes  # bytes: the stored float32 vector (models.pending)
    y_pred: float
    holdout: bool
    realised: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping for storage."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingPrediction:
        """Inverse of ``to_dict``."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ResolvedLabel:
    """A matured label with the prediction it judges and the features it teaches."""

    model: str
    x: dict[str, float] | bytes
    y_true: float
    y_pred: float
    made_ts: float
    resolved_ts: float
    holdout: bool


@dataclass(frozen=True, slots=True)
class LabelRules:
    """Horizons of the label definitions, in days of event time."""

    churn_days: float = 30.0
    clv_days: float = 90.0
    propensity_days: float = 30.0

    def horizon_seconds(self, model: str) -> float:
        """How long a prediction of ``model`` waits at most."""
        if model == "churn":
            days = self.churn_days
        elif model == "clv":
            days = self.clv_days
        elif model.startswith(PROPENSITY_PREFIX):
            days = self.propensity_days
        else:
            raise ValueError(f"no label rule for model {model!r}")
        return days * SECONDS_PER_DAY

    def start(
        self, model: str, made_ts: float, x: dict[str, float], y_pred: float, holdout: bool
    ) -> PendingPrediction:
        """A new pending prediction made at event time ``made_ts``."""
        return PendingPrediction(
            model, made_ts, made_ts + self.horizon_seconds(model), dict(x), y_pred, holdout
        )

    def on_event(self, pending: PendingPrediction, event: Event) -> ResolvedLabel | None:
        """Let ``event`` (of the same customer) count towards ``pending``; the label if it resolved."""
        if not pending.made_ts < event.ts <= pending.due_ts:
            return None
        if pending.model == "churn":
            if event.type in ACTIVITY_TYPES and event.ts < pending.due_ts:
                return _resolved(pending, 0.0, event.ts)
            return None
        if event.type != "purchase":
            return None
        if pending.model == "clv":
            pending.realised += float(event.attrs["amount"])
            return None
        if (
            pending.model.startswith(PROPENSITY_PREFIX)
            and event.attrs.get("product") == pending.model[len(PROPENSITY_PREFIX) :]
        ):
            return _resolved(pending, 1.0, event.ts)
        return None

    def on_time(self, pending: PendingPrediction, watermark: float) -> ResolvedLabel | None:
        """The label if the watermark has passed the due time (nothing can change it any more)."""
        if watermark < pending.due_ts:
            return None
        if pending.model == "churn":
            return _resolved(pending, 1.0, pending.due_ts)
        if pending.model == "clv":
            return _resolved(pending, pending.realised, pending.due_ts)
        return _resolved(pending, 0.0, pending.due_ts)


def _resolved(pending: PendingPrediction, y_true: float, at: float) -> ResolvedLabel:
    return ResolvedLabel(
        pending.model, pending.x, y_true, pending.y_pred, pending.made_ts, at, pending.holdout
    )
