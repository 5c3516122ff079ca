"""Whether a model is ready for the rules, or still warming up: a pure function of a snapshot.

The learner decides it at seal time from what the snapshot holds (the model's
``labels_learned`` and its holdout metrics) and stores it in the snapshot, so every worker,
restart and replay reads the same decision for version k (design invariant 6). A model that is
not ready still scores for the prediction book (it needs labels to ever become ready), but its
score reads as ``None`` to the rules and is left out of change events.

A model is **ready** when

1. it learned at least ``min_labels`` labels (and at least one, whatever the setting), and
2. for a classifier with ``require_auc``: its holdout AUC window holds at least
   ``min_holdout_per_class`` positive and as many negative labels, and the AUC's interval
   ``A +- z * SE`` lies entirely above 0.5 (the model ranks better than chance).

``SE`` is the Hanley & McNeil (1982) standard error of an AUC ``A`` estimated from ``n_p``
positives and ``n_n`` negatives::

    Q1 = A / (2 - A)
    Q2 = 2 A^2 / (1 + A)
    SE^2 = (A (1 - A) + (n_p - 1)(Q1 - A^2) + (n_n - 1)(Q2 - A^2)) / (n_p n_n)

It is a normal approximation that collapses to 0 when ``A`` is 0 or 1, however few labels
there are (one positive ranked first gives A = 1, SE = 0); ``min_holdout_per_class`` keeps it
away from such tiny samples. Regression models (clv) have no AUC: their readiness is by label
count alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ReadinessRules:
    """The thresholds of readiness (the engine derives them from ``SEGFLOW_MODEL_READY_*``)."""

    min_labels: int = 200
    require_auc: bool = True
    auc_z: float = 1.96
    min_holdout_per_class: int = 10

    @property
    def fingerprint(self) -> str:
        """The thresholds as text, part of ``ModelConfig.fingerprint``."""
        return f"ready:{self.min_labels}:{self.require_auc}:{self.auc_z!r}:{self.min_holdout_per_class}"


@dataclass(frozen=True, slots=True)
class Readiness:
    """A model's readiness; ``reason`` says why it is warming up (None when ready)."""

    ready: bool
    reason: str | None = None

    def describe(self) -> str:
        """``"ready"`` or ``"warming up: <reason>"``, as ``explain``, pages and the dashboard show it."""
        return "ready" if self.ready else f"warming up: {self.reason}"


def hanley_mcneil_se(auc: float, positives: int, negatives: int) -> float:
    """The Hanley & McNeil (1982) standard error of ``auc`` (see the module docstring)."""
    if positives < 1 or negatives < 1:
        raise ValueError(f"an AUC needs both classes, got {positives} positives and {negatives} negatives")
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    variance = (
        auc * (1.0 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(0.0, variance))


def auc_interval(auc: float, positives: int, negatives: int, z: float = 1.96) -> tuple[float, float]:
    """``auc +- z * SE`` (Hanley & McNeil), clipped to [0, 1]."""
    half = z * hanley_mcneil_se(auc, positives, negatives)
    return max(0.0, auc - half), min(1.0, auc + half)


def confidence_of(z: float) -> float:
    """The two-sided normal confidence of ``z`` (1.96: 0.95)."""
    return math.erf(z / math.sqrt(2.0))


def readiness(task: str, labels_learned: int, metrics: dict[str, Any], rules: ReadinessRules) -> Readiness:
    """The readiness of one model from its ``labels_learned`` and its evaluation report.

    ``metrics`` is ``ModelEvaluation.report()`` (only its ``holdout`` part is read: the
    ``roc_auc`` and the class counts of its window, ``auc_positives`` and ``auc_negatives``).
    """
    needed = max(1, rules.min_labels)
    if labels_learned < needed:
        return Readiness(False, f"{labels_learned} labels learned < {needed}")
    if task != "classification" or not rules.require_auc:
        return Readiness(True)
    holdout = metrics.get("holdout") or {}
    auc = holdout.get("roc_auc")
    positives, negatives = int(holdout.get("auc_positives") or 0), int(holdout.get("auc_negatives") or 0)
    least = max(1, rules.min_holdout_per_class)
    if auc is None or positives < least or negatives < least:
        return Readiness(
            False,
            f"holdout AUC window has {positives} positive and {negatives} negative labels "
            f"(< {least} of each)",
        )
    low, high = auc_interval(float(auc), positives, negatives, rules.auc_z)
    if low > 0.5:
        return Readiness(True)
    level = f"{confidence_of(rules.auc_z):.0%}"
    where = "contains 0.5" if high >= 0.5 else "is below 0.5"
    return Readiness(False, f"holdout AUC {level} interval {low:.2f}-{high:.2f} {where}")
