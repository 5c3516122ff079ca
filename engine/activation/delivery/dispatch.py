"""One destination's delivery of one action: rate limit, concurrency, attempts and backoff.

Every attempt waits for a slot (``concurrency``) and then a token of the destination's bucket,
so retries count against the rate limit as first attempts do. A retry waits for its backoff
without holding a slot. The result is final: delivered, or a reason to dead-letter.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from engine.activation.actions import ActionDecision
from engine.activation.delivery.config import Destination, SmtpDestination
from engine.activation.delivery.counters import DestinationCounters
from engine.activation.delivery.ratelimit import TokenBucket
from engine.activation.delivery.retry import Delivered, Outcome, Permanent, RetryPolicy
from engine.activation.delivery.smtp import SmtpSender
from engine.activation.delivery.webhook import WebhookSender


class Sender(Protocol):
    """Makes one delivery attempt of an action to one destination."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def send(self, decision: ActionDecision) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class Finished:
    """The end of one action's delivery: delivered, or not (``reason`` says why)."""

    delivered: bool
    reason: str
    attempts: int


def make_sender(destination: Destination) -> Sender:
    """The sender of a destination's kind."""
    if isinstance(destination, SmtpDestination):
        return SmtpSender(destination)
    return WebhookSender(destination)


class Dispatcher:
    """Delivers actions to one destination, counting into ``counters``."""

    def __init__(
        self,
        destination: Destination,
        policy: RetryPolicy,
        counters: DestinationCounters,
        sender: Sender | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.destination = destination
        self.policy = policy
        self.counters = counters
        self.sender = sender or make_sender(destination)
        limit = destination.rate_limit
        self.bucket = TokenBucket(limit.per_second, limit.burst) if limit is not None else None
        self._slots = asyncio.Semaphore(destination.concurrency)
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def start(self) -> None:
        """Open the sender's connections."""
        await self.sender.start()

    async def close(self) -> None:
        """Close the sender's connections."""
        await self.sender.close()

    async def deliver(self, decision: ActionDecision) -> Finished:
        """Attempt until delivered, refused for good, or out of attempts."""
        attempt = 0
        while True:
            attempt += 1
            async with self._slots:
                if self.bucket is not None:
                    await self.bucket.acquire()
                outcome = await self.sender.send(decision)
            self.counters.attempts += 1
            if isinstance(outcome, Delivered):
                self.counters.delivered += 1
                return Finished(True, outcome.detail, attempt)
            if isinstance(outcome, Permanent):
                return Finished(False, f"refused: {outcome.reason}", attempt)
            if self.policy.gives_up_after(attempt):
                return Finished(False, f"gave up after {attempt} attempts; last: {outcome.reason}", attempt)
            self.counters.retried += 1
            await self._sleep(self.policy.delay(attempt, outcome.retry_after, self._rng))
