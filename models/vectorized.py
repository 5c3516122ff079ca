"""Scores of a whole batch of model inputs at once, equal to River's per-row ``score``.

The linear models (``models.registry.build_model(task, "linear")``) are read into a
``LinearSnapshot`` each: the scaler's running means and inverse standard deviations, the clip,
the weights and the intercept as arrays in input order. ``SnapshotScorer`` stacks the snapshots
of all linear models and scores n rows against all of them with one broadcasted computation: in
batches of hundreds, well under a microsecond per row for all models, against tens of
microseconds per row for River's calls. Any other model (the tree and forest kinds) is still
scored by River, row by row. ``BatchScorer`` keeps a ``SnapshotScorer`` of live River models
up to date; a snapshot also travels without its River object (``to_dict``/``from_dict``, the
learner's published model snapshots), and ``contributions`` explains a score from it alone.

Results equal ``models.scoring.score`` to about 1e-15 (the order of float operations differs
from River's: multiplication by an inverse standard deviation instead of a division, numpy's
summation order and ``exp``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from river import compose, linear_model, optim, preprocessing

# Re-exported: batch inputs were built here before they had their own module.
from models.batch_inputs import input_rows as input_rows
from models.registry import (
    MAX_LOG_REVENUE,
    SCALED_LIMIT,
    TASKS,
    clip_scaled,
    expm1_revenue,
    log1p_revenue,
)
from models.scoring import score

Output = Literal["logistic", "expm1_revenue", "regression"]
_OUTPUTS: tuple[str, ...] = ("logistic", "expm1_revenue", "regression")
_ARRAYS = ("means", "inv_std", "weights")
# River's utils.math.sigmoid returns exactly 0 below -30 and 1 above +30.
_SIGMOID_LIMIT = 30.0
_NO_VERSION = object()


@dataclass(frozen=True, slots=True, eq=False)
class LinearSnapshot:
    """What a linear River model computes, as arrays over ``input_names`` (read-only).

    The model's score of x is ``output(clip((x - means) * inv_std, low, high) @ weights +
    intercept)``, where ``output`` is River's sigmoid for ``"logistic"``, ``expm1_revenue`` for
    ``"expm1_revenue"`` (the clv target transform) and the identity for ``"regression"``. An
    input whose variance River's scaler holds as 0 (constant so far, or never seen) has
    ``inv_std`` 0 and ``means`` 0, so it scales to 0 as in River; an input the linear model has
    never seen has weight 0. A model without a scaler has means 0, ``inv_std`` 1 and no clip.
    """

    means: np.ndarray
    inv_std: np.ndarray
    low: float
    high: float
    weights: np.ndarray
    intercept: float
    output: Output

    @classmethod
    def from_model(cls, model: Any, task: str, input_names: Sequence[str]) -> LinearSnapshot | None:
        """The snapshot of ``model``'s current state, or None if it is not a linear model.

        Linear means ``[StandardScaler | FuncTransformer(clip_scaled)... |] LogisticRegression``
        for ``"classification"`` and the same with ``LinearRegression`` for ``"regression"``,
        optionally inside ``TargetTransformRegressor(func=log1p_revenue,
        inverse_func=expm1_revenue)``. Anything else (trees, forests, other transforms, losses or
        scaler options, a model that does not fit its task) gives None. Reading the model does
        not change it. Raises ``ValueError`` for an unknown task.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        parts = _linear_parts(model, task)
        if parts is None:
            return None
        scaler, clipped, linear, output = parts
        names = list(input_names)
        d = len(names)
        if scaler is None:
            means, inv_std = np.zeros(d), np.ones(d)
        else:
            variances = [float(scaler.vars.get(name, 0.0)) for name in names]
            if any(v < 0.0 for v in variances):  # River would take a complex square root
                return None
            means = np.array(
                [
                    float(scaler.means.get(name, 0.0)) if v else 0.0
                    for name, v in zip(names, variances, strict=True)
                ]
            )
            inv_std = np.array([1.0 / v**0.5 if v else 0.0 for v in variances])
        weights = linear.weights
        weight_vector = np.array([float(weights.get(name, 0.0)) for name in names])
        for array in (means, inv_std, weight_vector):
            array.setflags(write=False)
        limit = SCALED_LIMIT if clipped else math.inf
        return cls(means, inv_std, -limit, limit, weight_vector, float(linear.intercept), output)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for msgpack: the arrays as little-endian float64 bytes (exact)."""
        return {
            "means": _f64_bytes(self.means),
            "inv_std": _f64_bytes(self.inv_std),
            "weights": _f64_bytes(self.weights),
            "low": float(self.low),
            "high": float(self.high),
            "intercept": float(self.intercept),
            "output": self.output,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearSnapshot:
        """Inverse of ``to_dict``; raises ``ValueError`` for arrays of unequal length or an
        unknown output."""
        arrays = [np.frombuffer(bytes(data[name]), dtype="<f8").astype(np.float64) for name in _ARRAYS]
        if len({len(array) for array in arrays}) != 1:
            raise ValueError(f"linear snapshot arrays differ in length: {[len(a) for a in arrays]}")
        if data["output"] not in _OUTPUTS:
            raise ValueError(f"unknown linear snapshot output {data['output']!r}")
        for array in arrays:
            array.setflags(write=False)
        means, inv_std, weights = arrays
        low, high, intercept = float(data["low"]), float(data["high"]), float(data["intercept"])
        return cls(means, inv_std, low, high, weights, intercept, data["output"])


def _f64_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f8").tobytes()


def _linear_parts(model: Any, task: str) -> tuple[Any, bool, Any, Output] | None:
    """(scaler or None, clipped, linear model, output) for a supported linear model, else None.

    Exact types, not isinstance: River's metaclass makes a pipeline an "instance" of its last
    step, and a subclass may predict differently.
    """
    output: Output = "logistic" if task == "classification" else "regression"
    if type(model) is compose.TargetTransformRegressor:
        if task != "regression" or model.func is not log1p_revenue or model.inverse_func is not expm1_revenue:
            return None
        model, output = model.regressor, "expm1_revenue"
    steps = list(model.steps.values()) if type(model) is compose.Pipeline else [model]
    *head, linear = steps
    if task == "classification":
        if type(linear) is not linear_model.LogisticRegression or (
            type(linear.loss).mean_func is not optim.losses.BinaryLoss.mean_func
        ):
            return None
    elif type(linear) is not linear_model.LinearRegression or (
        type(linear.loss).mean_func is not optim.losses.RegressionLoss.mean_func
    ):
        return None
    if not head:
        return None, False, linear, output
    scaler, *clips = head
    if (
        type(scaler) is not preprocessing.StandardScaler
        or not scaler.with_std
        or scaler.window_size is not None
        or not all(type(step) is compose.FuncTransformer and step.func is clip_scaled for step in clips)
    ):
        return None
    return scaler, bool(clips), linear, output


class SnapshotScorer:
    """Scores n model inputs against models given as snapshots, all linear models at once.

    ``models`` maps each model name to ``(task, model)``, where ``model`` is a
    ``LinearSnapshot`` (scored with one broadcasted computation for all linear models, no River
    object needed) or any River estimator (scored by River, row by row, in its current state).
    ``score`` equals ``models.scoring.score`` of the River model a snapshot was read from
    within about 1e-15.
    """

    def __init__(self, models: Mapping[str, tuple[str, Any]], input_names: Sequence[str]) -> None:
        """Raises ``ValueError`` for an unknown task or a snapshot of another input length."""
        self.model_names = tuple(models)
        self.input_names = tuple(input_names)
        d = len(self.input_names)
        snapshots: list[LinearSnapshot] = []
        columns: list[int] = []
        self._fallback: list[tuple[int, str, Any]] = []
        for j, (name, (task, model)) in enumerate(models.items()):
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r} of model {name!r}")
            if isinstance(model, LinearSnapshot):
                if len(model.weights) != d:
                    raise ValueError(f"snapshot of {name!r} has {len(model.weights)} inputs, not {d}")
                snapshots.append(model)
                columns.append(j)
            else:
                self._fallback.append((j, task, model))
        self._linear_columns = np.array(columns, dtype=np.intp)
        self._means = np.array([s.means for s in snapshots]).reshape(-1, d)
        self._inv_std = np.array([s.inv_std for s in snapshots]).reshape(-1, d)
        self._weights = np.array([s.weights for s in snapshots]).reshape(-1, d)
        self._low = np.array([s.low for s in snapshots], dtype=np.float64)
        self._high = np.array([s.high for s in snapshots], dtype=np.float64)
        self._intercepts = np.array([s.intercept for s in snapshots], dtype=np.float64)
        self._logistic = np.array([s.output == "logistic" for s in snapshots], dtype=bool)
        self._revenue = np.array([s.output == "expm1_revenue" for s in snapshots], dtype=bool)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Scores of shape (n, len(model_names)): column j is ``model_names[j]``'s score.

        ``X`` is (n, len(input_names)) in ``input_names`` order, e.g. from ``input_rows``.
        Raises ``ValueError`` for an ``X`` of another shape or with a NaN or infinity
        (``to_model_input`` never makes those).
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.input_names):
            raise ValueError(f"X must have shape (n, {len(self.input_names)}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X has NaN or infinite values")
        result = np.empty((X.shape[0], len(self.model_names)))
        if len(self._linear_columns):
            result[:, self._linear_columns] = self._linear_scores(X).T
        if self._fallback:
            rows = [dict(zip(self.input_names, row, strict=True)) for row in X.tolist()]
            for j, task, model in self._fallback:
                result[:, j] = [score(model, task, x) for x in rows]
        return result

    def _linear_scores(self, X: np.ndarray) -> np.ndarray:
        """(linear models, n) scores: scale, clip, dot, then each model's output function."""
        # Python floats overflow to inf silently, and River's clip then makes it the limit.
        with np.errstate(over="ignore"):
            scaled = X[np.newaxis, :, :] - self._means[:, np.newaxis, :]
            scaled *= self._inv_std[:, np.newaxis, :]
        bounds = self._low[:, np.newaxis, np.newaxis], self._high[:, np.newaxis, np.newaxis]
        np.clip(scaled, *bounds, out=scaled)
        raw = np.matmul(scaled, self._weights[:, :, np.newaxis])[:, :, 0]
        raw += self._intercepts[:, np.newaxis]
        if self._logistic.any():
            raw[self._logistic] = _probability_of_true(raw[self._logistic])
        if self._revenue.any():
            revenue = np.expm1(np.minimum(raw[self._revenue], MAX_LOG_REVENUE))
            raw[self._revenue] = np.maximum(revenue, 0.0)
        return raw


class BatchScorer:
    """Scores n model inputs against a fixed list of River models, all linear models at once.

    ``score`` returns what ``models.scoring.score(models[name], tasks[name], x)`` returns for
    every row x and model name (within about 1e-15); the linear models are only read. Their
    snapshots are cached and rebuilt only when the caller's ``version`` differs from the
    previous call's or a model object was replaced (a drift reset, a restored checkpoint):
    the caller passes something that changes whenever a model learns, such as the bank's count
    of labels learned. Models that are not linear (the tree and forest kinds) are scored by
    River for every row and always in their current state: measured with the 54 default
    inputs, about 13 us per row for a Hoeffding tree and 90-120 us for a 10-tree forest.
    """

    def __init__(
        self, model_names: Sequence[str], tasks: Mapping[str, str], input_names: Sequence[str]
    ) -> None:
        """``tasks`` maps each of ``model_names`` to "classification" or "regression".

        Raises ``KeyError`` for a model without a task, ``ValueError`` for an unknown task or a
        repeated model name.
        """
        self.model_names = tuple(model_names)
        self.input_names = tuple(input_names)
        if len(set(self.model_names)) != len(self.model_names):
            raise ValueError(f"model names repeated in {list(self.model_names)!r}")
        self.tasks = tuple(tasks[name] for name in self.model_names)
        for name, task in zip(self.model_names, self.tasks, strict=True):
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r} of model {name!r}")
        self._version: object = _NO_VERSION
        self._models: tuple[Any, ...] = ()
        self._scorer: SnapshotScorer | None = None

    def score(self, models: Mapping[str, Any], version: Hashable, X: np.ndarray) -> np.ndarray:
        """Scores of shape (n, len(model_names)): column j is ``model_names[j]``'s score.

        ``X`` is (n, len(input_names)) in ``input_names`` order, e.g. from ``input_rows``.
        Raises ``KeyError`` for a model missing from ``models`` and ``ValueError`` for an ``X``
        of another shape or with a NaN or infinity (``to_model_input`` never makes those).
        """
        current = tuple(models[name] for name in self.model_names)
        replaced = len(current) != len(self._models) or any(
            a is not b for a, b in zip(current, self._models, strict=True)
        )
        if self._scorer is None or replaced or version != self._version:
            snapshots = {}
            for name, model, task in zip(self.model_names, current, self.tasks, strict=True):
                snapshot = LinearSnapshot.from_model(model, task, self.input_names)
                snapshots[name] = (task, model if snapshot is None else snapshot)
            self._scorer = SnapshotScorer(snapshots, self.input_names)
            self._models = current
            self._version = version
        return self._scorer.score(X)


def contributions(
    snapshot: LinearSnapshot, row: Sequence[float], input_names: Sequence[str], k: int = 3
) -> list[tuple[str, float]]:
    """The ``k`` inputs with the largest absolute weight x scaled value in ``row``.

    What ``models.scoring.top_contributions`` answers for the River model ``snapshot`` was read
    from (within about 1e-15 per value), without the River object: log-odds for a classifier,
    the target space (log1p revenue) for clv; sorted by absolute value, largest first, ties by
    name. Raises ``ValueError`` for a negative ``k`` or a row of another length.
    """
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    values = np.asarray(row, dtype=np.float64)
    if values.shape != (len(input_names),) or len(snapshot.weights) != len(input_names):
        raise ValueError(f"row and snapshot must both have {len(input_names)} inputs")
    with np.errstate(over="ignore"):
        scaled = (values - snapshot.means) * snapshot.inv_std
    effect = snapshot.weights * np.clip(scaled, snapshot.low, snapshot.high)
    ranked = sorted(zip(input_names, effect.tolist(), strict=True), key=lambda item: (-abs(item[1]), item[0]))
    return ranked[:k]


def _probability_of_true(logits: np.ndarray) -> np.ndarray:
    """``score`` of River's ``predict_proba_one`` = {False: 1 - p, True: p}, p = sigmoid(logit)."""
    p = 1.0 / (1.0 + np.exp(-np.clip(logits, -_SIGMOID_LIMIT, _SIGMOID_LIMIT)))
    p[logits > _SIGMOID_LIMIT] = 1.0
    p[logits < -_SIGMOID_LIMIT] = 0.0
    # ``score`` divides by the sum of the probabilities, which may differ from 1 in the last bit.
    return np.clip(p / ((1.0 - p) + p), 0.0, 1.0)
