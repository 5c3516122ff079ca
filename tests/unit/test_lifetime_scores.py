"""BTYD scores as the rules read them: summaries from a population histogram, the weekly fit
cadence, and closed-form serving from a customer's own purchases (published values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.snapshots.cuts import Histogram, merge
from engine.snapshots.lifetime import (
    FIT_EVERY_DAYS,
    LifetimeFit,
    fit_day_of,
    fit_lifetime,
    is_fit_day,
    summaries,
)
from engine.stream.rule_scores import lifetime_names, lifetime_scores, rule_scores
from features.state import CustomerState
from models.btyd import BgNbdParams
from models.gamma_gamma import GammaGammaParams

DAY = 86_400.0
# Fader, Hardie & Lee (2005), CDNOW, time in weeks; alpha in days is 7 times the weekly one.
PAPER = BgNbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426, log_likelihood=-9582.4, customers=2357)
# Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value", CDNOW.
SPEND = GammaGammaParams(p=6.25, q=3.74, v=15.44, log_likelihood=0.0, customers=946)


def buyer(first_day: float, last_day: float, orders: int, revenue_minor: int = 0) -> CustomerState:
    return CustomerState(
        first_ts=first_day * DAY,
        last_ts=last_day * DAY,
        orders=orders,
        revenue_minor=revenue_minor,
        first_purchase_ts=first_day * DAY,
        last_purchase_ts=last_day * DAY,
    )


def test_the_papers_worked_example_through_the_engine() -> None:
    # x = 2, t_x = 30.43 weeks, T = 38.86 weeks: E[Y(39 weeks)] = 1.226 (the paper's example).
    state = buyer(0.0, 30.43 * 7, orders=3)
    scores = lifetime_scores(LifetimeFit(0, PAPER, None), state, 38.86 * 7 * DAY, 39 * 7)
    assert scores[lifetime_names(273)[1]] == pytest.approx(1.226, abs=5e-4)
    assert lifetime_names(273)[2] not in scores  # no spend model: no CLV


def test_p_alive_of_a_one_time_buyer_is_one_and_clv_is_purchases_times_spend() -> None:
    # BG/NBD: a customer without repeat purchases has not dropped out (dropout follows purchases).
    state = buyer(10.0, 10.0, orders=1, revenue_minor=3_500)
    alive, purchases, clv = lifetime_names(90)
    scores = lifetime_scores(LifetimeFit(0, PAPER, SPEND), state, 40 * DAY, 90)
    assert scores[alive] == 1.0
    # Gamma-Gamma conditional mean spend (Fader & Hardie 2013, eq. 5), x = 1 purchase of 35:
    # a weighted mean of the population mean p v / (q - 1) and the customer's, weight p x / (p x + q - 1).
    p, q, v = SPEND.p, SPEND.q, SPEND.v
    weight = p * 1 / (p * 1 + q - 1)
    spend = (1 - weight) * p * v / (q - 1) + weight * 35.0
    assert scores[clv] == pytest.approx(scores[purchases] * spend, rel=1e-12)


def test_no_scores_without_a_fit_or_a_purchase() -> None:
    assert lifetime_scores(None, buyer(0, 1, 2), 5 * DAY, 90) == {}
    never = CustomerState(first_ts=0.0, last_ts=DAY)
    assert lifetime_scores(LifetimeFit(0, PAPER, SPEND), never, 2 * DAY, 90) == {}


def test_rule_scores_keep_ready_models_and_add_the_btyd_ones() -> None:
    state = buyer(0.0, 20.0, orders=4, revenue_minor=10_000)
    fit = LifetimeFit(0, PAPER, SPEND)
    scores = rule_scores(
        {"churn": 0.7, "clv": 12.0}, {"churn"}, lifetime_scores(fit, state, 30 * DAY, 90), state
    )
    assert scores["churn"] == 0.7 and "clv" not in scores
    assert set(scores) == {"churn", *lifetime_names(90)}
    assert rule_scores({"churn": 0.7}, {"churn"}, lifetime_scores(None, state, 30 * DAY, 90), state) == {
        "churn": 0.7
    }


def test_summaries_from_a_histogram() -> None:
    # Two customers first bought on day 100, last on day 110, 3 orders; one bought once on day 104.
    histogram = Histogram(lifetimes={(100, 110, 3): 2, (104, 104, 1): 1})
    x, t_x, age, weights = summaries(119, histogram)
    assert sorted(zip(x.tolist(), t_x.tolist(), age.tolist(), weights.tolist(), strict=True)) == [
        (0.0, 0.0, 16.0, 1.0),
        (2.0, 10.0, 20.0, 2.0),
    ]
    # A purchase after the end of the day (counted within the lateness) keeps T >= t_x.
    x, t_x, age, _ = summaries(105, Histogram(lifetimes={(100, 110, 2): 1}))
    assert (x[0], t_x[0], age[0]) == (1.0, 10.0, 10.0)


def test_weekly_fit_days() -> None:
    days = [d for d in range(40) if is_fit_day(d)]
    assert FIT_EVERY_DAYS == 7 and days == [6, 13, 20, 27, 34]
    assert [fit_day_of(v) for v in (5, 6, 7, 12, 13, 14)] == [-1, 6, 6, 6, 13, 13]


def test_small_populations_get_no_fit_and_a_large_one_recovers_its_parameters() -> None:
    assert fit_lifetime(6, Histogram(lifetimes={(0, 3, 2): 20, (1, 1, 1): 20})) is None
    # A population drawn from known BG/NBD parameters (days): the fit lands near them.
    rng = np.random.default_rng(5)
    r, alpha, a, b, end = 0.5, 10.0, 0.8, 2.5, 364
    counts: dict[tuple[int, int, int], int] = {}
    spends: dict[tuple[int, int], int] = {}
    for _ in range(6000):
        first = int(rng.integers(0, 180))
        lam, p = rng.gamma(r, 1 / alpha), rng.beta(a, b)
        t, last, n = float(first), first, 1
        while True:
            t += rng.exponential(1 / lam)
            if t >= end + 1:
                break
            last, n = int(t), n + 1
            if rng.random() < p:
                break
        counts[(first, last, n)] = counts.get((first, last, n), 0) + 1
        spends[(n, 20 * n)] = spends.get((n, 20 * n), 0) + 1
    fit = fit_lifetime(end, merge([Histogram(lifetimes=counts, spends=spends)]))
    assert fit is not None and fit.day == end
    assert fit.purchases.r == pytest.approx(r, rel=0.2)
    assert fit.purchases.a / (fit.purchases.a + fit.purchases.b) == pytest.approx(a / (a + b), rel=0.25)
    assert math.isclose(LifetimeFit.decode(fit.encode()).purchases.alpha, fit.purchases.alpha)


def test_the_btyd_model_inputs_are_the_papers_numbers_on_the_models_scale() -> None:
    from engine.stream.lifetime_inputs import LIFETIME_INPUTS, model_row

    names = ("frequency", *LIFETIME_INPUTS)
    state = buyer(0.0, 30.43 * 7, orders=3)
    lifetime = lifetime_scores(LifetimeFit(0, PAPER, None), state, 38.86 * 7 * DAY, 39 * 7)
    row = model_row({"frequency": 3}, names, lifetime, 39 * 7)
    # frequency and E[Y(39 weeks)] = 1.226 on log scale; no spend model: clv 0; not missing.
    assert row[0] == pytest.approx(math.log(4.0))
    assert row[2] == pytest.approx(math.log(1 + 1.226), abs=3e-4)
    assert 0.0 < row[1] < 1.0 and row[3:] == [0.0, 0.0]
    never = CustomerState(first_ts=0.0, last_ts=DAY)
    none = lifetime_scores(LifetimeFit(0, PAPER, SPEND), never, 2 * DAY, 90)
    assert model_row({"frequency": 0}, names, none, 90) == [
        0.0, 0.0, 0.0, 0.0, 1.0
    ]  # fmt: skip
    assert model_row({"frequency": 0}, ("frequency",), None, 90) == [0.0]
