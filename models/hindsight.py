"""A hindsight reference for the online churn model: scikit-learn trained on every label at once.

``segflow evaluate`` compares the online model's holdout ROC AUC (read from its own predictions,
made before each label existed) with a logistic regression fitted on all non-holdout labels with
hindsight, on the same inputs and holdout labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(slots=True)
class LabelRow:
    """One matured label, kept for the hindsight reference."""

    x: dict[str, float]
    y_true: float
    y_pred: float
    holdout: bool
    customer_id: str = ""


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
