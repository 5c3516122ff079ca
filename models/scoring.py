"""Scores and explanations of one customer's model input.

``score`` turns any River estimator into one number: the probability of the positive label for a
classifier, the predicted value for a regressor. ``top_contributions`` says which inputs moved
that number the most. Both only call prediction methods, so they neither learn nor draw random
numbers: the same model and input always give the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from river import base, compose, linear_model, preprocessing

UNTRAINED_PROBABILITY = 0.5
_LINEAR = (linear_model.LogisticRegression, linear_model.LinearRegression)


def score(model: Any, task: str, x: Mapping[str, float]) -> float:
    """The model's prediction for ``x``.

    * ``"classification"``: the probability of the label ``True``. A classifier with no opinion
      yet (River's untrained trees and forests return ``{}``) scores ``0.5``, the uninformative
      prior; an untrained logistic regression already says 0.5. Probabilities are normalised by
      their sum, so the result is always in [0, 1]. A classifier that has only seen ``False``
      scores 0.0: that is its opinion, not missing data.
    * ``"regression"``: ``predict_one`` as a float (untrained River regressors predict 0.0).

    Raises ``ValueError`` for an unknown task.
    """
    if task == "classification":
        proba = model.predict_proba_one(dict(x))
        total = float(sum(proba.values())) if proba else 0.0
        if total <= 0.0:
            return UNTRAINED_PROBABILITY
        return min(max(float(proba.get(True, 0.0)) / total, 0.0), 1.0)
    if task == "regression":
        return float(model.predict_one(dict(x)))
    raise ValueError(f"unknown task {task!r}; choose one of classification, regression")


def _is(obj: Any, cls: type | tuple[type, ...]) -> bool:
    # River's metaclass makes a pipeline an "instance" of its last step's class, so
    # ``isinstance(scaler | logistic, LogisticRegression)`` is True: pipelines must be excluded.
    return isinstance(obj, cls) and not isinstance(obj, compose.Pipeline)


def _unwrapped(model: Any) -> Any:
    return model.regressor if _is(model, compose.TargetTransformRegressor) else model


def _linear_parts(model: Any) -> tuple[list[Any], Any] | None:
    """(transformers before it, linear model) when ``model`` is a (scaled) linear model, else None.

    The transformers are a StandardScaler, optionally followed by FuncTransformers (the clip).
    """
    inner = _unwrapped(model)
    if isinstance(inner, compose.Pipeline):
        steps = list(inner.steps.values())
        head, last = steps[:-1], steps[-1]
        if (
            head
            and _is(head[0], preprocessing.StandardScaler)
            and all(_is(step, compose.FuncTransformer) for step in head[1:])
            and _is(last, _LINEAR)
        ):
            return head, last
        return None
    if _is(inner, _LINEAR):
        return [], inner
    return None


def _leading_scaler(model: Any) -> preprocessing.StandardScaler | None:
    inner = _unwrapped(model)
    if isinstance(inner, compose.Pipeline):
        first = next(iter(inner.steps.values()))
        if _is(first, preprocessing.StandardScaler):
            return first
    return None


def _ranked(contributions: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    ranked = sorted(contributions.items(), key=lambda item: (-abs(item[1]), item[0]))
    return [(name, float(value)) for name, value in ranked[:k]]


def linear_contributions(model: Any, x: Mapping[str, float]) -> dict[str, float] | None:
    """weight_i * scaled x_i for every input of a (scaled) linear model, or None for other models.

    Scaling uses the pipeline's ``StandardScaler.transform_one`` with its current running means
    and variances, then its clip, exactly as the model sees the input. For the clv
    ``TargetTransformRegressor`` the contributions are in the model's target space (log1p
    revenue). The intercept is left out.
    """
    parts = _linear_parts(model)
    if parts is None:
        return None
    transformers, linear = parts
    scaled = dict(x)
    for transformer in transformers:
        scaled = transformer.transform_one(scaled)
    weights = linear.weights
    return {name: weights.get(name, 0.0) * scaled[name] for name in x}


def perturbation_contributions(model: Any, x: Mapping[str, float]) -> dict[str, float]:
    """f(x) - f(x with input i set to its baseline), for every input i.

    f is ``score`` (probability of ``True`` for a classifier, the prediction for a regressor); the
    baseline of an input is the running mean of the model's leading ``StandardScaler``, or 0.0
    when the model has no scaler (e.g. the forest). Works for any model, at one extra prediction
    per input whose value differs from its baseline.
    """
    task = "classification" if isinstance(model, base.Classifier) else "regression"
    scaler = _leading_scaler(model)
    means = scaler.means if scaler is not None else {}
    full = score(model, task, x)
    contributions: dict[str, float] = {}
    for name, value in x.items():
        baseline = float(means.get(name, 0.0))
        if value == baseline:
            contributions[name] = 0.0
            continue
        contributions[name] = full - score(model, task, {**x, name: baseline})
    return contributions


def top_contributions(model: Any, x: Mapping[str, float], k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` inputs with the largest absolute contribution to the model's score of ``x``.

    For a linear pipeline (``StandardScaler | LogisticRegression`` or ``| LinearRegression``,
    optionally inside the clv target transform) a contribution is weight x scaled value (see
    ``linear_contributions``: log-odds for churn, log1p revenue for clv); for any other model it
    is the perturbation effect on the score (see ``perturbation_contributions``). Sorted by
    absolute value, largest first, ties by name.
    """
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    contributions = linear_contributions(model, x)
    if contributions is None:
        contributions = perturbation_contributions(model, x)
    return _ranked(contributions, k)
