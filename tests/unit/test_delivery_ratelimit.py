"""The per-destination token bucket, on a fake clock (sleeping advances it)."""

from __future__ import annotations

import asyncio

import pytest

from engine.activation.delivery.ratelimit import TokenBucket, default_burst


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def grant_times(rate: float, burst: int, n: int, gaps: dict[int, float] | None = None) -> list[float]:
    """When ``n`` back-to-back acquires are granted (``gaps``: idle time before request i)."""
    fake = FakeTime()
    bucket = TokenBucket(rate, burst, clock=fake.clock, sleep=fake.sleep)
    times = []

    async def main() -> None:
        for i in range(n):
            fake.now += (gaps or {}).get(i, 0.0)
            await bucket.acquire()
            times.append(fake.now - 100.0)

    asyncio.run(main())
    return times


def test_a_full_bucket_grants_the_burst_at_once_then_one_per_interval() -> None:
    times = grant_times(rate=4, burst=3, n=7)
    # 3 at t=0, then the 4th when a token has regrown (0.25 s), and so on.
    assert times == pytest.approx([0, 0, 0, 0.25, 0.5, 0.75, 1.0])


def test_try_take_reports_the_wait_for_the_next_token() -> None:
    fake = FakeTime()
    bucket = TokenBucket(rate=2, burst=1, clock=fake.clock, sleep=fake.sleep)
    assert bucket.try_take() == 0.0
    assert bucket.try_take() == pytest.approx(0.5)
    fake.now += 0.2
    assert bucket.try_take() == pytest.approx(0.3)
    fake.now += 0.3
    assert bucket.try_take() == 0.0


def test_idle_time_refills_up_to_the_burst_only() -> None:
    # Ten seconds idle before request 5 buys back 2 tokens (the burst), not 10 * rate.
    times = grant_times(rate=10, burst=2, n=9, gaps={5: 10.0})
    after = [t - times[5] for t in times[5:]]
    assert after == pytest.approx([0, 0, 0.1, 0.2])


@pytest.mark.parametrize(("rate", "burst"), [(20, 2), (5, 1), (3.5, 4)])
def test_no_window_holds_more_than_burst_plus_rate_times_its_length(rate: float, burst: int) -> None:
    n = 60
    times = grant_times(rate, burst, n, gaps={10: 0.37, 30: 2.0, 31: 0.05})
    for window in (0.5, 1.0, 3.0):
        most = max(sum(1 for t in times if start <= t < start + window) for start in times)
        assert most <= burst + rate * window + 1e-9
    # Back to back, n requests from a full bucket take (n - burst) / rate: the last one waits that long.
    assert grant_times(rate, burst, n)[-1] == pytest.approx((n - burst) / rate)


def test_waiters_are_served_in_arrival_order() -> None:
    fake = FakeTime()
    bucket = TokenBucket(rate=10, burst=1, clock=fake.clock, sleep=fake.sleep)
    order: list[int] = []

    async def one(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(6)))

    asyncio.run(main())
    assert order == list(range(6))
    assert fake.now - 100.0 == pytest.approx(0.5)


def test_bad_parameters_and_the_default_burst() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, 0)
    assert [default_burst(r) for r in (0.5, 1, 10, 20, 25, 100)] == [1, 1, 1, 2, 3, 10]
