"""When to try a failed delivery again: exponential backoff with jitter, and ``Retry-After``.

Attempt ``k`` (1-based) that failed transiently is followed, if ``k < max_attempts``, by a wait
drawn uniformly from ``[d/2, d]`` where ``d = min(cap, base * factor ** (k - 1))`` ("equal
jitter": never less than half the backoff, so a crowd of retries spreads out without any of
them hammering the receiver). A ``Retry-After`` from the receiver is a floor on that wait, up to
``retry_after_max`` seconds. After ``max_attempts`` failed attempts the action is dead-lettered.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from engine.settings import Settings


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination accepted the action."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure (5xx, 408, 429, no connection, a timeout): try again later."""

    reason: str
    retry_after: float | None = None  # seconds the receiver asked for, if it did


@dataclass(frozen=True, slots=True)
class Permanent:
    """The destination refused the action for good (e.g. a 4xx, a template error): dead letter."""

    reason: str


Outcome = Delivered | Retry | Permanent


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``base * factor ** (k - 1)`` capped at ``cap``, jittered; ``max_attempts`` in all."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 60.0
    max_attempts: int = 8
    retry_after_max: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy of the ``SEGFLOW_DELIVER_*`` settings."""
        return cls(
            base=settings.deliver_retry_base_seconds,
            factor=settings.deliver_retry_factor,
            cap=settings.deliver_retry_cap_seconds,
            max_attempts=settings.deliver_max_attempts,
            retry_after_max=settings.deliver_retry_after_max_seconds,
        )

    def backoff(self, attempt: int) -> float:
        """The un-jittered wait after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempts count from 1, got {attempt}")
        # factor ** (attempt - 1) overflows for long runs; the cap is reached long before.
        exponent = min(attempt - 1, 1024)
        try:
            return min(self.cap, self.base * self.factor**exponent)
        except OverflowError:
            return self.cap

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """The jittered wait after failed attempt ``attempt``, at least ``retry_after`` (bounded)."""
        full = self.backoff(attempt)
        wait = full / 2 + (rng or random).uniform(0.0, full / 2)
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, self.retry_after_max))
        return wait

    def gives_up_after(self, attempt: int) -> bool:
        """Whether failed attempt ``attempt`` was the last one allowed."""
        return attempt >= self.max_attempts


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        seconds = float(text)  # not in the RFC, but some servers send "1.5"
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
