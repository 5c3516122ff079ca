"""The yardsticks an online model must beat: the strongest simple rule, and hindsight.

``segflow evaluate`` reports every model's holdout metric beside

* **the strongest simple rule**: one model input used on its own as the score (classifiers: the
  input and direction with the best ROC AUC; regressors: a least-squares line on one input with
  the lowest squared error), *chosen on the training (non-holdout) labels* and then measured on
  the holdout labels, so the choice is not tuned on what it is judged on. Days since the last
  activity, the rule a marketer tries first for churn, is one of the candidates; so is recency
  for propensities, and past revenue for CLV;
* **the hindsight reference**: scikit-learn fitted on every training label at once
  (``models.hindsight``; classifiers only).

Each comes from the same matured labels: their stored inputs, outcomes and the online model's
own predictions made before the label existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.stats import rankdata

from models.hindsight import LabelRow


@dataclass(frozen=True, slots=True)
class SimpleRule:
    """The strongest one-input rule of a model and how it and the online model do on the holdout."""

    model: str
    task: str
    rule: str | None
    """``"<input> (higher: positive)"`` / ``"(lower: positive)"``, or ``"<a> + <b> x <input>"``."""
    train_labels: int
    holdout_labels: int
    rule_metric: float | None
    """Holdout ROC AUC (classifier) or MAE (regressor) of the rule."""
    online_metric: float | None
    """The same metric of the online model's predictions on the same labels."""

    @property
    def metric(self) -> str:
        """The metric's name."""
        return "roc_auc" if self.task == "classification" else "mae"

    @property
    def online_wins(self) -> bool | None:
        """Whether the online model does better than the rule (None: not measurable)."""
        if self.rule_metric is None or self.online_metric is None:
            return None
        if self.task == "classification":
            return self.online_metric > self.rule_metric
        return self.online_metric < self.rule_metric


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC with ties counted half (Mann-Whitney); None unless both classes occur."""
    positives = truth > 0.5
    n_pos = int(positives.sum())
    n_neg = len(truth) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks: tied scores count half
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def strongest_rule(model: str, task: str, rows: list[LabelRow], names: list[str]) -> SimpleRule:
    """The best one-input rule on the training labels, measured on the holdout labels."""
    train = [r for r in rows if not r.holdout]
    test = [r for r in rows if r.holdout]
    if not train or not test or not names:
        return SimpleRule(model, task, None, len(train), len(test), None, None)
    x_train = np.array([[r.x[n] for n in names] for r in train], dtype=np.float64)
    x_test = np.array([[r.x[n] for n in names] for r in test], dtype=np.float64)
    y_train = np.array([float(r.y_true) for r in train])
    y_test = np.array([float(r.y_true) for r in test])
    online = np.array([r.y_pred for r in test], dtype=np.float64)
    split = _Split(x_train, y_train, x_test, y_test, online)
    if task == "classification":
        return _classification_rule(model, names, split)
    return _regression_rule(model, names, split)


class _Split(NamedTuple):
    """Inputs and outcomes of the training and holdout labels, and the online predictions."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    online: np.ndarray


def _classification_rule(model: str, names: list[str], split: _Split) -> SimpleRule:
    x_train, y_train, x_test, y_test, online = split
    best: tuple[float, int, float] | None = None  # (train AUC, column, sign)
    for column in range(len(names)):
        auc = roc_auc(y_train, x_train[:, column])
        if auc is None:
            break
        for value, sign in ((auc, 1.0), (1.0 - auc, -1.0)):
            if best is None or value > best[0]:
                best = (value, column, sign)
    if best is None:
        online_auc = roc_auc(y_test, online)
        return SimpleRule(model, "classification", None, len(y_train), len(y_test), None, online_auc)
    _, column, sign = best
    direction = "higher" if sign > 0 else "lower"
    return SimpleRule(
        model,
        "classification",
        f"{names[column]} ({direction}: positive)",
        len(y_train),
        len(y_test),
        roc_auc(y_test, sign * x_test[:, column]),
        roc_auc(y_test, online),
    )


def _regression_rule(model: str, names: list[str], split: _Split) -> SimpleRule:
    x_train, y_train, x_test, y_test, online = split
    best: tuple[float, int, float, float] | None = None  # (train SSE, column, intercept, slope)
    for column in range(len(names)):
        x = x_train[:, column]
        spread = x - x.mean()
        denominator = float(spread @ spread)
        slope = 0.0 if denominator == 0 else float(spread @ (y_train - y_train.mean())) / denominator
        intercept = float(y_train.mean() - slope * x.mean())
        residual = y_train - (intercept + slope * x)
        sse = float(residual @ residual)
        if best is None or sse < best[0]:
            best = (sse, column, intercept, slope)
    assert best is not None
    _, column, intercept, slope = best
    predicted = intercept + slope * x_test[:, column]
    return SimpleRule(
        model,
        "regression",
        f"{intercept:.4g} + {slope:.4g} x {names[column]}",
        len(y_train),
        len(y_test),
        float(np.abs(predicted - y_test).mean()),
        float(np.abs(online - y_test).mean()),
    )
