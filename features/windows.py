"""Event-time day buckets: bounded-memory windowed counts and sums.

A bucket map is ``{day index: value}`` where the day index is ``floor(ts / 86400)`` (UTC days).
Only days with activity are stored, and days older than the longest window are pruned, so the
memory per customer is bounded by the window length, not by the customer's history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from features.event import SECONDS_PER_DAY

_V = TypeVar("_V")


def day_of(ts: float) -> int:
    """The UTC day index of an epoch-seconds timestamp."""
    return math.floor(ts / SECONDS_PER_DAY)


def add(buckets: dict[int, int], day: int, amount: int = 1) -> None:
    """Add ``amount`` to the bucket of ``day``."""
    buckets[day] = buckets.get(day, 0) + amount


def add_pair(buckets: dict[int, list[int]], day: int, first: int, second: int) -> None:
    """Add to a two-value bucket (e.g. orders and revenue of one day)."""
    current = buckets.get(day)
    if current is None:
        buckets[day] = [first, second]
    else:
        buckets[day] = [current[0] + first, current[1] + second]


def prune(buckets: dict[int, _V], newest_day: int, horizon_days: int) -> None:
    """Drop buckets that no window of ``horizon_days`` ending at or after ``newest_day`` can see."""
    oldest_kept = newest_day - horizon_days + 1
    for day in [d for d in buckets if d < oldest_kept]:
        del buckets[day]


def window_sum(buckets: dict[int, int], as_of_day: int, days: int) -> int:
    """Sum of the buckets of the ``days`` days ending with ``as_of_day`` (inclusive)."""
    first = as_of_day - days + 1
    return sum(v for d, v in buckets.items() if first <= d <= as_of_day)


def window_pair_sums(buckets: dict[int, list[int]], as_of_day: int, days: int) -> tuple[int, int]:
    """Both sums of two-value buckets over the ``days`` days ending with ``as_of_day``."""
    first = as_of_day - days + 1
    a = b = 0
    for day, (x, y) in buckets.items():
        if first <= day <= as_of_day:
            a += x
            b += y
    return a, b


def window_pair_sums_of(
    buckets: dict[int, list[int]], as_of_day: int, lengths: Sequence[int]
) -> list[tuple[int, int]]:
    """``window_pair_sums`` for several window lengths, in one pass over the buckets."""
    firsts = [0] * len(lengths)
    seconds = [0] * len(lengths)
    indexed = list(enumerate(lengths))
    for day, (x, y) in buckets.items():
        age = as_of_day - day
        if age < 0:
            continue
        for i, length in indexed:
            if age < length:
                firsts[i] += x
                seconds[i] += y
    return list(zip(firsts, seconds, strict=True))


def window_sums(buckets: dict[int, int], as_of_day: int, lengths: Sequence[int]) -> list[int]:
    """``window_sum`` for several window lengths, in one pass over the buckets."""
    sums = [0] * len(lengths)
    for day, value in buckets.items():
        age = as_of_day - day
        if age < 0:
            continue
        for i, length in enumerate(lengths):
            if age < length:
                sums[i] += value
    return sums


def windows(buckets: dict[int, int], as_of_day: int, lengths: Sequence[int]) -> dict[int, int]:
    """``window_sum`` for several window lengths at once."""
    return {length: window_sum(buckets, as_of_day, length) for length in lengths}
