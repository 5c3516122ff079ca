"""Probabilistic customer lifetime value, the "buy till you die" (BTYD) family: the BG/NBD model of
repeat purchasing (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way") and CLV with
the Gamma-Gamma spend model (``models.gamma_gamma``).

A customer is summarised by ``x`` (repeat purchases: purchases after the first), ``t_x`` (time of
the last purchase since the first; 0 when ``x == 0``) and ``T`` (time since the first purchase).
While alive a customer buys at Poisson rate lambda ~ Gamma(r, alpha), and after each purchase
drops out for good with probability p ~ Beta(a, b). The fitted ``alpha`` carries the time unit of
``T``; every serving call must use that same unit.

The fit is a pure function of the summaries (with ``weights``, so a histogram of identical
summaries can be passed); serving is closed-form, scalar for the per-event path (plain ``math``
plus one ``hyp2f1``) and vectorised over numpy arrays. The model is undefined for ``a == 1``
exactly (eq. 10 divides by ``a - 1``); a fit lands there with probability zero.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from models._mle import FloatArray, as_column, check_counts, fit_log_params, same_length, weights_for, wsum
from models.gamma_gamma import GammaGammaParams, expected_spend

MODEL = "bg_nbd"
_FIELDS = ("r", "alpha", "a", "b", "log_likelihood", "customers")
# Numbers the scalar (``math``) path takes as floats. Typed loosely so that isinstance() against
# them leaves a value Any: the float helpers take numpy's scalars too, which typing calls no float.
_SCALARS: tuple[type[Any], ...] = (int, float, np.integer, np.floating)


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """A fitted BG/NBD model.

    ``log_likelihood`` is the weighted log-likelihood of the summaries at the fit and
    ``customers`` the total weight (number of customers) it was fitted on.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: float

    def encode(self) -> dict[str, Any]:
        """A plain dict of str and float (msgpack-able), for a stored snapshot; see ``decode``."""
        return {"model": MODEL, **{name: getattr(self, name) for name in _FIELDS}}

    @classmethod
    def decode(cls, data: dict[str, Any]) -> BgNbdParams:
        """Inverse of ``encode``; raises ValueError for another model's dict or invalid parameters."""
        if data.get("model") != MODEL:
            raise ValueError(f"not a {MODEL} snapshot: model={data.get('model')!r}")
        params = cls(*(float(data[name]) for name in _FIELDS))
        if not all(np.isfinite(v) and v > 0 for v in (params.r, params.alpha, params.a, params.b)):
            raise ValueError(f"{MODEL} parameters must be finite and > 0: {params}")
        return params


def _summaries(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    columns = {"x": as_column("x", x), "t_x": as_column("t_x", t_x), "T": as_column("T", T)}
    same_length(columns)
    xs, txs, ts = columns["x"], columns["t_x"], columns["T"]
    check_counts(xs)
    if np.any(txs < 0) or np.any(txs > ts):
        raise ValueError("summaries need 0 <= t_x <= T")
    return xs, txs, ts


def _log_terms(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The paper's eq. 6 in logs, ``ll = head + log(exp(alive) + exp(dropped))``: the customer
    alive at T, or dropped out right after the last purchase (only possible when x > 0)."""
    head = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    base = betaln(a, b)
    alive = betaln(a, b + x) - base - (r + x) * np.log(alpha + T)
    # b + x - 1 is only read where x >= 1; the guard keeps betaln's argument positive elsewhere.
    dropped = np.where(
        x > 0, betaln(a + 1.0, b + np.maximum(x, 1.0) - 1.0) - base - (r + x) * np.log(alpha + t_x), -np.inf
    )
    return head, alive, dropped


def bgnbd_log_likelihood(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """Per-customer log-likelihood of the summaries (the paper's eq. 6)."""
    head, alive, dropped = _log_terms(params.r, params.alpha, params.a, params.b, *_summaries(x, t_x, T))
    return head + np.logaddexp(alive, dropped)


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None) -> BgNbdParams:
    """Weighted maximum-likelihood fit of the BG/NBD model.

    ``weights`` are how many customers share each summary row (ones when None); rows of weight 0
    are ignored. L-BFGS-B on log-parameters with the analytic gradient, from a start computed from
    the data: the same input gives the same bytes. Raises ValueError for malformed summaries, no
    customers, nobody with repeat purchases, or data that do not identify the model.
    """
    xs, txs, ts = _summaries(x, t_x, T)
    w = weights_for(weights, xs.shape[0])
    keep = w > 0
    xs, txs, ts, w = xs[keep], txs[keep], ts[keep], w[keep]
    total = float(np.sum(w))
    if xs.shape[0] == 0 or total <= 0:
        raise ValueError("no customers: the BG/NBD model cannot be fitted")
    purchases = wsum(w, xs)
    if purchases <= 0:
        raise ValueError("nobody has repeat purchases: the BG/NBD model cannot be fitted")
    repeat = xs > 0
    x_minus_1 = np.maximum(xs, 1.0) - 1.0

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = (float(v) for v in np.exp(theta))
        head, alive, dropped = _log_terms(r, alpha, a, b, xs, txs, ts)
        tail = np.logaddexp(alive, dropped)
        w_alive, w_dropped = np.exp(alive - tail), np.exp(dropped - tail)
        rx = r + xs
        log_t, log_tx = np.log(alpha + ts), np.log(alpha + txs)
        psi_abx = digamma(a + b + xs)
        d_r = digamma(rx) - digamma(r) + math.log(alpha) - w_alive * log_t - w_dropped * log_tx
        d_alpha = r / alpha - rx * (w_alive / (alpha + ts) + w_dropped / (alpha + txs))
        psi_ab = float(digamma(a + b))
        d_a = (
            psi_ab - digamma(a) + w_alive * (digamma(a) - psi_abx) + w_dropped * (digamma(a + 1.0) - psi_abx)
        )
        d_b = (
            psi_ab
            - digamma(b)
            + w_alive * (digamma(b + xs) - psi_abx)
            + np.where(repeat, w_dropped * (digamma(b + x_minus_1) - psi_abx), 0.0)
        )
        gradient = np.array([r * wsum(w, d_r), alpha * wsum(w, d_alpha), a * wsum(w, d_a), b * wsum(w, d_b)])
        return -wsum(w, head + tail) / total, -gradient / total

    # r = a = b = 1 and alpha matching the pooled purchase rate: the start scales with the time
    # unit, so the fit in days is the fit in weeks with alpha times 7.
    start = (1.0, wsum(w, ts) / purchases, 1.0, 1.0)
    (r, alpha, a, b), _ = fit_log_params(objective, start, ("r", "alpha", "a", "b"), MODEL)
    fitted = BgNbdParams(float(r), float(alpha), float(a), float(b), 0.0, total)
    loglik = wsum(w, bgnbd_log_likelihood(fitted, xs, txs, ts))
    return BgNbdParams(fitted.r, fitted.alpha, fitted.a, fitted.b, loglik, total)


def _check_scalar(x: float, t_x: float, T: float) -> None:
    if x < 0 or t_x < 0 or t_x > T:
        raise ValueError(f"summary needs x >= 0 and 0 <= t_x <= T, got x={x}, t_x={t_x}, T={T}")


def _dropout_odds_log(params: BgNbdParams, x: float, t_x: float, T: float) -> float:
    """log of P(dropped)/P(alive) given the summary, for x > 0 (the paper's eq. 13 denominator)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    return math.log(a / (b + x - 1.0)) + (r + x) * math.log((alpha + T) / (alpha + t_x))


def _p_alive_scalar(params: BgNbdParams, x: float, t_x: float, T: float) -> float:
    if x == 0:
        return 1.0
    z = _dropout_odds_log(params, x, t_x, T)
    if z > 0:
        odds = math.exp(-z)
        return odds / (1.0 + odds)
    return 1.0 / (1.0 + math.exp(z))


def _p_alive_array(params: BgNbdParams, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    safe_x = np.maximum(x, 1.0)
    z = np.log(a / (b + safe_x - 1.0)) + (r + safe_x) * np.log((alpha + T) / (alpha + t_x))
    return np.where(x > 0, expit(-z), 1.0)


def _broadcast(*values: Any) -> Sequence[FloatArray]:  # a tuple since numpy 2, a list before
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    x, t_x, T = arrays[-3:]
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T):
        raise ValueError("summaries need x >= 0 and 0 <= t_x <= T")
    return arrays


@overload
def p_alive(params: BgNbdParams, x: float, t_x: float, T: float) -> float: ...
@overload
def p_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray: ...
def p_alive(params: BgNbdParams, x: Any, t_x: Any, T: Any) -> Any:
    """Probability that a customer with summary ``(x, t_x, T)`` is still alive at ``T``.

    ``1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+t_x))**(r+x))`` for x > 0, and 1 for x == 0 (a
    BG/NBD customer can only drop out right after a purchase). Scalars give a float, arrays an
    array (broadcast).
    """
    if isinstance(x, _SCALARS) and isinstance(t_x, _SCALARS) and isinstance(T, _SCALARS):
        _check_scalar(x, t_x, T)
        return _p_alive_scalar(params, x, t_x, T)
    return _p_alive_array(params, *_broadcast(x, t_x, T))


def _horizon_factor(params: BgNbdParams, x: float, T: float, t: float) -> float:
    """The bracket of eq. 10, ``1 - ((alpha+T)/(alpha+T+t))**(r+x) * 2F1(r+x, b+x; a+b+x-1; z)``
    with ``z = t/(alpha+T+t)``, after Euler's transformation ``2F1(A, B; C; z) =
    (1-z)**(C-A-B) 2F1(C-A, C-B; C; z)``: ``1 - (1-z)**(a-1) 2F1(a-1, a+b-1-r; a+b+x-1; z)``.
    The same value, but neither factor grows with x, so heavy buyers do not overflow."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    rest = (alpha + T) / (alpha + T + t)
    return 1.0 - rest ** (a - 1.0) * float(hyp2f1(a - 1.0, a + b - 1.0 - r, a + b + x - 1.0, 1.0 - rest))


def _horizon_factor_array(params: BgNbdParams, x: FloatArray, T: FloatArray, t: FloatArray) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    rest = (alpha + T) / (alpha + T + t)
    return 1.0 - rest ** (a - 1.0) * hyp2f1(a - 1.0, a + b - 1.0 - r, a + b + x - 1.0, 1.0 - rest)


@overload
def expected_purchases(params: BgNbdParams, t: float, x: float, t_x: float, T: float) -> float: ...
@overload
def expected_purchases(
    params: BgNbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray: ...
def expected_purchases(params: BgNbdParams, t: Any, x: Any, t_x: Any, T: Any) -> Any:
    """Expected number of purchases in ``(T, T + t]`` given the summary (the paper's eq. 10):

    ``(a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))**(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]
    * p_alive``. Scalars give a float, arrays an array (broadcast); ``t`` is in the fit's time unit.
    """
    a, b = params.a, params.b
    scalar = isinstance(t, _SCALARS) and isinstance(x, _SCALARS)
    if scalar and isinstance(t_x, _SCALARS) and isinstance(T, _SCALARS):
        _check_scalar(x, t_x, T)
        if t < 0:
            raise ValueError(f"t must be >= 0, got {t}")
        head = (a + b + x - 1.0) / (a - 1.0)
        return head * _horizon_factor(params, x, T, t) * _p_alive_scalar(params, x, t_x, T)
    ts, xs, txs, big_ts = _broadcast(t, x, t_x, T)
    if np.any(ts < 0):
        raise ValueError("t must be >= 0")
    head = (a + b + xs - 1.0) / (a - 1.0)
    return head * _horizon_factor_array(params, xs, big_ts, ts) * _p_alive_array(params, xs, txs, big_ts)


@lru_cache(maxsize=64)
def _schedule(horizon: int, period: float, discount_rate: float) -> tuple[FloatArray, FloatArray]:
    """The period ends ``0, period, ..., horizon*period`` and the discount factors of periods
    1..horizon (read-only: shared between calls)."""
    steps = np.arange(horizon + 1, dtype=np.float64)
    times = steps * period
    discount = (1.0 + discount_rate) ** -steps[1:]
    times.flags.writeable = discount.flags.writeable = False
    return times, discount


@overload
def clv(
    bgnbd: BgNbdParams,
    gg: GammaGammaParams,
    x: float,
    t_x: float,
    T: float,
    mean_spend: float,
    horizon: int,
    discount_rate_per_period: float,
    period: float,
) -> float: ...
@overload
def clv(
    bgnbd: BgNbdParams,
    gg: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    mean_spend: ArrayLike,
    horizon: int,
    discount_rate_per_period: float,
    period: float,
) -> FloatArray: ...
def clv(
    bgnbd: BgNbdParams,
    gg: GammaGammaParams,
    x: Any,
    t_x: Any,
    T: Any,
    mean_spend: Any,
    horizon: int,
    discount_rate_per_period: float,
    period: float,
) -> Any:
    """Expected discounted value of a customer over the next ``horizon`` periods.

    As lifetimes' ``customer_lifetime_value``: ``sum over k = 1..horizon of expected_spend *
    (E[Y(k*period)] - E[Y((k-1)*period)]) / (1 + discount_rate_per_period)**k``, the purchases
    expected in the k-th period valued at the Gamma-Gamma expected transaction value and
    discounted as if paid at the period's end. ``period`` is the length of one period in the
    BG/NBD time unit (lifetimes: 4.345 for months over weeks, 30 for months over days); with a
    zero rate the sum telescopes to ``expected_spend * E[Y(horizon*period)]``. Scalars give a
    float, arrays an array (broadcast).
    """
    horizon = operator.index(horizon)
    if horizon < 0 or period <= 0 or discount_rate_per_period <= -1:
        raise ValueError(
            f"clv needs horizon >= 0, period > 0 and a discount rate > -1, got "
            f"{horizon}, {period}, {discount_rate_per_period}"
        )
    a, b = bgnbd.a, bgnbd.b
    scalar = all(isinstance(v, _SCALARS) for v in (x, t_x, T, mean_spend))
    if scalar:
        _check_scalar(x, t_x, T)
        value = expected_spend(gg, x, mean_spend)
        scale = value * (a + b + x - 1.0) / (a - 1.0) * _p_alive_scalar(bgnbd, x, t_x, T)
        # One hyp2f1 call over the period ends: a ufunc call per period costs ~5x more.
        times, discount = _schedule(horizon, period, discount_rate_per_period)
        cumulative = _horizon_factor_array(bgnbd, x, T, times)
        return scale * math.fsum(((cumulative[1:] - cumulative[:-1]) * discount).tolist())
    ms, xs, txs, ts = _broadcast(mean_spend, x, t_x, T)
    value = expected_spend(gg, xs, ms)
    scale = value * (a + b + xs - 1.0) / (a - 1.0) * _p_alive_array(bgnbd, xs, txs, ts)
    times, discount = _schedule(horizon, period, discount_rate_per_period)
    shape = (-1,) + (1,) * xs.ndim
    cumulative = _horizon_factor_array(bgnbd, xs, ts, times.reshape(shape))
    return scale * np.sum(np.diff(cumulative, axis=0) * discount.reshape(shape), axis=0)
