"""Backoff schedule, Retry-After, and one destination's attempts (a scripted sender, no network)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from engine.activation.actions import ActionDecision
from engine.activation.delivery.config import RateLimit, WebhookDestination
from engine.activation.delivery.counters import DestinationCounters
from engine.activation.delivery.dispatch import Dispatcher
from engine.activation.delivery.retry import (
    Delivered,
    Outcome,
    Permanent,
    Retry,
    RetryPolicy,
    parse_retry_after,
)
from engine.settings import load_settings


class Extreme(random.Random):
    """uniform() always returns its low (or high) end."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_the_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    policy = RetryPolicy(base=0.5, factor=2.0, cap=5.0, max_attempts=8)
    assert [policy.backoff(k) for k in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert RetryPolicy(base=1, factor=3, cap=100).backoff(4) == 27
    assert RetryPolicy(base=1, factor=10, cap=7).backoff(10_000) == 7  # no overflow
    with pytest.raises(ValueError):
        policy.backoff(0)


def test_jitter_stays_between_half_the_backoff_and_all_of_it() -> None:
    policy = RetryPolicy(base=0.5, factor=2.0, cap=5.0)
    low = [policy.delay(k, rng=Extreme(high=False)) for k in range(1, 7)]
    high = [policy.delay(k, rng=Extreme(high=True)) for k in range(1, 7)]
    assert low == [0.25, 0.5, 1.0, 2.0, 2.5, 2.5]
    assert high == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    rng = random.Random(7)
    draws = [policy.delay(3, rng=rng) for _ in range(2000)]
    assert 1.0 <= min(draws) < 1.05 and 1.95 < max(draws) <= 2.0  # spread over [1, 2]


def test_retry_after_is_a_floor_up_to_its_maximum() -> None:
    policy = RetryPolicy(base=0.5, factor=2.0, cap=5.0, retry_after_max=30.0)
    lowest = Extreme(high=False)
    assert policy.delay(1, retry_after=3.0, rng=lowest) == 3.0
    assert policy.delay(4, retry_after=0.1, rng=lowest) == 2.0  # the backoff is longer
    assert policy.delay(1, retry_after=3600.0, rng=lowest) == 30.0


def test_max_attempts_counts_the_first_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up_after(k) for k in (1, 2, 3, 4)] == [False, False, True, True]


def test_parse_retry_after() -> None:
    now = datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=45), usegmt=True), now) == 45.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=45), usegmt=True), now) == 0.0
    for bad in (None, "", "soon", "-3", "nan"):
        assert parse_retry_after(bad, now) is None


def test_the_policy_reads_the_settings() -> None:
    settings = load_settings(
        deliver_retry_base_seconds=0.1,
        deliver_retry_factor=3,
        deliver_retry_cap_seconds=9,
        deliver_max_attempts=4,
        deliver_retry_after_max_seconds=20,
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(0.1, 3.0, 9.0, 4, 20.0)


# -- one destination's attempts -----------------------------------------------------------------


class Scripted:
    """A sender that answers from a script and records each attempt."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes
        self.sent: list[str] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, decision: ActionDecision) -> Outcome:
        self.sent.append(decision.action_id)
        return self.outcomes[len(self.sent) - 1]


def decision() -> ActionDecision:
    return ActionDecision("a1", "c1", "winback", "webhook", "send", {}, "why", 1, 1, 1, "r1")


def run(outcomes: list[Outcome], max_attempts: int = 4) -> tuple[object, list[float], DestinationCounters]:
    destination = WebhookDestination(
        "hook", "webhook", "http://127.0.0.1:1/", b"k", rate_limit=RateLimit(1e6, 5)
    )
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    counters = DestinationCounters()
    policy = RetryPolicy(base=1.0, factor=2.0, cap=10.0, max_attempts=max_attempts)
    sender = Scripted(outcomes)
    dispatcher = Dispatcher(destination, policy, counters, sender, sleep, Extreme(high=True))
    return asyncio.run(dispatcher.deliver(decision())), sleeps, counters


def test_transient_failures_are_retried_with_the_backoff_then_delivered() -> None:
    result, sleeps, counters = run(
        [Retry("HTTP 503"), Retry("HTTP 429", retry_after=7.0), Delivered("HTTP 200")]
    )
    assert (result.delivered, result.attempts) == (True, 3)
    assert sleeps == [1.0, 7.0]  # the second wait is Retry-After's, longer than the 2 s backoff
    assert (counters.attempts, counters.retried, counters.delivered) == (3, 2, 1)


def test_a_permanent_failure_is_not_retried() -> None:
    result, sleeps, counters = run([Permanent("HTTP 400 Bad Request")])
    assert (result.delivered, result.attempts, sleeps) == (False, 1, [])
    assert result.reason == "refused: HTTP 400 Bad Request"
    assert (counters.retried, counters.delivered) == (0, 0)


def test_out_of_attempts_gives_the_last_error() -> None:
    result, sleeps, counters = run([Retry("HTTP 500 Internal Server Error")] * 3, max_attempts=3)
    assert not result.delivered
    assert result.reason == "gave up after 3 attempts; last: HTTP 500 Internal Server Error"
    assert sleeps == [1.0, 2.0]
    assert (counters.attempts, counters.retried) == (3, 2)
