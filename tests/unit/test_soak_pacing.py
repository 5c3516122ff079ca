"""The soak's pacing schedule, sample times and sample parsing (pure, no servers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.ops.soak import SoakParams
from engine.ops.soak_report import due_events, per_customer, sample_times, vm_rss_bytes

STATUS = """Name:\tpython
State:\tS (sleeping)
VmPeak:\t  912344 kB
VmHWM:\t  270000 kB
VmRSS:\t  262144 kB
RssAnon:\t  200000 kB
Threads:\t5
"""


def test_event_i_is_due_at_i_over_the_rate() -> None:
    # 1,300/s: event 0 at 0 s, event 1,299 at 0.999 s, event 1,300 at exactly 1 s.
    assert due_events(0.0, 1300, 10_000) == 1
    assert due_events(0.999, 1300, 10_000) == 1299
    assert due_events(1.0, 1300, 10_000) == 1301
    assert due_events(2.5, 300, 10_000) == 751


def test_due_events_stops_at_the_total_and_before_the_start() -> None:
    assert due_events(30.0, 300, 9000) == 9000
    assert due_events(3600.0, 300, 9000) == 9000
    assert due_events(-0.1, 300, 9000) == 0
    assert due_events(5.0, 300, 0) == 0


@given(
    st.floats(0, 10_000, allow_nan=False),
    st.floats(0, 10_000, allow_nan=False),
    st.floats(0.5, 20_000),
)
def test_the_schedule_never_goes_back_and_keeps_the_rate(a: float, b: float, rate: float) -> None:
    early, late = sorted((a, b))
    total = 10**9
    assert due_events(early, rate, total) <= due_events(late, rate, total)
    # Over any stretch the pacer sends the rate times its length, give or take one event.
    sent = due_events(late, rate, total) - due_events(early, rate, total)
    assert abs(sent - (late - early) * rate) <= 1 + 1e-6 * late * rate


def test_sample_times_every_period_and_at_the_end() -> None:
    assert sample_times(30.0, 5.0) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert sample_times(1800.0, 30.0)[-3:] == [1740.0, 1770.0, 1800.0]
    assert len(sample_times(1800.0, 30.0)) == 61
    # A length that is not a multiple of the period ends with a sample at the end.
    assert sample_times(12.0, 5.0) == [0.0, 5.0, 10.0, 12.0]


def test_vm_rss_is_read_in_bytes() -> None:
    assert vm_rss_bytes(STATUS) == 262144 * 1024
    assert vm_rss_bytes("VmRSS:\t 1 kB\n") == 1024


def test_a_status_without_vm_rss_gives_none() -> None:
    # A zombie's status has no VmRSS line.
    assert vm_rss_bytes("Name:\tpython\nState:\tZ (zombie)\n") is None
    assert vm_rss_bytes("") is None


def test_bytes_per_customer() -> None:
    assert per_customer(10_000_000, 4000) == 2500.0
    assert per_customer(10_000_000, 0) is None
    assert per_customer(None, 4000) is None


def test_the_default_run_sends_the_rate_for_the_minutes() -> None:
    params = SoakParams()
    assert params.total_events == 30 * 60 * 1300 == 2_340_000
    # Three times the days of about two events per customer-day: 3 * 2,340,000 / 5,000.
    assert params.simulated_days() == 1404
    assert SoakParams(minutes=0.5, rate=300, customers=400).simulated_days() == 68


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"minutes": 0}, "--minutes must be positive"),
        ({"rate": 0}, "--rate must be between"),
        ({"customers": 0}, "--customers must be at least 1"),
        ({"sample_seconds": 0.5}, "--sample-seconds must be at least 1"),
        ({"minutes": 1, "sample_seconds": 30}, "at least three samples"),
        ({"partitions": 0}, "--partitions must be between"),
    ],
)
def test_parameters_that_cannot_work_are_refused_in_one_line(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        SoakParams(**changes).validate()  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
