"""The activation planner: cool-downs, caps, quiet hours, control groups and outcomes, by hand.

Every expected value is worked out here from the rules text and the calendar, not from the
planner: which entries may send under a 2-day cool-down and a 2-per-7-days cap, when 08:00 in
Madrid is in UTC in winter and in summer, which decision a purchase is credited to.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from activation_data import change, rules

from engine.activation.experiments.assignment import global_control, in_holdout
from engine.activation.ledger import ActionLedger
from engine.activation.planner import ActionPlanner
from engine.codecs import decode_msgpack
from engine.rules.loader import RulesError
from engine.rules.model import RuleSet
from engine.stream.batch_records import ACTION, OUTCOME, PendingChange
from features.event import Event

DAY = 86_400.0
NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC).timestamp()


def decisions(entries: list[PendingChange]) -> list[dict[str, object]]:
    return [decode_msgpack(e.payload) for e in entries if e.kind == ACTION]


def outcomes(entries: list[PendingChange]) -> list[dict[str, object]]:
    return [decode_msgpack(e.payload) for e in entries if e.kind == OUTCOME]


def planner_for(rule_set: RuleSet) -> ActionPlanner:
    return ActionPlanner(lambda: rule_set, lambda: 0.0)


CAPPED = """\
  frequency_caps:
    email: {max: 2, per_days: 7}
  actions:
    - name: winback
      channel: email
      cooldown_days: 2
"""


def test_cooldown_and_cap_allow_only_what_they_allow() -> None:
    planner, ledger = planner_for(rules(CAPPED)), ActionLedger()
    # day 0 send; day 1 within the cool-down; day 3 send (2nd in 7 days); day 5.5 the cap (sends on
    # days 0 and 3 are within the 7 days before); day 7.5 send (day 0 left the window).
    days = [0.0, 1.0, 3.0, 5.5, 7.5]
    got = [
        decisions(planner.on_change(ledger, change("c1", NOON + d * DAY, i)))[0] for i, d in enumerate(days)
    ]
    assert [d["decision"] for d in got] == ["send", "cooldown", "send", "frequency_cap", "send"]
    assert len({d["action_id"] for d in got}) == 5
    # A restart decodes the same ledger and decides the same next time.
    again = ActionLedger(ledger.encode())
    assert again.encode() == ledger.encode()
    assert decisions(planner.on_change(again, change("c1", NOON + 8 * DAY, 9)))[0]["decision"] == "cooldown"


QUIET = """\
  quiet_hours: {start: "21:00", end: "08:00", default_timezone: Europe/Madrid}
  actions:
    - name: winback
      channel: email
"""


@pytest.mark.parametrize(
    ("local_entry", "release_utc"),
    [
        # Winter (CET, UTC+1): 22:30 local is quiet; 08:00 the next morning is 07:00 UTC.
        (datetime(2026, 1, 10, 22, 30), datetime(2026, 1, 11, 7, 0, tzinfo=UTC)),
        # Summer (CEST, UTC+2): 06:15 local is quiet; 08:00 the same morning is 06:00 UTC.
        (datetime(2026, 7, 10, 6, 15), datetime(2026, 7, 10, 6, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_hold_and_release_at_the_window_end(local_entry: datetime, release_utc: datetime) -> None:
    planner, ledger = planner_for(rules(QUIET)), ActionLedger()
    ts = local_entry.replace(tzinfo=ZoneInfo("Europe/Madrid")).timestamp()
    assert planner.on_change(ledger, change("c1", ts)) == []  # held, nothing sent yet
    release = release_utc.timestamp()
    assert ledger.next_due() == release
    assert planner.advance(ledger, "c1", release - 1) == []
    released = decisions(planner.advance(ledger, "c1", release))
    assert [(d["decision"], d["send_ts"], d["event_ts"]) for d in released] == [
        ("send", round(release * 1000), round(ts * 1000))
    ]
    assert planner.advance(ledger, "c1", release + DAY) == []  # released once


def test_the_customers_own_time_zone_decides_quiet_hours() -> None:
    planner, ledger = planner_for(rules(QUIET)), ActionLedger()
    ts = datetime(2026, 1, 10, 22, 30, tzinfo=UTC).timestamp()  # 17:30 in New York: not quiet
    planner.on_event(ledger, "c1", Event("e1", "c1", "login", ts - 60, {"tz": "America/New_York"}))
    assert [d["decision"] for d in decisions(planner.on_change(ledger, change("c1", ts)))] == ["send"]


def nested(depth: int) -> object:
    value: object = "Europe/Madrid"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "tz", [nested(1000), "America/" + "x" * 5000, "x" * 300, 7, None, {"zone": "UTC"}, b"\xff"]
)
def test_a_time_zone_attribute_that_is_no_zone_falls_back_to_the_default(tz: object) -> None:
    # str() of the nested list raised RecursionError; ZoneInfo of a name over 255 bytes, OSError.
    planner, ledger = planner_for(rules(QUIET)), ActionLedger()
    ts = datetime(2026, 1, 10, 22, 30, tzinfo=UTC).timestamp()  # 23:30 in Madrid: quiet
    planner.on_event(ledger, "c1", Event("e1", "c1", "login", ts - 60, {"tz": tz}))
    assert planner.on_change(ledger, change("c1", ts)) == []  # held as in the default zone
    assert len(ledger.encode()) < 1000 or isinstance(tz, str)


CONTROLLED = """\
  global_control_percent: 5
  actions:
    - name: winback
      channel: email
      experiment:
        name: offer
        holdout_percent: 10
        variants: {plain: 1, discount: 3}
"""


def test_control_groups_get_no_action_and_variants_follow_their_weights() -> None:
    rule_set = rules(CONTROLLED)
    planner = planner_for(rule_set)
    experiment = rule_set.activation.actions["winback"].experiment
    assert experiment is not None
    got = {}
    for i in range(4000):
        cid = f"cust{i}"
        got[cid] = decisions(planner.on_change(ActionLedger(), change(cid, NOON)))[0]
    for cid, decision in got.items():
        if global_control(cid, 0.05, epoch="0"):
            assert decision["decision"] == "global_control" and decision["probability"] == 0.05
        elif in_holdout(experiment, cid):
            assert decision["decision"] == "control" and decision["variant"] == "control"
        else:
            assert decision["decision"] == "send"
    counts = Counter(d["variant"] if d["decision"] == "send" else d["decision"] for d in got.values())
    # Expected shares: global 5%; control 95% x 10% = 9.5%; plain 95% x 90% x 1/4 = 21.375%;
    # discount 64.125%. Each within 4 binomial standard deviations of 4,000 draws.
    for name, share in {
        "global_control": 0.05,
        "control": 0.095,
        "plain": 0.21375,
        "discount": 0.64125,
    }.items():
        sd = (4000 * share * (1 - share)) ** 0.5
        assert abs(counts[name] - 4000 * share) < 4 * sd, (name, counts)
    treated = next(d for d in got.values() if d["variant"] == "discount")
    assert treated["probability"] == pytest.approx(0.95 * 0.9 * 0.75)
    # Sticky: a fresh planner (a restart) puts each customer in the same group.
    fresh = planner_for(rules(CONTROLLED))
    for cid in list(got)[:200]:
        redo = decisions(fresh.on_change(ActionLedger(), change(cid, NOON + DAY, 1)))[0]
        assert (redo["decision"], redo["variant"]) == (got[cid]["decision"], got[cid]["variant"])


MEASURED = """\
  actions:
    - name: winback
      channel: email
      attribution_days: 14
"""


def test_an_outcome_inside_the_window_converts_and_a_closed_window_does_not() -> None:
    planner = planner_for(rules(MEASURED))
    bought, silent = ActionLedger(), ActionLedger()
    sent = decisions(planner.on_change(bought, change("c1", NOON)))[0]
    planner.on_change(silent, change("c2", NOON))
    purchase = Event(
        "p1", "c1", "purchase", NOON + 3 * DAY, {"amount": 25.5, "currency": "EUR", "product": "x"}
    )
    [credit] = outcomes(planner.on_event(bought, "c1", purchase))
    assert (credit["outcome_id"], credit["converted"], credit["revenue"]) == (sent["action_id"], True, 25.5)
    assert credit["outcome_ts"] == round((NOON + 3 * DAY) * 1000) and credit["group"] == "treated"
    assert planner.advance(bought, "c1", NOON + 30 * DAY) == []  # one outcome per decision
    assert planner.advance(silent, "c2", NOON + 14 * DAY - 1) == []
    [zero] = outcomes(planner.advance(silent, "c2", NOON + 14 * DAY))
    assert (zero["converted"], zero["revenue"], zero["outcome_ts"]) == (
        False,
        0.0,
        round((NOON + 14 * DAY) * 1000),
    )


def test_a_purchase_at_the_window_end_is_not_credited() -> None:
    planner, ledger = planner_for(rules(MEASURED)), ActionLedger()
    planner.on_change(ledger, change("c1", NOON))
    end = NOON + 14 * DAY
    assert planner.advance(ledger, "c1", end)[0].kind == OUTCOME  # the window closes first
    late = Event("p1", "c1", "purchase", end, {"amount": 5.0, "currency": "EUR", "product": "x"})
    assert planner.on_event(ledger, "c1", late) == []


def test_the_latest_open_decision_of_an_action_is_credited() -> None:
    planner, ledger = planner_for(rules(MEASURED)), ActionLedger()
    first = decisions(planner.on_change(ledger, change("c1", NOON, 0)))[0]
    second = decisions(planner.on_change(ledger, change("c1", NOON + 2 * DAY, 1)))[0]
    purchase = Event(
        "p1", "c1", "purchase", NOON + 3 * DAY, {"amount": 9.0, "currency": "EUR", "product": "x"}
    )
    [credit] = outcomes(planner.on_event(ledger, "c1", purchase))
    assert credit["outcome_id"] == second["action_id"]
    [closed] = outcomes(planner.advance(ledger, "c1", NOON + 14 * DAY))
    assert (closed["outcome_id"], closed["converted"]) == (first["action_id"], False)


def test_a_campaign_reward_needs_a_response_to_the_action() -> None:
    planner, ledger = (
        planner_for(rules(MEASURED.replace("attribution_days: 14", "reward: clicked"))),
        ActionLedger(),
    )
    planner.on_change(ledger, change("c1", NOON))
    other = Event(
        "r1",
        "c1",
        "campaign_response",
        NOON + 60,
        {"campaign": "spring", "variant": "a", "outcome": "clicked"},
    )
    assert planner.on_event(ledger, "c1", other) == []
    ours = Event(
        "r2",
        "c1",
        "campaign_response",
        NOON + 90,
        {"campaign": "winback", "variant": "a", "outcome": "clicked"},
    )
    assert [o["converted"] for o in outcomes(planner.on_event(ledger, "c1", ours))] == [True]


@pytest.mark.parametrize(
    ("activation", "actions", "problem"),
    [
        (MEASURED, "nope", "unknown action 'nope'"),
        (MEASURED.replace("email", "sms"), "winback", "unknown channel 'sms'"),
        (CONTROLLED.replace("global_control_percent: 5", "global_control_percent: 20"), "winback", "1-15"),
        (
            CONTROLLED.replace("variants:", "bandit: {floor: 0.1}\n        variants:"),
            "winback",
            "need a bandit",
        ),
        (
            CONTROLLED.replace("variants:", "policy: ucb\n        bandit: {floor: 0.6}\n        variants:"),
            "winback",
            "floor 0.6 times 2 variants exceeds 1",
        ),
        (CONTROLLED.replace("variants:", "policy: greedy\n        variants:"), "winback", "unknown policy"),
        (QUIET.replace('"08:00"', '"8am"'), "winback", "HH:MM"),
        (QUIET.replace("Europe/Madrid", "Mars/Olympus"), "winback", "unknown time zone"),
        (CAPPED.replace("max: 2", "max: 0"), "winback", "whole number >= 1"),
    ],
)
def test_activation_errors_are_one_line(activation: str, actions: str, problem: str) -> None:
    with pytest.raises(RulesError) as caught:
        rules(activation, actions)
    message = str(caught.value)
    assert problem in message and "\n" not in message and message.startswith("<string>:")
