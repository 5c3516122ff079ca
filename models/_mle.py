"""Shared pieces of the BTYD fits (``models.btyd``, ``models.gamma_gamma``): input checks and the
deterministic weighted maximum-likelihood optimiser over log-parameters."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

FloatArray = NDArray[np.float64]
# Log-parameter box: wide enough for any time unit from hours to years, and it keeps gammaln and
# exp finite while the line search explores.
LOG_BOUND = 25.0
# The objective is the mean negative log-likelihood per customer, so one tolerance fits any
# population size.
GTOL = 1e-11
MAX_ITERATIONS = 2000
# A projected gradient above this at the end is a failed fit, whatever the optimiser reports.
ACCEPT_GRADIENT = 1e-6


def as_column(name: str, values: ArrayLike) -> FloatArray:
    """``values`` as a finite 1-D float64 array; raises ValueError naming ``name`` otherwise."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite values")
    return array


def check_counts(x: FloatArray) -> None:
    """Repeat-purchase counts are whole and non-negative."""
    if np.any(x < 0) or np.any(x != np.floor(x)):
        raise ValueError("x (repeat purchases) must be whole numbers >= 0")


def weights_for(weights: ArrayLike | None, size: int) -> FloatArray:
    """The per-row customer counts (ones when None), checked non-negative and matching in length."""
    if weights is None:
        return np.ones(size)
    w = as_column("weights", weights)
    if w.shape[0] != size:
        raise ValueError(f"weights has {w.shape[0]} rows, the summaries {size}")
    if np.any(w < 0):
        raise ValueError("weights must be >= 0")
    return w


def same_length(columns: Mapping[str, FloatArray]) -> int:
    """The common length of ``columns``; raises ValueError when they differ."""
    lengths = {name: column.shape[0] for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"summary columns differ in length: {lengths}")
    return next(iter(lengths.values()))


def wsum(w: FloatArray, values: FloatArray) -> float:
    """``sum(w * values)`` exactly rounded, so it does not depend on the order or memory alignment of
    the rows (numpy's and BLAS's reductions may), which the same-bytes guarantee rests on."""
    return math.fsum((w * values).tolist())


def fit_log_params(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    start: Sequence[float],
    names: Sequence[str],
    model: str,
) -> tuple[FloatArray, float]:
    """Minimise ``objective`` (mean negative log-likelihood and its gradient, over log-parameters).

    L-BFGS-B from a start that depends only on the data, with a fixed iteration budget: the same
    input gives the same floating-point operations, so the same bytes. Returns the parameters
    (not logged) and the minimum. Raises ValueError when the optimum runs to the box or the search
    stalls away from a stationary point: the likelihood then grows along a ridge to infinity, which
    happens with too few or too uniform customers (the data do not identify the model).
    """
    result: Any = minimize(
        objective,
        np.log(np.asarray(start, dtype=np.float64)),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start),
        options={"maxiter": MAX_ITERATIONS, "ftol": 0.0, "gtol": GTOL, "maxcor": 20},
    )
    at_bound = [n for n, v in zip(names, result.x, strict=True) if abs(v) >= LOG_BOUND - 1e-6]
    if at_bound:
        raise ValueError(
            f"{model} fit ran to the edge of the parameter space ({', '.join(at_bound)}): "
            "the data do not identify the model"
        )
    gradient = float(np.max(np.abs(result.jac)))
    if not np.isfinite(result.fun) or gradient > ACCEPT_GRADIENT:
        raise ValueError(
            f"{model} fit found no maximum of the likelihood ({result.message}, gradient {gradient:.3g}): "
            "the data do not identify the model"
        )
    return np.exp(result.x), float(result.fun)
