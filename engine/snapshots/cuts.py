"""Population histograms and the quintile cuts sealed from them (pure: no Redis).

A purchasing customer is *placed* at (day of the last purchase, orders, revenue in whole major
units); a ``Histogram`` counts the placements of a population per metric value. Quintile cuts
are a function of the histogram alone, so cuts computed from the sum of per-partition
histograms are those of the whole population, whatever way it was split.

The cut rule is that of ``features.population.PopulationStats.quintile_cuts``: with N ranked
values sorted ascending, cut_k is the value at 0-based rank ceil(k * N / 5) - 1 (k = 1..4), so
that for every ranked value v, 1 + #{k: v > cut_k} = 1 + floor(5 * #{values < v} / N): ties
share the lower quintile, and 5 is the best (latest day, most orders, most revenue).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from features.state import CustomerState
from features.windows import day_of

Placement = tuple[int, ...]
"""(UTC day index of the last purchase, orders, revenue in whole major units[, day of the first
purchase]). Without the first day a customer counts in the RFM metrics only, not in the
lifetime (BTYD) summaries."""

QUINTILE_CUTS = 4
MINOR_PER_MAJOR = 100


def placement_of(state: CustomerState | None) -> Placement | None:
    """Where a customer counts in the population; None when they never purchased (not ranked).

    The day is ``features.windows.day_of`` (the engine's day buckets) and revenue is floored to
    whole major units, so nearby customers share histogram fields.
    """
    if state is None or state.last_purchase_ts is None:
        return None
    first = state.first_purchase_ts if state.first_purchase_ts is not None else state.last_purchase_ts
    return (
        day_of(state.last_purchase_ts),
        state.orders,
        state.revenue_minor // MINOR_PER_MAJOR,
        day_of(first),
    )


def _counts(raw: Mapping[int, int]) -> dict[int, int]:
    """Sorted by value, without zero counts (a field emptied by moves is no value at all)."""
    return {int(k): int(raw[k]) for k in sorted(raw) if raw[k]}


def _tuple_counts(raw: Mapping[Any, int]) -> dict[Any, int]:
    """``_counts`` for keys that are tuples of ints."""
    return {tuple(int(v) for v in k): int(raw[k]) for k in sorted(raw) if raw[k]}


@dataclass(frozen=True, slots=True)
class Histogram:
    """How many customers sit at each recency day, order count and revenue (major units).

    ``customers`` is the number placed; each metric's counts sum to it. Treat the dicts as
    read-only: the dataclass is frozen, its dicts are not copied.
    """

    recency_day: dict[int, int] = field(default_factory=dict)
    frequency: dict[int, int] = field(default_factory=dict)
    monetary_units: dict[int, int] = field(default_factory=dict)
    customers: int = 0
    lifetimes: dict[tuple[int, int, int], int] = field(default_factory=dict)
    """(day of the first purchase, day of the last, orders) -> customers: the BG/NBD summaries."""
    spends: dict[tuple[int, int], int] = field(default_factory=dict)
    """(orders, revenue in whole major units) -> customers: the Gamma-Gamma summaries."""

    def encode(self) -> bytes:
        """Deterministic bytes: equal histograms encode equally (values sorted, zeros dropped)."""
        return msgpack.packb(
            [
                self.customers,
                list(_counts(self.recency_day).items()),
                list(_counts(self.frequency).items()),
                list(_counts(self.monetary_units).items()),
                [[*k, v] for k, v in _tuple_counts(self.lifetimes).items()],
                [[*k, v] for k, v in _tuple_counts(self.spends).items()],
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Histogram:
        """Inverse of ``encode`` (a histogram stored before the lifetime summaries has none)."""
        customers, recency, frequency, monetary, *lifetime = msgpack.unpackb(data)
        lifetimes, spends = lifetime if lifetime else ([], [])
        return cls(
            _counts(dict(recency)),
            _counts(dict(frequency)),
            _counts(dict(monetary)),
            int(customers),
            _tuple_counts({tuple(row[:-1]): row[-1] for row in lifetimes}),
            _tuple_counts({tuple(row[:-1]): row[-1] for row in spends}),
        )


def merge(histograms: Iterable[Histogram]) -> Histogram:
    """The histogram of the union of the populations counted by ``histograms`` (sums)."""
    recency: dict[int, int] = {}
    frequency: dict[int, int] = {}
    monetary: dict[int, int] = {}
    lifetimes: dict[Any, int] = {}
    spends: dict[Any, int] = {}
    customers = 0
    for histogram in histograms:
        pairs: tuple[tuple[dict[Any, int], Mapping[Any, int]], ...] = (
            (recency, histogram.recency_day),
            (frequency, histogram.frequency),
            (monetary, histogram.monetary_units),
            (lifetimes, histogram.lifetimes),
            (spends, histogram.spends),
        )
        for into, counts in pairs:
            for value, count in counts.items():
                into[value] = into.get(value, 0) + count
        customers += histogram.customers
    return Histogram(
        _counts(recency),
        _counts(frequency),
        _counts(monetary),
        customers,
        _tuple_counts(lifetimes),
        _tuple_counts(spends),
    )


def quintile_of(value: int, cuts: tuple[int, ...]) -> int:
    """1 + #{k: value > cut_k}: the quintile (1-5) of a ranked value under ``cuts``."""
    score = 1
    for cut in cuts:
        if value > cut:
            score += 1
    return score


@dataclass(frozen=True, slots=True)
class SealedCuts:
    """The quintile cuts of day ``day``: fixed once sealed (empty tuples when nobody is ranked)."""

    day: int
    customers: int
    recency_day: tuple[int, ...] = ()
    frequency: tuple[int, ...] = ()
    monetary_units: tuple[int, ...] = ()
    lifetime: dict[str, Any] | None = None
    """The BTYD fit made on this day's population (``engine.snapshots.lifetime``), if one was."""

    def encode(self) -> bytes:
        """Deterministic bytes (msgpack)."""
        return msgpack.packb(
            [
                self.day,
                self.customers,
                list(self.recency_day),
                list(self.frequency),
                list(self.monetary_units),
                self.lifetime,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> SealedCuts:
        """Inverse of ``encode`` (cuts sealed before lifetime fits existed have none)."""
        day, customers, recency, frequency, monetary, *rest = msgpack.unpackb(data)
        lifetime = rest[0] if rest else None
        return cls(int(day), int(customers), tuple(recency), tuple(frequency), tuple(monetary), lifetime)

    def quintiles(self, placement: Placement) -> tuple[int, int, int] | None:
        """(R, F, M) quintiles of a placement under these cuts; None when nobody was ranked."""
        if not self.recency_day:
            return None
        day, orders, units = placement[:3]
        return (
            quintile_of(day, self.recency_day),
            quintile_of(orders, self.frequency),
            quintile_of(units, self.monetary_units),
        )


def metric_cuts(counts: Mapping[int, int]) -> tuple[int, ...]:
    """The 4 cuts of one metric's value counts (empty when no value is counted)."""
    total = sum(counts.values())
    if total <= 0:
        return ()
    ranks = [-(-k * total // 5) - 1 for k in range(1, QUINTILE_CUTS + 1)]  # ceil(k * N / 5) - 1
    cuts: list[int] = []
    below = 0  # values ranked before the current one
    for value in sorted(counts):
        below += counts[value]
        while len(cuts) < QUINTILE_CUTS and ranks[len(cuts)] < below:
            cuts.append(value)
        if len(cuts) == QUINTILE_CUTS:
            break
    return tuple(cuts)


def cuts_of(day: int, histogram: Histogram, lifetime: dict[str, Any] | None = None) -> SealedCuts:
    """The sealed cuts of ``day`` from the population counted by ``histogram``."""
    return SealedCuts(
        day,
        histogram.customers,
        metric_cuts(histogram.recency_day),
        metric_cuts(histogram.frequency),
        metric_cuts(histogram.monetary_units),
        lifetime,
    )
