"""Lift statistics: rates, Wilson and Newcombe intervals, an always-valid interval, SRM.

Notation: treated arm x1 conversions of n1 exposures (p1 = x1 / n1), control x2 of n2 (p2),
z = the standard normal quantile at 1 - alpha / 2 (1.95996 for 95%).

* Wilson score interval for one proportion (Wilson 1927):
      (p + z^2 / 2n  +-  z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n); n = 0 gives [0, 1].
* Newcombe's hybrid score interval for p1 - p2 (Newcombe 1998, method 10), from the Wilson
  intervals [l1, u1] and [l2, u2]:
      lower = (p1 - p2) - sqrt((p1 - l1)^2 + (u2 - p2)^2)
      upper = (p1 - p2) + sqrt((u1 - p1)^2 + (p2 - l2)^2)
  Newcombe's Table II example: 56/70 - 48/80 = 0.2000, 95% interval 0.0524 to 0.3339.
* Always-valid (sequential) interval for p1 - p2: the normal-mixture mSPRT of Johari et al.
  (2017, 2022; Optimizely's form; the normal-mixture boundary of Howard et al. 2021). With
  V = v1 / n1 + v2 / n2 the variance of p1 - p2 and a N(0, tau^2) mixture over the difference,
  the mixture likelihood ratio of theta is
      sqrt(V / (V + tau^2)) exp(tau^2 (p1 - p2 - theta)^2 / (2 V (V + tau^2))),
  and the thetas where it stays below 1 / alpha form the interval
      (p1 - p2)  +-  sqrt(V (V + tau^2) / tau^2 * (2 ln(1 / alpha) + ln((V + tau^2) / V))).
  It may be looked at after every exposure: P(it ever excludes the true difference) <= alpha,
  asymptotically (V uses plug-in variances v = p~ (1 - p~) with p~ = (x + 1/2) / (n + 1), so that
  it is never 0). tau is the difference the test is tuned to; default tau = 0.01 (one percentage
  point, tau^2 = 1e-4), which suits conversion rates of a few percent.
* Incremental conversions = n1 (p1 - p2), its interval n1 * [lower, upper] (n1 taken as fixed);
  incremental revenue = R1 - n1 R2 / n2 (R = revenue attributed to the arm), a point estimate.
* Sample-ratio mismatch: Pearson's chi-squared goodness of fit of the observed exposures per arm
  against the expected allocation (``scipy.stats.chisquare``), flagged when p < 0.001.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from scipy import stats

from engine.activation.experiments.assignment import CONTROL

DEFAULT_CONFIDENCE = 0.95
DEFAULT_TAU2 = 1e-4
SRM_THRESHOLD = 0.001


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval [lower, upper]."""

    lower: float
    upper: float

    def covers(self, value: float) -> bool:
        """Whether ``value`` lies within the interval."""
        return self.lower <= value <= self.upper

    def scaled(self, factor: float) -> Interval:
        """The interval times a non-negative ``factor``."""
        return Interval(self.lower * factor, self.upper * factor)


@lru_cache(maxsize=32)
def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence!r}")
    return float(stats.norm.ppf(1.0 - (1.0 - confidence) / 2.0))


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")


def wilson_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson's score interval for a proportion; [0, 1] when n = 0."""
    _check_counts(successes, n)
    if n == 0:
        return Interval(0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Newcombe's hybrid score interval (1998, method 10) for p1 - p2 = x1/n1 - x2/n2."""
    _check_counts(x1, n1)
    _check_counts(x2, n2)
    if n1 == 0 or n2 == 0:
        return Interval(-1.0, 1.0)
    p1, p2 = x1 / n1, x2 / n2
    w1 = wilson_interval(x1, n1, confidence)
    w2 = wilson_interval(x2, n2, confidence)
    difference = p1 - p2
    lower = difference - math.hypot(p1 - w1.lower, w2.upper - p2)
    upper = difference + math.hypot(w1.upper - p1, p2 - w2.lower)
    return Interval(max(-1.0, lower), min(1.0, upper))


def sequential_interval(
    x1: int, n1: int, x2: int, n2: int, alpha: float = 1.0 - DEFAULT_CONFIDENCE, tau2: float = DEFAULT_TAU2
) -> Interval:
    """The always-valid (mSPRT normal-mixture) interval for p1 - p2; see the module docstring."""
    _check_counts(x1, n1)
    _check_counts(x2, n2)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be within (0, 1), got {alpha!r}")
    if not tau2 > 0:
        raise ValueError(f"tau2 must be positive, got {tau2!r}")
    if n1 == 0 or n2 == 0:
        return Interval(-1.0, 1.0)
    t1, t2 = (x1 + 0.5) / (n1 + 1), (x2 + 0.5) / (n2 + 1)
    variance = t1 * (1.0 - t1) / n1 + t2 * (1.0 - t2) / n2
    half = math.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (2.0 * math.log(1.0 / alpha) + math.log((variance + tau2) / variance))
    )
    difference = x1 / n1 - x2 / n2
    return Interval(max(-1.0, difference - half), min(1.0, difference + half))


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """Exposures, conversions and the revenue attributed to one arm."""

    exposures: int
    conversions: int
    revenue: float = 0.0

    def __post_init__(self) -> None:
        _check_counts(self.conversions, self.exposures)

    @property
    def rate(self) -> float | None:
        """Conversions / exposures, or None without exposures."""
        return self.conversions / self.exposures if self.exposures else None


@dataclass(frozen=True, slots=True)
class ArmLift:
    """One treated arm against control."""

    arm: str
    exposures: int
    conversions: int
    rate: float | None
    control_rate: float | None
    absolute_lift: float | None  # rate - control_rate
    relative_lift: float | None  # absolute_lift / control_rate; None when control_rate is 0
    interval: Interval  # Newcombe, for absolute_lift
    sequential: Interval | None  # always-valid, when asked for
    incremental_conversions: float | None  # exposures * absolute_lift
    incremental_interval: Interval | None  # exposures * interval
    incremental_revenue: float | None  # revenue - exposures * control revenue per exposure


def arm_lift(
    arm: str,
    treated: ArmCounts,
    control: ArmCounts,
    confidence: float = DEFAULT_CONFIDENCE,
    sequential: bool = False,
    tau2: float = DEFAULT_TAU2,
) -> ArmLift:
    """Rates, absolute and relative lift, Newcombe interval and incremental numbers of one arm."""
    rate, control_rate = treated.rate, control.rate
    interval = newcombe_interval(
        treated.conversions, treated.exposures, control.conversions, control.exposures, confidence
    )
    always_valid = (
        sequential_interval(
            treated.conversions,
            treated.exposures,
            control.conversions,
            control.exposures,
            1.0 - confidence,
            tau2,
        )
        if sequential
        else None
    )
    if rate is None or control_rate is None:
        absolute = relative = incremental = revenue = None
        incremental_interval = None
    else:
        absolute = rate - control_rate
        relative = absolute / control_rate if control_rate > 0 else None
        incremental = treated.exposures * absolute
        incremental_interval = interval.scaled(treated.exposures)
        revenue = treated.revenue - treated.exposures * control.revenue / control.exposures
    return ArmLift(
        arm=arm,
        exposures=treated.exposures,
        conversions=treated.conversions,
        rate=rate,
        control_rate=control_rate,
        absolute_lift=absolute,
        relative_lift=relative,
        interval=interval,
        sequential=always_valid,
        incremental_conversions=incremental,
        incremental_interval=incremental_interval,
        incremental_revenue=revenue,
    )


def lift_report(
    arms: Mapping[str, ArmCounts],
    control: str = CONTROL,
    confidence: float = DEFAULT_CONFIDENCE,
    sequential: bool = False,
    tau2: float = DEFAULT_TAU2,
) -> dict[str, ArmLift]:
    """``arm_lift`` of every arm but ``control`` against it."""
    if control not in arms:
        raise ValueError(f"no {control!r} arm to compare against")
    return {
        name: arm_lift(name, counts, arms[control], confidence, sequential, tau2)
        for name, counts in arms.items()
        if name != control
    }


@dataclass(frozen=True, slots=True)
class SampleRatioCheck:
    """Chi-squared goodness of fit of exposures to the allocation; ``flagged`` when p < threshold."""

    statistic: float
    p_value: float
    flagged: bool
    expected: dict[str, float]  # expected exposures per arm given the observed total


def sample_ratio_mismatch(
    observed: Mapping[str, int], allocation: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SampleRatioCheck:
    """Whether the observed exposures per arm are compatible with the expected allocation.

    ``allocation`` is relative (e.g. ``assignment.variant_probabilities``); arms missing from
    ``observed`` count 0 exposures. Under a bandit only the holdout-vs-treated split is fixed, so
    check ``{"control": n_control, "treated": n_treated}`` against ``{"control": h, "treated": 1 - h}``.
    """
    unknown = sorted(set(observed) - set(allocation))
    if unknown:
        raise ValueError(f"exposures for arms without an allocation: {', '.join(unknown)}")
    if len(allocation) < 2:
        raise ValueError("a sample-ratio check needs at least two arms")
    if any(not (math.isfinite(share) and share > 0) for share in allocation.values()):
        raise ValueError("every arm's expected allocation must be positive")
    names = list(allocation)
    counts = [int(observed.get(name, 0)) for name in names]
    total = sum(counts)
    weight = math.fsum(allocation.values())
    expected = [total * allocation[name] / weight for name in names]
    if total == 0:
        return SampleRatioCheck(0.0, 1.0, False, dict(zip(names, expected, strict=True)))
    result = stats.chisquare(counts, expected)
    p_value = float(result.pvalue)
    return SampleRatioCheck(
        float(result.statistic), p_value, p_value < threshold, dict(zip(names, expected, strict=True))
    )
