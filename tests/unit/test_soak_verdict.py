"""The soak's slopes, thirds and verdicts, and its table (pure, no servers)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from engine.ops.soak_report import judge, judge_samples, passed, render, slope, thirds


def test_slope_of_a_straight_line_is_its_gradient() -> None:
    assert slope([0, 1, 2, 3], [5, 7, 9, 11]) == pytest.approx(2.0)
    assert slope([0, 10, 20], [4, 4, 4]) == pytest.approx(0.0)


def test_slope_is_the_least_squares_fit() -> None:
    # Points (0,0) (1,1) (2,0) (3,3): mean t 1.5, mean v 1; sum (t-1.5)(v-1) = 1.5 + 0 - 0.5 + 3 = 4,
    # sum (t-1.5)^2 = 2.25 + 0.25 + 0.25 + 2.25 = 5.
    assert slope([0, 1, 2, 3], [0, 1, 0, 3]) == pytest.approx(4 / 5)


def test_slope_needs_two_distinct_times() -> None:
    assert slope([1.0], [3.0]) is None
    assert slope([2.0, 2.0], [1.0, 5.0]) is None
    with pytest.raises(ValueError):
        slope([1.0, 2.0], [1.0])


def test_thirds_by_count() -> None:
    assert thirds(9) == (slice(0, 3), slice(3, 9), slice(6, 9))
    assert thirds(61) == (slice(0, 20), slice(20, 61), slice(41, 61))
    assert thirds(3) == (slice(0, 1), slice(1, 3), slice(2, 3))


def _line(start: float, per_10min: float, n: int = 61, every: float = 30.0) -> list[tuple[float, float]]:
    return [(i * every, start + per_10min * i * every / 600) for i in range(n)]


def test_a_level_that_holds_is_flat() -> None:
    j = judge("worker_rss_mb", "worker RSS", "MB", _line(250.0, 0.0))
    assert j.verdict == "flat"
    assert j.first_third == j.last_third == 250.0
    assert j.slope_per_10min == pytest.approx(0.0) and j.tolerance_per_10min == pytest.approx(12.5)


def test_growth_over_5_percent_of_the_level_per_10_minutes_is_growing() -> None:
    # 200 -> ends near 200 + 3 * 12 = 236 over 30 minutes: 12 MB / 10 min, 5% of ~230 is ~11.5.
    j = judge("worker_rss_mb", "worker RSS", "MB", _line(200.0, 12.0))
    assert j.slope_per_10min == pytest.approx(12.0) and j.slope_all_per_10min == pytest.approx(12.0)
    # The last third is samples 41..60 (20 of them): its median is halfway between samples 50
    # and 51, at 1,515 s; the first third's (samples 0..19) between 9 and 10, at 285 s.
    assert j.last_third == pytest.approx(200.0 + 12.0 * 1515 / 600)
    assert j.first_third == pytest.approx(200.0 + 12.0 * 285 / 600)
    assert j.tolerance_per_10min == pytest.approx(0.05 * 230.3)
    assert j.verdict == "growing"


def test_growth_under_the_tolerance_is_flat_and_a_drop_is_falling() -> None:
    assert judge("x", "x", "MB", _line(200.0, 8.0)).verdict == "flat"
    assert judge("x", "x", "MB", _line(300.0, -20.0)).verdict == "falling"


def test_the_verdict_leaves_out_the_warm_up_third() -> None:
    # Fast growth over the first 10 minutes, then level: the slope of all samples is positive,
    # the slope the verdict is on (last two thirds) is zero.
    points = [(t, min(t, 600.0) / 6) for t, _ in _line(0.0, 0.0)]
    j = judge("redis_bytes_per_customer", "B", "B", points)
    assert j.slope_all_per_10min is not None and j.slope_all_per_10min > 20
    assert j.slope_per_10min == pytest.approx(0.0, abs=1e-9)
    assert j.verdict == "flat"


def test_lag_near_zero_is_judged_against_one_second_of_the_rate() -> None:
    # Lag wandering 300-700 events while 1,300/s are offered: 5% of ~500 is 25 events, noise.
    wobble = [(t, 500 + 200 * math.sin(i)) for i, (t, _) in enumerate(_line(0, 0))]
    j = judge("lag", "lag", "events", wobble, floor_per_10min=1300)
    assert j.tolerance_per_10min == 1300 and j.verdict == "flat"
    # Falling behind by 2 s of events every 10 minutes is growing.
    assert judge("lag", "lag", "events", _line(500, 2600), floor_per_10min=1300).verdict == "growing"


def test_too_few_samples_cannot_be_judged() -> None:
    assert judge("x", "x", "MB", [(0.0, 1.0), (30.0, 2.0)]).verdict == "unknown"


def _samples(**series: list[float | None]) -> list[dict[str, Any]]:
    n = len(next(iter(series.values())))
    return [{"elapsed_s": 30.0 * i} | {k: v[i] for k, v in series.items()} for i in range(n)]


def test_judge_samples_skips_missing_values_and_floors_only_the_lag() -> None:
    flat = [100.0] * 9
    samples = _samples(
        worker_rss_mb=[None, *flat[1:]],  # no RSS yet in the first sample
        redis_used_mb=[1.0 + i for i in range(9)],
        redis_bytes_per_customer=[None, *flat[1:]],
        record_bytes_per_customer=flat,
        lag=[0.0] * 9,
    )
    by_name = {j.quantity: j for j in judge_samples(samples, rate=1300)}
    assert by_name["worker_rss_mb"].verdict == "flat"
    assert by_name["lag"].tolerance_per_10min == 1300 and by_name["lag"].verdict == "flat"
    assert by_name["worker_rss_mb"].tolerance_per_10min == pytest.approx(5.0)
    assert by_name["redis_used_mb"].verdict == "growing"
    # Redis's total grows with the customers first seen: shown, not judged.
    assert passed(list(by_name.values()))
    grown = _samples(
        worker_rss_mb=[100.0 + 10 * i for i in range(9)],
        redis_used_mb=flat,
        redis_bytes_per_customer=flat,
        record_bytes_per_customer=flat,
        lag=flat,
    )
    assert not passed(judge_samples(grown, rate=1300))


def test_an_unjudged_quantity_fails_the_run() -> None:
    samples = _samples(
        worker_rss_mb=[100.0] * 9, redis_used_mb=[1.0] * 9, redis_bytes_per_customer=[None] * 9
    )
    assert not passed(judge_samples([s | {"lag": 0} for s in samples], rate=10))


def test_render_prints_every_sample_and_verdict() -> None:
    samples = _samples(
        sent=[0, 39_000, 78_000],
        applied=[None, 38_500, 78_000],
        lag=[0, 500, 0],
        worker_rss_mb=[40.0, 250.0, 251.0],
        redis_used_mb=[1.0, 9.0, 9.5],
        customers=[0, 4000, 4100],
        redis_bytes_per_customer=[None, 2359.3, 2430.1],
        record_bytes_per_customer=[None, 1500.0, 1523.4],
        redis_keys=[0, 4050, 4150],
        event_day=[None, 4.5, 8.8],
    )
    verdicts = [j.as_dict() for j in judge_samples(samples, rate=1300)]
    report = {
        "run_id": "r1",
        "params": {"minutes": 1.0, "rate": 1300.0, "customers": 5000, "partitions": 8},
        "samples": samples,
        "verdicts": verdicts,
        "passed": False,
        "summary": {
            "sent": 78_000,
            "achieved_rate": 1299.5,
            "applied": 78_000,
            "dead_lettered": 0,
            "event_days": 8.8,
            "lag_after_drain": 0,
            "drain_seconds": 0.5,
            "drained": True,
        },
    }
    text = render(report)
    assert "1 min at 1,300 events/s offered, 5,000 customers" in text
    assert "78,000" in text and "2,430" in text and "1,523" in text and "8.8" in text
    assert "customer record bytes (B)" in text
    assert "Redis used_memory (MB)" in text and "(not judged)" in text
    assert "verdict: FAIL" in text and "lag 0 in 0.5s (caught up)" in text
