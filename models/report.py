"""Model quality over every partition's bank, merged exactly where the metric allows.

Each partition's bank evaluates its own labels. For a report of one model across partitions,
ROC AUC is recomputed from the union of the banks' windows of (score, label) pairs, calibration
error from the summed bins, and log loss, MAE and RMSE as label-weighted combinations of the
per-bank means (RMSE through its mean square): the same numbers one evaluator over all labels
would give, up to each bank's AUC window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from models.evaluation import CalibrationError, ModelEvaluation, WindowedAUC

GROUPS = ("prequential", "holdout")


def _weighted(pairs: list[tuple[int, float | None]]) -> float | None:
    total = sum(n for n, value in pairs if value is not None)
    if not total:
        return None
    return sum(n * value for n, value in pairs if value is not None) / total


def _merge_group(task: str, parts: list[Any]) -> dict[str, Any]:
    n = sum(part.n for part in parts)
    if task == "classification":
        auc = WindowedAUC(window=sum(len(part.roc_auc._pairs) for part in parts) or 1)
        ece = CalibrationError(parts[0].ece.n_bins) if parts else CalibrationError()
        for part in parts:
            for p_true, y_true in part.roc_auc._pairs:
                auc.update(y_true, p_true)
            for i in range(ece.n_bins):
                ece.counts[i] += part.ece.counts[i]
                ece.prob_sums[i] += part.ece.prob_sums[i]
                ece.positives[i] += part.ece.positives[i]
        positives = sum(part.positives for part in parts)
        return {
            "n": n,
            "positives": positives,
            "roc_auc": auc.get() if 0 < positives < n else None,
            "log_loss": _weighted([(p.n, float(p.log_loss.get()) if p.n else None) for p in parts]),
            "ece": ece.get(),
        }
    mean_square = _weighted([(p.n, float(p.rmse.get()) ** 2 if p.n else None) for p in parts])
    return {
        "n": n,
        "mae": _weighted([(p.n, float(p.mae.get()) if p.n else None) for p in parts]),
        "rmse": None if mean_square is None else math.sqrt(mean_square),
    }


def merged_reports(evaluations: Iterable[dict[str, ModelEvaluation]]) -> dict[str, dict[str, Any]]:
    """Per model name, the report of all given banks' evaluations together."""
    by_model: dict[str, list[ModelEvaluation]] = {}
    for bank in evaluations:
        for name, evaluation in bank.items():
            by_model.setdefault(name, []).append(evaluation)
    out: dict[str, dict[str, Any]] = {}
    for name, parts in by_model.items():
        task = parts[0].task
        report: dict[str, Any] = {"name": name, "task": task, "partitions": len(parts)}
        for group in GROUPS:
            report[group] = _merge_group(task, [getattr(part, group) for part in parts])
        report["drift"] = {
            "response": parts[0].on_drift,
            "detections": sum(part.drift_detections for part in parts),
            "last_detection_ts": max((p.last_drift_ts for p in parts if p.last_drift_ts), default=None),
        }
        out[name] = report
    return out


def prometheus_lines(reports: dict[str, dict[str, Any]]) -> list[str]:
    """Exposition lines of model quality (metrics without data yet are left out)."""
    lines = [
        "# HELP segflow_model_labels Labels evaluated per model and group (this worker's partitions).",
        "# TYPE segflow_model_labels gauge",
        "# HELP segflow_model_metric Model quality per model, group and metric.",
        "# TYPE segflow_model_metric gauge",
        "# HELP segflow_model_drift_detections Drift detections per model.",
        "# TYPE segflow_model_drift_detections gauge",
    ]
    for name, report in reports.items():
        for group in GROUPS:
            row = report[group]
            lines.append(f'segflow_model_labels{{model="{name}",group="{group}"}} {row["n"]}')
            for metric in ("roc_auc", "log_loss", "ece", "mae", "rmse"):
                value = row.get(metric)
                if value is not None and math.isfinite(value):
                    labels = f'model="{name}",group="{group}",metric="{metric}"'
                    lines.append(f"segflow_model_metric{{{labels}}} {value:.6f}")
        lines.append(f'segflow_model_drift_detections{{model="{name}"}} {report["drift"]["detections"]}')
    return lines
