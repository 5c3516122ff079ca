"""What the population's models are built from: their specs, inputs, kind and label rules."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from models.inputs import INPUT_SCALE_VERSION
from models.labels import LabelRules
from models.readiness import ReadinessRules
from models.registry import ModelSpec


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """What the models of a deployment are built from (the engine derives it from settings)."""

    specs: tuple[ModelSpec, ...]
    input_names: tuple[str, ...]
    kind: str = "linear"
    rules: LabelRules = field(default_factory=LabelRules)
    holdout_fraction: float = 0.1
    prediction_interval_seconds: float = 7 * 86_400.0
    drift_response: str = "alert"
    balance_classes: bool = False  # measured: weighting positives hurt AUC and calibration (models.learning)
    readiness: ReadinessRules = field(default_factory=ReadinessRules)
    """When a model's score may reach the rules (decided by the learner, stored in snapshots)."""

    @property
    def fingerprint(self) -> str:
        """Changes whenever a checkpoint made with another config could not be reused, and when
        the readiness thresholds differ (snapshots carry the learner's readiness decisions)."""
        parts = [
            self.kind,
            f"scale:{INPUT_SCALE_VERSION}",
            *self.input_names,
            *(f"{s.name}:{s.task}:{s.horizon_days}" for s in self.specs),
            self.readiness.fingerprint,
        ]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]
