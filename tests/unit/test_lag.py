"""Consumer lag from offsets: lag, rates from two samples, time to catch up (engine.ops.lag)."""

from __future__ import annotations

import math

import pytest

from engine.cli.lag_cmd import render_rows
from engine.ops.lag import LagSample, PartitionOffsets, catch_up_seconds, lag_rows


def offsets(committed: int | None, end: int, partition: int = 0, start: int = 0) -> PartitionOffsets:
    return PartitionOffsets("events", partition, committed, end, start)


def test_lag_is_end_minus_committed() -> None:
    assert offsets(40, 100).lag == 60
    assert offsets(100, 100).lag == 0
    # read in that order (committed, then end) the commit cannot pass the end; if it did, no lag
    assert offsets(101, 100).lag == 0


def test_a_partition_never_committed_counts_from_the_log_start() -> None:
    assert offsets(None, 100).lag == 100
    assert offsets(None, 100, start=30).lag == 70  # retention removed the first 30
    assert offsets(None, 0).lag == 0


@pytest.mark.parametrize(
    ("lag", "consume", "produce", "expected"),
    [
        (0, None, None, 0.0),
        (0, 0.0, 50.0, 0.0),
        (100, None, None, None),
        (100, 60.0, 10.0, 2.0),
        (100, 10.0, 10.0, math.inf),
        (100, 5.0, 10.0, math.inf),
        (100, 0.0, 0.0, math.inf),
    ],
)
def test_catch_up_seconds(
    lag: int, consume: float | None, produce: float | None, expected: float | None
) -> None:
    assert catch_up_seconds(lag, consume, produce) == expected


def test_rates_from_two_samples() -> None:
    first = LagSample(10.0, (offsets(100, 500, 0), offsets(None, 50, 1), offsets(7, 7, 2)))
    second = LagSample(12.0, (offsets(300, 540, 0), offsets(20, 60, 1), offsets(7, 7, 2), offsets(0, 9, 3)))
    rows = {row.partition: row for row in lag_rows(second, first)}
    p0 = rows[0]
    assert (p0.committed, p0.end, p0.lag) == (300, 540, 240)
    assert p0.consume_rate == 100.0 and p0.produce_rate == 20.0
    assert p0.catch_up_seconds == pytest.approx(240 / 80)
    p1 = rows[1]  # committed for the first time between the samples: from the log start (0)
    assert (p1.lag, p1.consume_rate, p1.produce_rate) == (40, 10.0, 5.0)
    assert p1.catch_up_seconds == pytest.approx(8.0)
    p2 = rows[2]
    assert (p2.lag, p2.consume_rate, p2.produce_rate, p2.catch_up_seconds) == (0, 0.0, 0.0, 0.0)
    p3 = rows[3]  # not in the first sample: no rates
    assert (p3.lag, p3.consume_rate, p3.catch_up_seconds) == (9, None, None)
    assert [r.partition for r in lag_rows(second, first)] == [0, 1, 2, 3]


def test_one_sample_has_no_rates() -> None:
    [row] = lag_rows(LagSample(1.0, (offsets(3, 10),)))
    assert (row.lag, row.consume_rate, row.produce_rate, row.catch_up_seconds) == (7, None, None, None)


def test_render_rows() -> None:
    sample = LagSample(0.0, (offsets(300, 540, 0), offsets(None, 5, 1), offsets(9, 9, 2)))
    first = LagSample(-2.0, (offsets(100, 500, 0), offsets(None, 5, 1), offsets(9, 9, 2)))
    lines = render_rows("segflow", lag_rows(sample, first)).splitlines()
    assert lines[0].split() == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "END",
        "LAG",
        "RATE/S",
        "PRODUCED/S",
        "CATCH-UP",
    ]
    assert lines[1].split() == ["segflow", "events", "0", "300", "540", "240", "100.0", "20.0", "3s"]
    assert lines[2].split() == ["segflow", "events", "1", "-", "5", "5", "0.0", "0.0", "never"]
    assert lines[3].split() == ["segflow", "events", "2", "9", "9", "0", "0.0", "0.0", "0s"]
    assert lines[-1].split()[:3] == ["total", "lag", "245"]
