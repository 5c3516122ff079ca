"""Model quality reports (the learner's, ``ModelEvaluation.report``) as Prometheus lines."""

from __future__ import annotations

import math
from typing import Any

GROUPS = ("prequential", "holdout")


def prometheus_lines(
    reports: dict[str, dict[str, Any]], readiness: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    """Exposition lines of model quality (metrics without data yet are left out) and, given the
    learner report's ``readiness``, whether each model is ready (1) or warming up (0)."""
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
    if readiness:
        lines += [
            "# HELP segflow_model_ready 1 when the model's score reaches the rules, 0 while warming up.",
            "# TYPE segflow_model_ready gauge",
        ]
        lines += [f'segflow_model_ready{{model="{n}"}} {int(bool(r["ready"]))}' for n, r in readiness.items()]
    return lines
