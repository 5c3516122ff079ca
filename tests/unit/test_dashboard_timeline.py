"""The dashboard's fold of the changes and outcomes topics (no servers).

Sizes over time are worked out by hand below: who is where at the end of each day.
"""

from __future__ import annotations

import itertools
from typing import Any

from engine.activation.outcomes import Outcome
from engine.dashboard.timeline import DAY_MS, ChangeLog

T0 = 20_000 * DAY_MS  # day 20000, 00:00 UTC


def change(
    cid: str, family: str, source: str | None, target: str | None, day: int, n: int = 0
) -> dict[str, Any]:
    return {
        "change_id": f"{cid}-{family}-{day}-{n}",
        "customer_id": cid,
        "family": family,
        "from": source,
        "to": target,
        "event_ts": T0 + day * DAY_MS + 3_600_000,
    }


HISTORY = [
    change("a", "lifecycle", None, "new", 0),
    change("b", "lifecycle", None, "new", 0),
    change("a", "lifecycle", "new", "active", 2),
    change("c", "lifecycle", None, "active", 2),
    change("b", "lifecycle", "new", "lapsing", 3),
    change("a", "lifecycle", "active", None, 3),
    change("b", "rfm", None, "Champions", 1),
]


def test_sizes_over_time_replay_membership_by_event_time_in_any_order() -> None:
    # end of day 0: a, b new; day 1: same; day 2: b new, a c active; day 3: c active, b lapsing
    expected = {"new": [2, 2, 1, 0], "active": [0, 0, 2, 1], "lapsing": [0, 0, 0, 1]}
    for order in itertools.islice(itertools.permutations(HISTORY), 0, 5040, 97):
        log = ChangeLog()
        for record in order:
            log.apply_change(record)
        days, series = log.sizes_over_time("lifecycle")
        assert days == [20_000, 20_001, 20_002, 20_003]
        assert series == {k: expected[k] for k in sorted(expected)}
    # A customer's changes are on one partition, in order: the latest read is the current one.
    log = ChangeLog()
    for record in HISTORY:
        log.apply_change(record)
    assert log.sizes() == {"lifecycle": {"active": 1, "lapsing": 1}, "rfm": {"Champions": 1}}


def test_a_redelivered_change_is_counted_once() -> None:
    log = ChangeLog()
    for record in [*HISTORY, *HISTORY[:3]]:
        log.apply_change(record)
    assert log.duplicates == 3 and len(log.seen_ids) == len(HISTORY)
    assert log.transitions[("lifecycle", "new", "active")] == 1
    assert log.transitions[("lifecycle", "active", "(none)")] == 1
    assert log.top_transitions(1) == [(("lifecycle", "(none)", "new"), 2)]
    assert log.sizes_over_time("churn_risk") == ([20_000, 20_001, 20_002, 20_003], {})


def test_reset_forgets_everything() -> None:
    log = ChangeLog()
    for record in HISTORY:
        log.apply_change(record)
    log.apply_dead_letter({"reason": "too late"})
    log.reset()
    assert log == ChangeLog() and log.days() is None and log.sizes_over_time("lifecycle") == ([], {})


def test_outcomes_are_kept_by_id_and_malformed_ones_skipped() -> None:
    outcome = Outcome(
        "d1", "a", "winback", "email", "treated", "exp", "plain", 0.45, "ab", "lifecycle", "lapsing",
        (0, 1), True, 12.5, 1, "purchase",
    )  # fmt: skip
    log = ChangeLog()
    log.apply_outcome(outcome.to_wire())
    log.apply_outcome(outcome.to_wire())
    log.apply_outcome({"v": 99})
    assert list(log.outcomes) == ["d1"] and log.outcome_repeats == 1
