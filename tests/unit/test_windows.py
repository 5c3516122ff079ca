"""Several windows in one pass equal one window at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from features.windows import window_pair_sums, window_pair_sums_of, window_sum, window_sums


@given(
    st.dictionaries(st.integers(19_000, 19_100), st.integers(0, 50), max_size=40),
    st.integers(18_990, 19_110),
    st.lists(st.integers(1, 120), min_size=1, max_size=4),
)
def test_window_sums_equal_window_sum(buckets: dict[int, int], today: int, lengths: list[int]) -> None:
    assert window_sums(buckets, today, lengths) == [window_sum(buckets, today, n) for n in lengths]


@given(
    st.dictionaries(
        st.integers(19_000, 19_100), st.lists(st.integers(0, 10_000), min_size=2, max_size=2), max_size=40
    ),
    st.integers(18_990, 19_110),
    st.lists(st.integers(1, 120), min_size=1, max_size=4),
)
def test_window_pair_sums_of_equal_window_pair_sums(
    buckets: dict[int, list[int]], today: int, lengths: list[int]
) -> None:
    expected = [window_pair_sums(buckets, today, n) for n in lengths]
    assert window_pair_sums_of(buckets, today, lengths) == expected
