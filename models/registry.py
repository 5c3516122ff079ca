"""Which models segflow runs and how each River estimator is built.

``model_specs`` lists the predictions (churn, customer lifetime value, one propensity per
configured product) with their task and label horizon; ``build_model`` makes a fresh, untrained
River estimator for a task and a model kind. Every estimator is deterministic: the forest uses a
fixed seed, the others draw no random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from river import compose, forest, linear_model, optim, preprocessing, tree

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
MODEL_KINDS: tuple[str, ...] = ("linear", "tree", "forest")
DEFAULT_KIND = "linear"
FOREST_SEED = 42
FOREST_MODELS = 10
# Measured on replays of `segflow evaluate`'s stream (5000 customers, 240 days, 90 warmup days,
# seeds 1-3; labels learned at their prediction's due time, positives unweighted), churn holdout
# ROC AUC against the hindsight reference's 0.935-0.940: SGD 0.005 gave 0.921-0.923, 0.002
# 0.917-0.923, 0.01 0.918-0.923, 0.02 0.909-0.918; AdaGrad(0.1) 0.918-0.924 and Adam(0.001)
# 0.905-0.911 were no better; l2 (1e-4, 1e-3) changed nothing. The intercept learns with its own
# rate: churn positives are rare (about 1 label in 60), so it must reach about -4 quickly.
# River's default 0.01 gave 0.912-0.916, 0.05-0.2 gave 0.919-0.923 (the previous SGD 0.02 with
# intercept 0.01 gave 0.898-0.907). With the propensity models (2000 customers, seed 1) these
# rates, learning at due time and unweighted positives together took holdout ROC AUC from
# 0.72-0.76 to 0.78-0.83 (mortgage 0.53 to 0.76) and log loss from 0.68-0.92 to 0.49-0.57.
CLASSIFIER_LEARNING_RATE = 0.005
CLASSIFIER_INTERCEPT_LEARNING_RATE = 0.05
REGRESSOR_LEARNING_RATE = 0.005
# log1p(revenue) above this is beyond any plausible customer value; clipping keeps expm1 finite.
MAX_LOG_REVENUE = 20.0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One prediction segflow maintains.

    ``horizon_days`` is how far ahead the label looks: churn is "no login or purchase in the next
    ``horizon_days``", clv is "revenue (major units) in the next ``horizon_days``", a propensity
    is "buys the product within ``horizon_days``".
    """

    name: str
    task: Task
    horizon_days: float
    description: str


def model_specs(
    products: tuple[str, ...] | list[str],
    churn_days: float = 30.0,
    clv_days: float = 90.0,
    propensity_days: float = 30.0,
) -> list[ModelSpec]:
    """The models for ``products``: churn, clv, then ``propensity_<product>`` in product order.

    Raises ``ValueError`` for a non-positive horizon or an empty or repeated product name.
    """
    for label, days in (("churn", churn_days), ("clv", clv_days), ("propensity", propensity_days)):
        if not days > 0:
            raise ValueError(f"{label} horizon must be positive days, got {days!r}")
    if len(set(products)) != len(products) or not all(products):
        raise ValueError(f"product names must be non-empty and unique, got {list(products)!r}")
    specs = [
        ModelSpec(
            "churn",
            "classification",
            float(churn_days),
            f"inactive (no login or purchase) for the next {churn_days:g} days",
        ),
        ModelSpec("clv", "regression", float(clv_days), f"revenue over the next {clv_days:g} days"),
    ]
    specs += [
        ModelSpec(
            f"propensity_{product}",
            "classification",
            float(propensity_days),
            f"purchases {product} within the next {propensity_days:g} days",
        )
        for product in products
    ]
    return specs


SCALED_LIMIT = 5.0


def clip_scaled(x: dict[str, float]) -> dict[str, float]:
    """Standardised values limited to +-SCALED_LIMIT.

    A rare indicator (say, holding insurance) has a tiny running variance, so the one customer
    who has it would be scaled to thousands of standard deviations and swamp a linear model.
    """
    high, low = SCALED_LIMIT, -SCALED_LIMIT
    # Comparisons, not min/max calls: this runs on every prediction and every label learned.
    return {k: high if v > high else low if v < low else v for k, v in x.items()}


def scaled() -> compose.Pipeline:
    """Running standardisation followed by ``clip_scaled`` (picklable: named functions only)."""
    return compose.Pipeline(preprocessing.StandardScaler(), compose.FuncTransformer(clip_scaled))


def log1p_revenue(y: float) -> float:
    """Training target of the linear clv model: log1p of revenue, negative revenue counted as 0."""
    return float(np.log1p(max(float(y), 0.0)))


def expm1_revenue(y: float) -> float:
    """Inverse of ``log1p_revenue``, clipped at 0 so a prediction is never negative revenue."""
    return max(float(np.expm1(min(y, MAX_LOG_REVENUE))), 0.0)


def build_model(task: str, kind: str = DEFAULT_KIND) -> Any:
    """A fresh River estimator for ``task`` ("classification" or "regression").

    ``kind``:

    * ``"linear"`` (default): ``StandardScaler | LogisticRegression(SGD(0.005), intercept_lr=0.05)``
      for classification;
      for regression ``StandardScaler | LinearRegression`` inside a ``TargetTransformRegressor``
      that learns log1p(revenue) and predicts expm1, clipped at 0 (revenue is heavy-tailed).
    * ``"tree"``: ``StandardScaler | HoeffdingTreeClassifier`` / ``HoeffdingTreeRegressor``.
    * ``"forest"``: adaptive random forest (``ARFClassifier`` / ``ARFRegressor``), 10 trees, fixed seed.

    Raises ``ValueError`` for an unknown task or kind.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    classify = task == "classification"
    if kind == "linear":
        if classify:
            return scaled() | linear_model.LogisticRegression(
                optimizer=optim.SGD(CLASSIFIER_LEARNING_RATE), intercept_lr=CLASSIFIER_INTERCEPT_LEARNING_RATE
            )
        return compose.TargetTransformRegressor(
            regressor=scaled()  # type: ignore[arg-type]  # river: a pipeline ending in a regressor is one
            # Clipped gradients: early on, the scaler's variances are tiny and one large scaled
            # value would otherwise throw the weights far off (seen as CLV errors of 1e8).
            | linear_model.LinearRegression(optimizer=optim.SGD(REGRESSOR_LEARNING_RATE), clip_gradient=1.0),
            func=log1p_revenue,
            inverse_func=expm1_revenue,
        )
    if kind == "tree":
        learner = tree.HoeffdingTreeClassifier() if classify else tree.HoeffdingTreeRegressor()
        return scaled() | learner
    if classify:
        return forest.ARFClassifier(n_models=FOREST_MODELS, seed=FOREST_SEED)
    return forest.ARFRegressor(n_models=FOREST_MODELS, seed=FOREST_SEED)
