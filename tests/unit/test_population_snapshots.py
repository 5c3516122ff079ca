"""Population snapshots, pure part: placements, encodings, the cut rule, merging.

Expected values are recomputed in the test from raw value lists: quintiles by counting the
values strictly below (1 + floor(5 * below / N)), cuts by indexing the sorted list, histograms
with ``collections.Counter``; day indexes from integer milliseconds.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.snapshots import (
    Histogram,
    SealedCuts,
    cuts_of,
    merge,
    pack_placement,
    placement_of,
    quintile_of,
)
from features.state import CustomerState

DAY_MS = 86_400_000


def histogram_of(values: list[tuple[int, int, int]]) -> Histogram:
    """A histogram counted from placements in the test (Counter), independent of the code."""
    return Histogram(
        dict(Counter(v[0] for v in values)),
        dict(Counter(v[1] for v in values)),
        dict(Counter(v[2] for v in values)),
        len(values),
    )


def brute_quintile(value: int, values: list[int]) -> int:
    below = sum(1 for v in values if v < value)
    return 1 + (5 * below) // len(values)


def brute_cuts(values: list[int]) -> tuple[int, ...]:
    ordered = sorted(values)
    n = len(ordered)
    return tuple(ordered[-(-k * n // 5) - 1] for k in range(1, 5)) if n else ()


def test_placement_of_never_purchased() -> None:
    assert placement_of(None) is None
    assert placement_of(CustomerState(first_ts=1.0, last_ts=2.0)) is None


@given(
    ms=st.integers(min_value=0, max_value=4_102_444_800_000),
    earlier=st.integers(min_value=0, max_value=4_102_444_800_000),
    orders=st.integers(min_value=1, max_value=10_000),
    revenue=st.integers(min_value=0, max_value=10**12),
)
def test_placement_of_purchaser(ms: int, earlier: int, orders: int, revenue: int) -> None:
    first_ms = min(ms, earlier)
    state = CustomerState(
        first_ts=0.0,
        last_ts=ms / 1000,
        orders=orders,
        revenue_minor=revenue,
        first_purchase_ts=first_ms / 1000,
        last_purchase_ts=ms / 1000,
    )
    assert placement_of(state) == (ms // DAY_MS, orders, revenue // 100, first_ms // DAY_MS)


def test_placement_of_day_and_unit_boundaries() -> None:
    def at(ts: float, revenue: int) -> CustomerState:
        return CustomerState(0.0, ts, orders=3, revenue_minor=revenue, last_purchase_ts=ts)

    # Without a recorded first purchase, the last one stands in for it.
    assert placement_of(at(86_400.0, 199)) == (1, 3, 1, 1)
    assert placement_of(at(86_399.999, 200)) == (0, 3, 2, 0)
    assert placement_of(at(0.0, 99)) == (0, 3, 0, 0)


def test_pack_placement() -> None:
    assert pack_placement(None) == ""
    assert pack_placement((20_000, 3, 12)) == "20000:3:12"
    assert pack_placement((20_000, 3, 12, 19_990)) == "20000:3:12:19990"


placements = st.tuples(
    st.integers(min_value=-5, max_value=30_000),
    st.integers(min_value=1, max_value=500),
    st.integers(min_value=0, max_value=10**9),
)


@given(st.lists(placements, max_size=60))
def test_histogram_round_trip_and_determinism(values: list[tuple[int, int, int]]) -> None:
    histogram = histogram_of(values)
    assert Histogram.decode(histogram.encode()) == histogram
    # The same counts inserted in another order encode to the same bytes.
    shuffled = Histogram(
        dict(reversed(list(histogram.recency_day.items()))),
        dict(reversed(list(histogram.frequency.items()))),
        dict(reversed(list(histogram.monetary_units.items()))),
        histogram.customers,
    )
    assert shuffled.encode() == histogram.encode()


def test_histogram_encode_drops_zero_counts() -> None:
    with_zero = Histogram({5: 1, 6: 0}, {1: 1}, {0: 1}, 1)
    assert with_zero.encode() == Histogram({5: 1}, {1: 1}, {0: 1}, 1).encode()
    assert Histogram.decode(with_zero.encode()).recency_day == {5: 1}


@given(
    day=st.integers(min_value=0, max_value=100_000),
    customers=st.integers(min_value=0, max_value=10**9),
    cuts=st.lists(st.integers(min_value=-(10**12), max_value=10**12), min_size=4, max_size=4),
)
def test_sealed_cuts_round_trip(day: int, customers: int, cuts: list[int]) -> None:
    sealed = SealedCuts(day, customers, tuple(cuts), tuple(sorted(cuts)), (cuts[0],) * 4)
    assert SealedCuts.decode(sealed.encode()) == sealed
    empty = SealedCuts(day, 0)
    assert SealedCuts.decode(empty.encode()) == empty


# Small ranges give heavy ties; wide ones mostly distinct values.
metric_values = st.one_of(
    st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=40),
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=5),
    st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=300),
)


def check_metric(values: list[int], cuts: tuple[int, ...]) -> None:
    assert len(cuts) == 4
    assert cuts == brute_cuts(values)
    for value in set(values):
        assert quintile_of(value, cuts) == brute_quintile(value, values), (value, sorted(values))


@given(metric_values, st.integers(min_value=0, max_value=2**31))
def test_cuts_give_rank_quintiles(values: list[int], seed: int) -> None:
    rows = [(v, 1 + (v + seed) % 7, (v * 31 + seed) % 11) for v in values]
    sealed = cuts_of(42, histogram_of(rows))
    assert (sealed.day, sealed.customers) == (42, len(rows))
    check_metric([r[0] for r in rows], sealed.recency_day)
    check_metric([r[1] for r in rows], sealed.frequency)
    check_metric([r[2] for r in rows], sealed.monetary_units)
    for row in rows:
        expected = tuple(brute_quintile(row[i], [r[i] for r in rows]) for i in range(3))
        assert sealed.quintiles(row) == expected


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 10, 11])
def test_cuts_small_populations(n: int) -> None:
    distinct = list(range(100, 100 + n))
    check_metric(distinct, cuts_of(0, histogram_of([(v, 1, 0) for v in distinct])).recency_day)
    tied = [7] * n
    sealed = cuts_of(0, histogram_of([(v, v, v) for v in tied]))
    assert sealed.recency_day == sealed.frequency == sealed.monetary_units == (7, 7, 7, 7)
    assert sealed.quintiles((7, 7, 7)) == (1, 1, 1)


def test_cuts_of_known_population() -> None:
    # 10 distinct values 1..10: cut_k at 0-based rank 2k-1 -> 2, 4, 6, 8.
    rows = [(v, v, v) for v in range(1, 11)]
    sealed = cuts_of(3, histogram_of(rows))
    assert sealed.recency_day == (2, 4, 6, 8)
    assert [quintile_of(v, sealed.frequency) for v in range(1, 11)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_cuts_large_population() -> None:
    # 10,007 values with a heavy tie in the middle and a long tail.
    values = [i % 97 for i in range(5_000)] + [50] * 3_000 + [i * i for i in range(2_007)]
    sealed = cuts_of(1, histogram_of([(v, 1, 0) for v in values]))
    check_metric(values, sealed.recency_day)


def test_cuts_of_empty_population() -> None:
    sealed = cuts_of(9, Histogram())
    assert sealed == SealedCuts(9, 0, (), (), ())
    assert sealed.quintiles((1, 1, 1)) is None


@settings(max_examples=200)
@given(st.lists(st.lists(placements, max_size=30), min_size=1, max_size=6))
def test_merge_of_partitions_is_the_whole(parts: list[list[tuple[int, int, int]]]) -> None:
    everyone = [row for part in parts for row in part]
    merged = merge(histogram_of(part) for part in parts)
    assert merged == histogram_of(everyone)
    assert cuts_of(5, merged) == cuts_of(5, histogram_of(everyone))
    if everyone:
        check_metric([r[0] for r in everyone], cuts_of(5, merged).recency_day)


def test_merge_of_nothing() -> None:
    assert merge([]) == Histogram()
