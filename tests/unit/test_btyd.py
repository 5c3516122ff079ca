"""BTYD models (models.btyd, models.gamma_gamma) against the published CDNOW numbers, a numerical
integration of the BG/NBD posterior, and their own contracts (weights, determinism, errors).

The CDNOW summaries are read from the files the lifetimes wheel ships (a dev dependency); the
package itself is never imported, only its distribution's files are located.
"""

from __future__ import annotations

import math
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import msgpack
import numpy as np
import pytest
from scipy import integrate
from scipy.special import betaln, gammaln, hyp2f1

from models.btyd import BgNbdParams, bgnbd_log_likelihood, clv, expected_purchases, fit_bgnbd, p_alive
from models.gamma_gamma import GammaGammaParams, expected_spend, fit_gamma_gamma

# Fader, Hardie & Lee (2005), CDNOW calibration to 1997-09-30, time in weeks.
FHL_PARAMS = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=-9582.4, customers=2357)
# Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value".
FH_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


def _dataset(name: str) -> np.ndarray:
    """A CSV of the lifetimes wheel's datasets, as a float array without the header row."""
    try:
        dist = distribution("lifetimes")
    except PackageNotFoundError:
        pytest.fail("lifetimes==0.11.3 is not installed: `pip install -e .[dev]` (its CDNOW data is read)")
    path = Path(str(dist.locate_file(f"lifetimes/datasets/{name}")))
    if not path.is_file():
        pytest.fail(f"the lifetimes distribution has no datasets/{name} (looked at {path})")
    return np.loadtxt(path, delimiter=",", skiprows=1)


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    summary = _dataset("cdnow_customers_summary.csv")
    spend = _dataset("cdnow_customers_summary_with_transactions.csv")
    assert summary.shape == (2357, 4) and spend.shape == (2357, 5)
    np.testing.assert_array_equal(summary[:, 1:4], spend[:, 1:4])
    return {"x": summary[:, 1], "t_x": summary[:, 2], "T": summary[:, 3], "m": spend[:, 4]}


@pytest.fixture(scope="module")
def bgnbd(cdnow: dict[str, np.ndarray]) -> BgNbdParams:
    return fit_bgnbd(cdnow["x"], cdnow["t_x"], cdnow["T"])


@pytest.fixture(scope="module")
def gg(cdnow: dict[str, np.ndarray]) -> GammaGammaParams:
    return fit_gamma_gamma(cdnow["x"], cdnow["m"])


def test_bgnbd_fit_reproduces_fader_hardie_lee_2005(bgnbd: BgNbdParams) -> None:
    assert bgnbd.r == pytest.approx(FHL_PARAMS.r, abs=5e-4)
    assert bgnbd.alpha == pytest.approx(FHL_PARAMS.alpha, abs=5e-4)
    assert bgnbd.a == pytest.approx(FHL_PARAMS.a, abs=5e-4)
    assert bgnbd.b == pytest.approx(FHL_PARAMS.b, abs=5e-4)
    assert bgnbd.log_likelihood == pytest.approx(FHL_PARAMS.log_likelihood, abs=0.05)
    assert bgnbd.customers == 2357


def test_fit_is_a_maximum_of_the_likelihood(cdnow: dict[str, np.ndarray], bgnbd: BgNbdParams) -> None:
    # Central differences of the log-likelihood itself, so this does not trust the analytic gradient.
    names = ("r", "alpha", "a", "b")
    base = {name: getattr(bgnbd, name) for name in names}
    for name in names:
        step = 1e-5 * base[name]
        lls = []
        for sign in (1, -1):
            moved = BgNbdParams(**{**base, name: base[name] + sign * step}, log_likelihood=0, customers=0)
            lls.append(math.fsum(bgnbd_log_likelihood(moved, cdnow["x"], cdnow["t_x"], cdnow["T"])))
        assert (lls[0] - lls[1]) / (2 * step) * base[name] == pytest.approx(0.0, abs=1e-4), name


def test_paper_worked_example() -> None:
    # x = 2, t_x = 30.43, T = 38.86: 1.226 purchases expected in the next 39 weeks.
    assert expected_purchases(FHL_PARAMS, 39.0, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)
    assert expected_purchases(FHL_PARAMS, np.array([39.0]), 2, 30.43, 38.86)[0] == pytest.approx(
        1.226, abs=5e-4
    )


def test_euler_transformed_horizon_matches_the_literal_equation_10() -> None:
    r, alpha, a, b = FHL_PARAMS.r, FHL_PARAMS.alpha, FHL_PARAMS.a, FHL_PARAMS.b
    for x, t_x, T, t in [
        (2, 30.43, 38.86, 39.0),
        (0, 0.0, 20.0, 10.0),
        (1, 1.71, 38.86, 52.0),
        (12, 30.0, 31.0, 5.0),
    ]:
        z = t / (alpha + T + t)
        bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        odds = (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
        literal = (a + b + x - 1) / (a - 1) * bracket / (1 + odds)
        assert expected_purchases(FHL_PARAMS, t, x, t_x, T) == pytest.approx(literal, rel=1e-10)


def test_gamma_gamma_fit_reproduces_fader_hardie_2013(gg: GammaGammaParams) -> None:
    assert gg.customers == 946
    assert gg.p == pytest.approx(FH_GG["p"], abs=5e-3)
    assert gg.q == pytest.approx(FH_GG["q"], abs=5e-3)
    assert gg.v == pytest.approx(FH_GG["v"], abs=0.02)


def _posterior_by_integration(
    params: BgNbdParams, x: int, t_x: float, T: float, t: float
) -> tuple[float, ...]:
    """P(alive), E[Y(t)] and the log-likelihood by integrating over lambda ~ Gamma(r, alpha) and
    p ~ Beta(a, b) the likelihood given (lambda, p): alive, (1-p)^x lambda^x e^(-lambda T); dropped
    after the last purchase, p (1-p)^(x-1) lambda^x e^(-lambda t_x). Alive, a customer buys
    (1 - e^(-lambda p t)) / p times in the next t (the paper's eq. 7)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    # lambda = u^(1/r) and p = v^(1/a) take the integrable singularities of the priors at 0 away.
    norm = math.exp(r * math.log(alpha) - gammaln(r + 1) - math.log(a) - betaln(a, b))
    u_max = ((r + x + 60.0) / (alpha + t_x)) ** r

    def terms(v: float, u: float) -> tuple[float, float, float]:
        lam, p = u ** (1 / r), v ** (1 / a)
        prior = math.exp(-alpha * lam) * (1 - p) ** (b - 1) * norm
        alive = (1 - p) ** x * lam**x * math.exp(-lam * T) * prior
        dropped = p * (1 - p) ** (x - 1) * lam**x * math.exp(-lam * t_x) * prior if x > 0 else 0.0
        future = -math.expm1(-lam * p * t) / p if p > 0 else lam * t
        return alive, dropped, future

    def integral(pick: int) -> float:
        def f(v: float, u: float) -> float:
            alive, dropped, future = terms(v, u)
            return (alive, alive + dropped, alive * future)[pick]

        return integrate.dblquad(f, 0.0, u_max, 0.0, 1.0, epsabs=0.0, epsrel=1e-10)[0]

    alive, total, future = integral(0), integral(1), integral(2)
    return alive / total, future / total, math.log(total)


@pytest.mark.parametrize(
    ("x", "t_x", "T", "t"),
    [
        (2, 30.43, 38.86, 39.0),
        (0, 0.0, 38.86, 39.0),
        (1, 1.71, 38.86, 26.0),
        (7, 35.0, 38.0, 52.0),
        (0, 0.0, 3.0, 8.0),
    ],
)
def test_closed_forms_match_numerical_integration(x: int, t_x: float, T: float, t: float) -> None:
    alive, future, loglik = _posterior_by_integration(FHL_PARAMS, x, t_x, T, t)
    assert p_alive(FHL_PARAMS, x, t_x, T) == pytest.approx(alive, rel=1e-7)
    assert expected_purchases(FHL_PARAMS, t, x, t_x, T) == pytest.approx(future, rel=1e-7)
    assert bgnbd_log_likelihood(FHL_PARAMS, [x], [t_x], [T])[0] == pytest.approx(loglik, rel=1e-8)


def test_scalar_and_vector_serving_agree(
    cdnow: dict[str, np.ndarray], bgnbd: BgNbdParams, gg: GammaGammaParams
) -> None:
    x, t_x, T, m = cdnow["x"][:200], cdnow["t_x"][:200], cdnow["T"][:200], cdnow["m"][:200]
    alive = p_alive(bgnbd, x, t_x, T)
    future = expected_purchases(bgnbd, 39.0, x, t_x, T)
    spend = expected_spend(gg, x, m)
    value = clv(bgnbd, gg, x, t_x, T, m, 12, 0.01, 4.345)
    for i in range(200):
        args = (int(x[i]), float(t_x[i]), float(T[i]))
        assert isinstance(p_alive(bgnbd, *args), float)
        assert p_alive(bgnbd, *args) == pytest.approx(alive[i], rel=1e-12)
        assert expected_purchases(bgnbd, 39.0, *args) == pytest.approx(future[i], rel=1e-12)
        assert expected_spend(gg, args[0], float(m[i])) == pytest.approx(spend[i], rel=1e-12)
        assert clv(bgnbd, gg, *args, float(m[i]), 12, 0.01, 4.345) == pytest.approx(value[i], rel=1e-12)
    np.testing.assert_array_equal(p_alive(bgnbd, x[x == 0], t_x[x == 0], T[x == 0]), 1.0)


def test_heavy_buyers_do_not_overflow() -> None:
    for x in (200, 2000):
        alive = p_alive(FHL_PARAMS, x, 30.0, 38.0)
        future = expected_purchases(FHL_PARAMS, 39.0, x, 38.0, 38.5)
        assert 0.0 <= alive < 1e-10 and math.isfinite(future)
        # Alive for sure, a heavy buyer's rate is ~ (r + x) / (alpha + T).
        near = expected_purchases(FHL_PARAMS, 1.0, x, 38.5, 38.5) / p_alive(FHL_PARAMS, x, 38.5, 38.5)
        assert near == pytest.approx((FHL_PARAMS.r + x) / (FHL_PARAMS.alpha + 38.5), rel=0.05)


def test_gamma_gamma_expected_spend() -> None:
    gg = GammaGammaParams(**FH_GG, log_likelihood=0.0, customers=0.0)
    population = FH_GG["p"] * FH_GG["v"] / (FH_GG["q"] - 1)
    assert expected_spend(gg, 0, 0.0) == pytest.approx(population)
    assert expected_spend(gg, 0, 99.0) == pytest.approx(population)
    weight = FH_GG["p"] * 3 / (FH_GG["p"] * 3 + FH_GG["q"] - 1)
    assert expected_spend(gg, 3, 40.0) == pytest.approx(weight * 40.0 + (1 - weight) * population)
    with pytest.raises(ValueError, match="undefined"):
        expected_spend(GammaGammaParams(2.0, 0.9, 10.0, 0.0, 0.0), 0, 0.0)


def test_clv_is_lifetimes_discounted_sum(
    cdnow: dict[str, np.ndarray], bgnbd: BgNbdParams, gg: GammaGammaParams
) -> None:
    x, t_x, T, m = 2, 30.43, 38.86, 22.35
    spend = expected_spend(gg, x, m)
    expected = sum(
        spend
        * (
            expected_purchases(bgnbd, k * 4.345, x, t_x, T)
            - expected_purchases(bgnbd, (k - 1) * 4.345, x, t_x, T)
        )
        / 1.01**k
        for k in range(1, 13)
    )
    assert clv(bgnbd, gg, x, t_x, T, m, 12, 0.01, 4.345) == pytest.approx(expected, rel=1e-12)
    # Undiscounted, the per-period purchases add up to those of the whole horizon.
    assert clv(bgnbd, gg, x, t_x, T, m, 12, 0.0, 4.345) == pytest.approx(
        spend * expected_purchases(bgnbd, 12 * 4.345, x, t_x, T), rel=1e-12
    )
    assert clv(bgnbd, gg, x, t_x, T, m, 0, 0.01, 4.345) == 0.0
    grid = clv(
        bgnbd,
        gg,
        cdnow["x"][:6].reshape(2, 3),
        cdnow["t_x"][:6].reshape(2, 3),
        cdnow["T"][:6].reshape(2, 3),
        cdnow["m"][:6].reshape(2, 3),
        12,
        0.01,
        4.345,
    )
    assert grid.shape == (2, 3)
    with pytest.raises(ValueError):
        clv(bgnbd, gg, x, t_x, T, m, 12, 0.01, 0.0)


def test_weights_equal_expanded_rows(
    cdnow: dict[str, np.ndarray], bgnbd: BgNbdParams, gg: GammaGammaParams
) -> None:
    rows = np.column_stack([cdnow["x"], cdnow["t_x"], cdnow["T"], cdnow["m"]])
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    assert len(unique) < len(rows) / 2  # a real histogram
    weighted = fit_bgnbd(unique[:, 0], unique[:, 1], unique[:, 2], counts)
    for name in ("r", "alpha", "a", "b", "log_likelihood", "customers"):
        assert getattr(weighted, name) == pytest.approx(getattr(bgnbd, name), rel=1e-6), name
    weighted_gg = fit_gamma_gamma(unique[:, 0], unique[:, 3], counts)
    for name in ("p", "q", "v", "log_likelihood", "customers"):
        assert getattr(weighted_gg, name) == pytest.approx(getattr(gg, name), rel=1e-6), name
    # Uneven integer weights against the rows repeated, and weight 0 drops a row.
    w = np.random.default_rng(7).integers(0, 4, size=len(rows))
    expanded = np.repeat(rows, w, axis=0)
    a = fit_bgnbd(rows[:, 0], rows[:, 1], rows[:, 2], w)
    b = fit_bgnbd(expanded[:, 0], expanded[:, 1], expanded[:, 2])
    for name in ("r", "alpha", "a", "b", "log_likelihood", "customers"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-6), name


def test_fit_scales_with_the_time_unit(cdnow: dict[str, np.ndarray], bgnbd: BgNbdParams) -> None:
    days = fit_bgnbd(cdnow["x"], cdnow["t_x"] * 7, cdnow["T"] * 7)
    assert days.alpha == pytest.approx(bgnbd.alpha * 7, rel=1e-6)
    for name in ("r", "a", "b"):
        assert getattr(days, name) == pytest.approx(getattr(bgnbd, name), rel=1e-6), name


def test_same_input_same_bytes(cdnow: dict[str, np.ndarray]) -> None:
    def packed(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m: np.ndarray) -> bytes:
        return msgpack.packb([fit_bgnbd(x, t_x, T).encode(), fit_gamma_gamma(x, m).encode()])

    columns = [cdnow[name] for name in ("x", "t_x", "T", "m")]
    first = packed(*columns)
    assert packed(*columns) == first
    # Copies at another memory offset (numpy's and BLAS's reductions may depend on alignment).
    shifted = []
    for column in columns:
        buffer = np.empty(len(column) + 1)
        buffer[1:] = column
        shifted.append(buffer[1:])
    assert packed(*shifted) == first


def test_encode_decode_round_trip(bgnbd: BgNbdParams, gg: GammaGammaParams) -> None:
    for params in (bgnbd, gg):
        stored = msgpack.unpackb(msgpack.packb(params.encode()))
        assert type(params).decode(stored) == params
    with pytest.raises(ValueError, match="not a bg_nbd"):
        BgNbdParams.decode(gg.encode())
    with pytest.raises(ValueError, match="not a gamma_gamma"):
        GammaGammaParams.decode(bgnbd.encode())
    with pytest.raises(ValueError, match="> 0"):
        BgNbdParams.decode({**bgnbd.encode(), "a": -1.0})


def test_degenerate_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no customers"):
        fit_bgnbd([], [], [])
    with pytest.raises(ValueError, match="no customers"):
        fit_bgnbd([1, 2], [1.0, 2.0], [3.0, 3.0], weights=[0, 0])
    with pytest.raises(ValueError, match="nobody has repeat purchases"):
        fit_bgnbd([0, 0, 0], [0.0, 0.0, 0.0], [5.0, 6.0, 7.0])
    with pytest.raises(ValueError, match="t_x <= T"):
        fit_bgnbd([1], [5.0], [4.0])
    with pytest.raises(ValueError, match="whole numbers"):
        fit_bgnbd([1.5], [1.0], [4.0])
    with pytest.raises(ValueError, match="differ in length"):
        fit_bgnbd([1, 2], [1.0], [4.0, 4.0])
    with pytest.raises(ValueError, match="non-finite"):
        fit_bgnbd([1.0], [float("nan")], [4.0])
    with pytest.raises(ValueError, match="weights must be >= 0"):
        fit_bgnbd([1], [1.0], [4.0], weights=[-1])
    with pytest.raises(ValueError, match="no customer with repeat purchases"):
        fit_gamma_gamma([0, 0], [0.0, 0.0])
    with pytest.raises(ValueError, match="mean_spend must be > 0"):
        fit_gamma_gamma([1, 2], [10.0, 0.0])
    with pytest.raises(ValueError, match="do not identify"):
        fit_gamma_gamma([1, 2, 3], [10.0, 10.0, 10.0])
    with pytest.raises(ValueError, match="do not identify"):
        fit_bgnbd([1], [2.0], [4.0])
    with pytest.raises(ValueError, match="t_x <= T"):
        p_alive(FHL_PARAMS, 1, 5.0, 4.0)
    with pytest.raises(ValueError, match="t_x <= T"):
        p_alive(FHL_PARAMS, np.array([1, 1]), np.array([1.0, 5.0]), 4.0)
    with pytest.raises(ValueError, match="t must be >= 0"):
        expected_purchases(FHL_PARAMS, -1.0, 1, 1.0, 4.0)


def test_models_btyd_imports_neither_engine_features_nor_lifetimes() -> None:
    code = (
        "import sys, models.btyd, models.gamma_gamma; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('engine', 'features', 'lifetimes')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
