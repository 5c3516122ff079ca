"""Lift statistics (engine.activation.experiments.lift) against published worked examples, scipy,
closed forms and the simulator's ground truth: the 95% intervals cover the true lift at their
nominal rate, the always-valid interval survives peeking, and the SRM p-value is Pearson's."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate, stats

from engine.activation.experiments.lift import (
    ArmCounts,
    arm_lift,
    lift_report,
    newcombe_interval,
    sample_ratio_mismatch,
    sequential_interval,
    wilson_interval,
)
from engine.activation.experiments.simulation import SimulationConfig, simulate

RATES = {
    "new": {"control": 0.04, "A": 0.05, "B": 0.07, "C": 0.04},
    "loyal": {"control": 0.10, "A": 0.14, "B": 0.12, "C": 0.09},
}
AB = SimulationConfig(
    true_rates=RATES, customers=1_000, segment_weights={"new": 2, "loyal": 1}, holdout_percent=20.0
)


@pytest.mark.parametrize(
    ("successes", "n", "lower", "upper"),
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Statistics in
    # Medicine 17:857-872, Table I, method 3 (Wilson score), to 4 decimals.
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_the_published_examples(successes: int, n: int, lower: float, upper: float) -> None:
    interval = wilson_interval(successes, n)
    assert (round(interval.lower, 4), round(interval.upper, 4)) == (lower, upper)


@pytest.mark.parametrize(
    ("successes", "n"), [(0, 1), (1, 1), (3, 7), (50, 1_000), (999, 1_000), (12, 20_000)]
)
@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_wilson_matches_scipy(successes: int, n: int, confidence: float) -> None:
    expected = stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    interval = wilson_interval(successes, n, confidence)
    assert (interval.lower, interval.upper) == pytest.approx((expected.low, expected.high), abs=1e-12)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "lower", "upper"),
    # Newcombe (1998), "Interval estimation for the difference between independent proportions:
    # comparison of eleven methods", Statistics in Medicine 17:873-890, Table II, method 10:
    # 56/70 - 48/80 = 0.2000 with 95% CI 0.0524 to 0.3339; 9/10 - 3/10 = 0.6000, 0.1705 to 0.8090.
    [(56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090)],
)
def test_newcombe_matches_the_published_examples(
    x1: int, n1: int, x2: int, n2: int, lower: float, upper: float
) -> None:
    interval = newcombe_interval(x1, n1, x2, n2)
    assert (round(interval.lower, 4), round(interval.upper, 4)) == (lower, upper)


def test_the_sequential_bound_is_where_the_mixture_likelihood_ratio_reaches_one_over_alpha() -> None:
    """Integrate the N(0, tau^2) mixture of normal likelihood ratios at the interval's ends."""
    x1, n1, x2, n2, alpha, tau2 = 130, 2_000, 100, 2_000, 0.05, 1e-4
    interval = sequential_interval(x1, n1, x2, n2, alpha, tau2)
    t1, t2 = (x1 + 0.5) / (n1 + 1), (x2 + 0.5) / (n2 + 1)
    variance = t1 * (1 - t1) / n1 + t2 * (1 - t2) / n2
    estimate = x1 / n1 - x2 / n2
    sd, tau = math.sqrt(variance), math.sqrt(tau2)

    def mixture_ratio(theta: float) -> float:
        def integrand(delta: float) -> float:
            ratio = stats.norm.pdf(estimate, theta + delta, sd) / stats.norm.pdf(estimate, theta, sd)
            return ratio * stats.norm.pdf(delta, 0.0, tau)

        return integrate.quad(integrand, -12 * tau, 12 * tau, limit=200)[0]

    assert mixture_ratio(interval.lower) == pytest.approx(1 / alpha, rel=1e-6)
    assert mixture_ratio(interval.upper) == pytest.approx(1 / alpha, rel=1e-6)
    fixed = newcombe_interval(x1, n1, x2, n2)
    assert interval.lower < fixed.lower and interval.upper > fixed.upper


def test_the_sequential_interval_survives_peeking_and_newcombe_does_not() -> None:
    """200 seeded streams, looked at every 500 exposures per arm up to 20,000: the always-valid
    interval may exclude the true difference in at most ~5% of streams; the fixed one in more."""
    rng = np.random.Generator(np.random.PCG64(2024))
    p1, p2, streams, looks = 0.06, 0.05, 200, np.arange(500, 20_001, 500)
    treated = np.cumsum(rng.random((streams, looks[-1])) < p1, axis=1)[:, looks - 1]
    control = np.cumsum(rng.random((streams, looks[-1])) < p2, axis=1)[:, looks - 1]
    sequential_misses = fixed_misses = 0
    for s in range(streams):
        pairs = [(int(treated[s, k]), int(n), int(control[s, k]), int(n)) for k, n in enumerate(looks)]
        sequential_misses += any(not sequential_interval(*pair).covers(p1 - p2) for pair in pairs)
        fixed_misses += any(not newcombe_interval(*pair).covers(p1 - p2) for pair in pairs)
    assert sequential_misses / streams <= 0.07, sequential_misses
    assert fixed_misses / streams >= 0.12, fixed_misses


def test_arm_lift_by_hand() -> None:
    treated, control = ArmCounts(1_000, 120, revenue=6_000.0), ArmCounts(500, 50, revenue=2_000.0)
    lift = arm_lift("A", treated, control, sequential=True)
    assert (lift.rate, lift.control_rate) == (0.12, 0.1)
    assert lift.absolute_lift == pytest.approx(0.02)
    assert lift.relative_lift == pytest.approx(0.2)
    assert lift.incremental_conversions == pytest.approx(20.0)  # 1000 * 0.02
    assert lift.incremental_revenue == pytest.approx(2_000.0)  # 6000 - 1000 * 2000 / 500
    interval = newcombe_interval(120, 1_000, 50, 500)
    assert lift.interval == interval
    assert lift.incremental_interval is not None
    assert lift.incremental_interval.lower == pytest.approx(1_000 * interval.lower)
    assert lift.sequential == sequential_interval(120, 1_000, 50, 500)
    assert arm_lift("A", treated, ArmCounts(500, 0)).relative_lift is None
    with pytest.raises(ValueError, match="no 'control' arm"):
        lift_report({"A": treated})


@pytest.mark.parametrize(
    ("observed", "allocation", "statistic"),
    [
        # (200^2 / 5000 + 200^2 / 45000), df 1: p = erfc(sqrt(x / 2))
        ({"control": 4_800, "treated": 45_200}, {"control": 0.1, "treated": 0.9}, 8 + 8 / 9),
        ({"control": 4_700, "treated": 45_300}, {"control": 0.1, "treated": 0.9}, 18 + 2),
        # 3 equal arms of 3100: x = (2 * 33.3..^2 + 66.6..^2) / 1033.3..; df 2: p = exp(-x / 2)
        ({"A": 1_000, "B": 1_000, "C": 1_100}, {"A": 1, "B": 1, "C": 1}, 20_000 / 3_100),
    ],
)
def test_sample_ratio_mismatch_is_pearsons_chi_squared(
    observed: dict[str, int], allocation: dict[str, float], statistic: float
) -> None:
    df = len(allocation) - 1
    expected_p = math.erfc(math.sqrt(statistic / 2)) if df == 1 else math.exp(-statistic / 2)
    check = sample_ratio_mismatch(observed, allocation)
    assert check.statistic == pytest.approx(statistic, rel=1e-12)
    assert check.p_value == pytest.approx(expected_p, rel=1e-9)
    assert check.flagged == (expected_p < 0.001)


def test_the_srm_threshold_separates_the_examples() -> None:
    honest = sample_ratio_mismatch({"control": 4_800, "treated": 45_200}, {"control": 0.1, "treated": 0.9})
    skewed = sample_ratio_mismatch({"control": 4_700, "treated": 45_300}, {"control": 0.1, "treated": 0.9})
    assert honest.p_value == pytest.approx(0.00287, abs=1e-5) and not honest.flagged
    assert skewed.p_value == pytest.approx(7.74e-6, rel=1e-3) and skewed.flagged
    with pytest.raises(ValueError, match="without an allocation"):
        sample_ratio_mismatch({"D": 1}, {"A": 0.5, "B": 0.5})


def test_the_lift_interval_covers_the_true_lift_in_the_seeded_run() -> None:
    result = simulate(replace(AB, customers=10_000), seed=7)
    report = lift_report(result.counts(), sequential=True)
    assert set(report) == {"A", "B", "C"}
    for arm, lift in report.items():
        assert lift.interval.covers(result.true_lift[arm]), (arm, lift.interval, result.true_lift[arm])
        assert lift.sequential is not None and lift.sequential.covers(result.true_lift[arm])
    for segment, rates in RATES.items():
        for arm, lift in lift_report(result.counts(segment)).items():
            assert lift.interval.covers(rates[arm] - rates["control"]), (segment, arm, lift.interval)


def test_the_newcombe_interval_covers_the_true_lift_95_percent_of_the_time() -> None:
    """300 seeded A/B/n runs x 3 arms: coverage within binomial noise (sd ~0.013) of 0.95; a 90%
    or a 99% interval would fall outside."""
    covered = total = 0
    for seed in range(300):
        result = simulate(AB, seed)
        for arm, lift in lift_report(result.counts()).items():
            covered += lift.interval.covers(result.true_lift[arm])
            total += 1
    assert 0.92 <= covered / total <= 0.98, covered / total


def test_per_segment_lift_under_a_bandit_covers_the_segment_truth() -> None:
    """A bandit adapts per segment, so its arms' pooled exposures mix segments unlike control's;
    within a segment the comparison stays honest."""
    config = SimulationConfig(
        true_rates=RATES, customers=8_000, holdout_percent=20.0, policy="thompson", update_every=10
    )
    result = simulate(config, seed=7)
    for segment, rates in RATES.items():
        for arm, lift in lift_report(result.counts(segment)).items():
            assert lift.interval.covers(rates[arm] - rates["control"]), (segment, arm, lift.interval)
