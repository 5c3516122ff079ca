"""A token bucket per destination: at most ``rate`` requests a second, with a small burst.

The bucket holds up to ``burst`` tokens and gains ``rate`` a second; every request (a retry
too) takes one. In any interval of ``T`` seconds it grants at most ``burst + rate * T``
requests, and ``n`` requests from a full bucket take at least ``(n - burst) / rate`` seconds.
Waiters are served in arrival order (one ``asyncio.Lock``), each taking its token at the
moment it proceeds, so a late wake-up never lets requests bunch up.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

_EPSILON = 1e-9


def default_burst(rate: float) -> int:
    """The burst when the config gives none: a tenth of a second's worth, at least 1."""
    return max(1, math.ceil(rate / 10))


class TokenBucket:
    """``rate`` tokens a second, ``burst`` at most; the clock and sleep are injectable for tests."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = asyncio.Lock()

    def try_take(self) -> float:
        """Take a token if one is there (return 0.0), else return the seconds until one is."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0 - _EPSILON:  # rounding must not leave a wait too short to move a clock
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate

    async def acquire(self) -> None:
        """Wait for a token and take it (first come, first served)."""
        async with self._lock:
            while (wait := self.try_take()) > 0:
                await self._sleep(wait)
