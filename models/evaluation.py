"""How well each model predicts, measured online, and when its error stream drifts.

Two metric sets per model:

* **prequential**: labels of customers the model learns from, each scored *before* it is learnt
  (predict-then-learn), so every label is still an out-of-sample test;
* **holdout**: labels of customers the model never learns from (``is_holdout``), an unbiased
  check that the prequential numbers are not flattered by, e.g., label leakage through features.

Drift: an ADWIN detector watches the prequential error stream (|y - p| for a classifier, the
absolute error for a regressor). Everything here is pure bookkeeping: no clock, no I/O; the caller
passes event times and acts on ``drift_detected``.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from typing import Any, Literal

from river import drift, metrics

DriftResponse = Literal["reset", "alert"]
DRIFT_RESPONSES: tuple[str, ...] = ("reset", "alert")
HOLDOUT_SALT = "segflow-holdout"
# River's ROCAUC integrates over fixed thresholds, which is far off when probabilities are
# small (churn: 0.872 reported where the exact value was 0.886), and its RollingROCAUC does not
# count ties as half; WindowedAUC is exact over the most recent AUC_WINDOW labels.
AUC_WINDOW = 10_000


def is_holdout(customer_id: str, fraction: float = 0.1, salt: str = HOLDOUT_SALT) -> bool:
    """Whether ``customer_id`` belongs to the holdout: stable across runs, processes and hosts.

    The first 8 bytes of blake2b(salt + id) read as a uniform number in [0, 1) are compared with
    ``fraction``; Python's ``hash()`` is salted per process and would reshuffle the holdout.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"holdout fraction must be within [0, 1], got {fraction!r}")
    digest = hashlib.blake2b((salt + customer_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


class WindowedAUC:
    """Exact ROC AUC (Mann-Whitney, ties count half) over the most recent ``window`` labels."""

    def __init__(self, window: int = AUC_WINDOW) -> None:
        self._pairs: deque[tuple[float, bool]] = deque(maxlen=window)

    def update(self, y_true: bool, p_true: float) -> None:
        """Add one label and the probability that was predicted for it."""
        self._pairs.append((float(p_true), bool(y_true)))

    def counts(self) -> tuple[int, int]:
        """The positive and negative labels in the window (the sample the AUC is computed on)."""
        positives = sum(1 for _, y in self._pairs if y)
        return positives, len(self._pairs) - positives

    def get(self) -> float | None:
        """The AUC, or None until both classes are in the window."""
        ranked = sorted(self._pairs)
        positives = sum(1 for _, y in ranked if y)
        negatives = len(ranked) - positives
        if positives == 0 or negatives == 0:
            return None
        rank_sum, index = 0.0, 0
        while index < len(ranked):
            end = index
            while end < len(ranked) and ranked[end][0] == ranked[index][0]:
                end += 1
            average_rank = (index + 1 + end) / 2  # ranks index+1..end share their mean
            rank_sum += average_rank * sum(1 for _, y in ranked[index:end] if y)
            index = end
        return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


class CalibrationError:
    """Expected calibration error over equal-width probability bins.

    ECE = sum over bins of |bin|/n * |mean predicted probability - positive rate|, with
    ``n_bins`` bins [0, 1/n_bins), ..., [1 - 1/n_bins, 1] (1.0 falls in the last bin).
    """

    def __init__(self, n_bins: int = 10) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {n_bins}")
        self.n_bins = n_bins
        self.counts = [0] * n_bins
        self.prob_sums = [0.0] * n_bins
        self.positives = [0] * n_bins

    def update(self, y_true: bool, p_true: float) -> None:
        """Add one label and the probability that was predicted for it."""
        index = min(int(p_true * self.n_bins), self.n_bins - 1)
        self.counts[index] += 1
        self.prob_sums[index] += p_true
        self.positives[index] += bool(y_true)

    def get(self) -> float | None:
        """The ECE, or None before the first update."""
        n = sum(self.counts)
        if n == 0:
            return None
        return sum(
            abs(prob_sum - positives) / n  # = count/n * |mean prob - positive rate|
            for count, prob_sum, positives in zip(self.counts, self.prob_sums, self.positives, strict=True)
            if count
        )


class _ClassificationMetrics:
    def __init__(self, n_bins: int) -> None:
        self.n = 0
        self.positives = 0
        self.roc_auc = WindowedAUC()
        self.log_loss = metrics.LogLoss()
        self.ece = CalibrationError(n_bins)

    def update(self, y_true: bool, y_pred: float) -> None:
        self.n += 1
        self.positives += y_true
        self.roc_auc.update(y_true, y_pred)
        self.log_loss.update(y_true, y_pred)
        self.ece.update(y_true, y_pred)

    def report(self) -> dict[str, Any]:
        both_classes = 0 < self.positives < self.n
        window_positives, window_negatives = self.roc_auc.counts()
        return {
            "n": self.n,
            "positives": self.positives,
            "roc_auc": self.roc_auc.get() if both_classes else None,
            "auc_positives": window_positives,
            "auc_negatives": window_negatives,
            "log_loss": float(self.log_loss.get()) if self.n else None,
            "ece": self.ece.get(),
        }


class _RegressionMetrics:
    def __init__(self) -> None:
        self.n = 0
        self.mae = metrics.MAE()
        self.rmse = metrics.RMSE()

    def update(self, y_true: float, y_pred: float) -> None:
        self.n += 1
        self.mae.update(y_true, y_pred)
        self.rmse.update(y_true, y_pred)

    def report(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mae": float(self.mae.get()) if self.n else None,
            "rmse": float(self.rmse.get()) if self.n else None,
        }


class ModelEvaluation:
    """Prequential and holdout metrics of one model plus drift detection on its error stream.

    Classification: ROC AUC (with the positive and negative counts of its window,
    ``auc_positives`` and ``auc_negatives``), log loss and ECE (10 bins) of the probability of
    ``True``;
    regression: MAE and RMSE. After each prequential ``update``, ``drift_detected`` says whether
    ADWIN flagged a change in the error stream on that very label. With ``on_drift="reset"`` the
    caller is expected to replace the model by a fresh one when ``reset_due`` is true; with
    ``"alert"`` it only reports. The evaluation itself never touches the model.
    """

    def __init__(
        self,
        name: str,
        task: str,
        on_drift: str = "alert",
        n_bins: int = 10,
        adwin_delta: float = 0.002,
    ) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"unknown task {task!r}; choose one of classification, regression")
        if on_drift not in DRIFT_RESPONSES:
            raise ValueError(
                f"unknown drift response {on_drift!r}; choose one of {', '.join(DRIFT_RESPONSES)}"
            )
        self.name = name
        self.task = task
        self.on_drift = on_drift
        self.prequential: _ClassificationMetrics | _RegressionMetrics
        self.holdout: _ClassificationMetrics | _RegressionMetrics
        if task == "classification":
            self.prequential, self.holdout = _ClassificationMetrics(n_bins), _ClassificationMetrics(n_bins)
        else:
            self.prequential, self.holdout = _RegressionMetrics(), _RegressionMetrics()
        self.detector = drift.ADWIN(delta=adwin_delta)
        self.drift_detected = False
        self.drift_detections = 0
        self.last_drift_ts: float | None = None

    @property
    def reset_due(self) -> bool:
        """True when the last update detected drift and the configured response is "reset"."""
        return self.drift_detected and self.on_drift == "reset"

    def update(self, y_true: bool | float, y_pred: float, holdout: bool, ts: float | None = None) -> bool:
        """Record one resolved label and the score predicted for it before it was known.

        ``y_pred`` is the probability of ``True`` (classification) or the predicted value;
        ``holdout`` says which metric set the customer belongs to; ``ts`` (event time) is kept as
        the last detection time when drift is detected. Holdout labels never feed the drift
        detector and leave ``drift_detected`` False. Returns ``drift_detected``.
        """
        y_pred = float(y_pred)
        if not math.isfinite(y_pred):
            raise ValueError(f"{self.name}: prediction is not finite: {y_pred!r}")
        if self.task == "classification":
            if not 0.0 <= y_pred <= 1.0:
                raise ValueError(f"{self.name}: probability out of [0, 1]: {y_pred!r}")
            label: bool | float = bool(y_true)
            error = abs(float(label) - y_pred)
        else:
            label = float(y_true)
            if not math.isfinite(label):
                raise ValueError(f"{self.name}: label is not finite: {label!r}")
            error = abs(label - y_pred)
        self.drift_detected = False
        if holdout:
            self.holdout.update(label, y_pred)  # type: ignore[arg-type]
            return False
        self.prequential.update(label, y_pred)  # type: ignore[arg-type]
        self.detector.update(error)
        if self.detector.drift_detected:
            self.drift_detected = True
            self.drift_detections += 1
            self.last_drift_ts = ts
        return self.drift_detected

    def report(self) -> dict[str, Any]:
        """Plain numbers (None where a metric has no data yet), ready for JSON."""
        return {
            "name": self.name,
            "task": self.task,
            "prequential": self.prequential.report(),
            "holdout": self.holdout.report(),
            "drift": {
                "response": self.on_drift,
                "detections": self.drift_detections,
                "last_detection_ts": self.last_drift_ts,
                "detected": self.drift_detected,
            },
        }
