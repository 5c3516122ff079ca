"""The Gamma-Gamma model of monetary value (Fader & Hardie 2013, "The Gamma-Gamma Model of
Monetary Value"), the spend half of a BTYD customer-lifetime-value estimate (``models.btyd.clv``).

A customer's transaction values are Gamma(p, nu) with a customer-specific scale nu ~ Gamma(q, v)
across the population, independent of how often the customer buys. The model is fitted on the
customers with at least one repeat purchase, from the number ``x`` of their repeat transactions
and the mean value ``mean_spend`` of those transactions (the first purchase is left out, as in the
note). ``v`` is in the currency of the spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import digamma, gammaln

from models._mle import FloatArray, as_column, check_counts, fit_log_params, same_length, weights_for, wsum

MODEL = "gamma_gamma"
_SCALARS = (int, float, np.integer, np.floating)


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """A fitted Gamma-Gamma spend model.

    ``log_likelihood`` is the weighted log-likelihood of the mean spends at the fit and
    ``customers`` the total weight of the repeat customers it was fitted on.
    """

    p: float
    q: float
    v: float
    log_likelihood: float
    customers: float

    def encode(self) -> dict[str, Any]:
        """A plain dict of str and float (msgpack-able), for a stored snapshot; see ``decode``."""
        return {
            "model": MODEL,
            "p": self.p,
            "q": self.q,
            "v": self.v,
            "log_likelihood": self.log_likelihood,
            "customers": self.customers,
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> GammaGammaParams:
        """Inverse of ``encode``; raises ValueError for another model's dict or invalid parameters."""
        if data.get("model") != MODEL:
            raise ValueError(f"not a {MODEL} snapshot: model={data.get('model')!r}")
        params = cls(*(float(data[name]) for name in ("p", "q", "v", "log_likelihood", "customers")))
        if not all(np.isfinite(value) and value > 0 for value in (params.p, params.q, params.v)):
            raise ValueError(f"{MODEL} parameters must be finite and > 0: {params}")
        return params


def _spend_columns(x: ArrayLike, mean_spend: ArrayLike) -> tuple[FloatArray, FloatArray]:
    columns = {"x": as_column("x", x), "mean_spend": as_column("mean_spend", mean_spend)}
    same_length(columns)
    check_counts(columns["x"])
    return columns["x"], columns["mean_spend"]


def gamma_gamma_log_likelihood(params: GammaGammaParams, x: FloatArray, mean_spend: FloatArray) -> FloatArray:
    """Per-customer log density of the mean spend ``mean_spend`` of ``x`` > 0 transactions (the
    note's equation 3: the mean of x Gamma(p, nu) values is Gamma(p x, nu x))."""
    p, q, v = params.p, params.q, params.v
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(mean_spend)
        + px * np.log(x)
        - (px + q) * np.log(v + x * mean_spend)
    )


def fit_gamma_gamma(
    x: ArrayLike, mean_spend: ArrayLike, weights: ArrayLike | None = None
) -> GammaGammaParams:
    """Weighted maximum-likelihood fit of the Gamma-Gamma model.

    ``x`` are repeat-transaction counts, ``mean_spend`` the mean value of those transactions and
    ``weights`` how many customers share each row (ones when None). Rows with ``x == 0`` carry no
    spend information and are left out, so the whole customer histogram can be passed. Raises
    ValueError when no repeat customer remains, when a repeat customer's mean spend is not > 0, or
    when the data do not identify the model (for instance every customer spending the same).
    """
    xs, ms = _spend_columns(x, mean_spend)
    w = weights_for(weights, xs.shape[0])
    keep = (xs > 0) & (w > 0)
    xs, ms, w = xs[keep], ms[keep], w[keep]
    total = float(np.sum(w))
    if xs.shape[0] == 0 or total <= 0:
        raise ValueError("no customer with repeat purchases: the Gamma-Gamma model cannot be fitted")
    if np.any(ms <= 0):
        raise ValueError("mean_spend must be > 0 for customers with repeat purchases")
    log_m, log_x = np.log(ms), np.log(xs)
    spent = xs * ms

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        p, q, v = np.exp(theta)
        px = p * xs
        log_total = np.log(v + spent)
        ll = gamma_gamma_log_likelihood(GammaGammaParams(p, q, v, 0.0, 0.0), xs, ms)
        psi_all = digamma(px + q)
        d_p = xs * (psi_all - digamma(px) + log_m + log_x - log_total)
        d_q = psi_all - digamma(q) + np.log(v) - log_total
        d_v = q / v - (px + q) / (v + spent)
        gradient = np.array([p * wsum(w, d_p), q * wsum(w, d_q), v * wsum(w, d_v)])
        return -wsum(w, ll) / total, -gradient / total

    # Start at q = 2, where the population mean spend p*v/(q-1) equals the observed mean.
    start = (1.0, 2.0, wsum(w, ms) / total)
    (p, q, v), _ = fit_log_params(objective, start, ("p", "q", "v"), MODEL)
    fitted = GammaGammaParams(float(p), float(q), float(v), 0.0, total)
    loglik = wsum(w, gamma_gamma_log_likelihood(fitted, xs, ms))
    return GammaGammaParams(fitted.p, fitted.q, fitted.v, loglik, total)


@overload
def expected_spend(params: GammaGammaParams, x: float, mean_spend: float) -> float: ...
@overload
def expected_spend(params: GammaGammaParams, x: ArrayLike, mean_spend: ArrayLike) -> FloatArray: ...
def expected_spend(params: GammaGammaParams, x: Any, mean_spend: Any) -> Any:
    """Conditional expected value of a customer's transactions (the note's equation 5).

    A credibility-weighted mix of the population mean ``p*v/(q-1)`` and the customer's own mean,
    the latter weighted ``p*x / (p*x + q - 1)``: for ``x == 0`` it is the population mean whatever
    ``mean_spend`` is. Scalars give a float, arrays an array (broadcast). Raises ValueError where
    the expectation does not exist (``p*x + q <= 1``, so any ``x == 0`` when ``q <= 1``).
    """
    p, q, v = params.p, params.q, params.v
    if isinstance(x, _SCALARS) and isinstance(mean_spend, _SCALARS):
        if x < 0 or mean_spend < 0:
            raise ValueError(f"x and mean_spend must be >= 0, got {x}, {mean_spend}")
        denominator = p * x + q - 1.0
        if denominator <= 0:
            raise ValueError(f"expected spend undefined: p*x + q = {denominator + 1.0} <= 1")
        return (v + mean_spend * x) * p / denominator
    xs, ms = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(mean_spend, dtype=np.float64))
    if np.any(xs < 0) or np.any(ms < 0):
        raise ValueError("x and mean_spend must be >= 0")
    denominator = p * xs + q - 1.0
    if np.any(denominator <= 0):
        raise ValueError("expected spend undefined where p*x + q <= 1")
    return (v + ms * xs) * p / denominator
