"""Decision outcomes through the learner: tallied once, by sealed period, in every snapshot after.

Expected tallies are counted here from the raw messages (first copy of each outcome id, due
before the sealed period's end), never with ``models.learner``; a shuffled, duplicated feed and
a restore from a checkpoint midway must seal the same bytes.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from learner_data import DAY, T0, make_labels

from models.config import ModelConfig
from models.label_messages import encode_label
from models.learner import Learner, encode_snapshot
from models.outcome_messages import (
    OUTCOME_KIND,
    OUTCOME_SCHEMA,
    MalformedOutcome,
    OutcomeMessage,
    decode_outcome,
    encode_outcome,
    message_kind,
)
from models.registry import model_specs
from models.snapshots import decode_snapshot

NAMES = ("a", "b", "c", "d", "e", "f")
CONFIG = ModelConfig(
    specs=tuple(model_specs(("savings",), churn_days=5, clv_days=8, propensity_days=5)),
    input_names=NAMES,
)
KEY = b"test-key"


def outcome(
    i: int, day: float, group: str = "treated", variant: str = "a", converted: bool = False
) -> OutcomeMessage:
    return OutcomeMessage(
        schema=OUTCOME_SCHEMA,
        kind=OUTCOME_KIND,
        outcome_id=f"d{i}",
        action="winback",
        experiment="exp",
        policy="thompson",
        group=group,
        variant=variant if group == "treated" else "",
        segment="lapsing",
        converted=converted,
        revenue=12.5 if converted else 0.0,
        due_ts=T0 + day * DAY,
    )


def stream(seed: int = 3, count: int = 400) -> list[OutcomeMessage]:
    rng = random.Random(seed)
    made = []
    for i in range(count):
        group = rng.choice(["treated", "treated", "treated", "control", "global_control"])
        made.append(outcome(i, rng.uniform(0, 6), group, rng.choice("ab"), rng.random() < 0.2))
    return made


def expected(messages: list[OutcomeMessage], through_day: int) -> dict[tuple[str, ...], list[float]]:
    first: dict[str, OutcomeMessage] = {}
    for m in messages:
        first.setdefault(m.outcome_id, m)
    tallies: dict[tuple[str, ...], list[float]] = {}
    for m in first.values():
        if m.due_ts >= T0 + (through_day + 1) * DAY:
            continue
        key = (m.action, m.experiment, m.segment, m.group, m.variant)
        counts = tallies.setdefault(key, [0, 0, 0.0])
        counts[0] += 1
        counts[1] += int(m.converted)
        counts[2] += m.revenue
    return tallies


def tallies_of(blob: bytes) -> dict[tuple[str, ...], list[float]]:
    snapshot = decode_snapshot(blob, KEY)
    return {
        (t.action, t.experiment, t.segment, t.group, t.variant): [t.outcomes, t.conversions, t.revenue]
        for t in snapshot.outcomes
    }


def seal(learner: Learner, through_day: int) -> dict[int, bytes]:
    version = int((T0 + through_day * DAY) // DAY)
    return {k: encode_snapshot(s) for k, s in learner.seal_through(version)}


def test_outcomes_are_tallied_once_by_their_sealed_period() -> None:
    messages = stream()
    labels = make_labels(CONFIG, 60, seed=4, days=5)
    learner = Learner(CONFIG, DAY, KEY)
    for m in labels:
        learner.offer(encode_label(m))
    results = [learner.offer(encode_outcome(m)) for m in messages + messages[:50]]
    assert Counter(results) == {"buffered": 400, "duplicate": 50}
    made = seal(learner, 3)
    last = made[max(made)]
    assert tallies_of(last) == expected(messages, 3)
    assert sum(n for n, _, _ in expected(messages, 3).values()) == learner.counts.outcomes
    # An outcome of a sealed period arriving again is late: counted, never tallied twice.
    assert learner.offer(encode_outcome(messages[0])) in ("late", "duplicate")
    after = seal(learner, 6)
    assert tallies_of(after[max(after)]) == expected(messages, 6)


def test_arrival_order_copies_and_a_restore_midway_seal_the_same_bytes() -> None:
    messages = stream(seed=9)
    straight = Learner(CONFIG, DAY, KEY)
    for m in messages:
        straight.offer(encode_outcome(m))
    reference = seal(straight, 6)

    shuffled = messages + messages[::3]
    random.Random(1).shuffle(shuffled)
    half = len(shuffled) // 2
    first = Learner(CONFIG, DAY, KEY)
    for m in shuffled[:half]:
        first.offer(encode_outcome(m))
    resumed, _ = Learner.restore(CONFIG, DAY, KEY, first.dump())
    for m in shuffled[half:]:
        resumed.offer(encode_outcome(m))
    early = seal(resumed, 2)
    assert resumed.offer(encode_outcome(min(messages, key=lambda m: m.due_ts))) == "late"
    later = seal(resumed, 6)
    assert {**early, **later} == reference


def test_the_kind_tells_outcomes_from_labels_and_bad_outcomes_are_refused() -> None:
    label = make_labels(CONFIG, 1, seed=1)[0]
    assert message_kind(encode_label(label)) == "label"
    assert message_kind(encode_outcome(outcome(1, 0.5))) == OUTCOME_KIND
    assert message_kind(b"\xc1 not msgpack") == "label"
    bad_group = encode_outcome(outcome(1, 0.5)).replace(b"treated", b"treatex")
    with pytest.raises(MalformedOutcome, match="unknown group"):
        decode_outcome(bad_group)
    learner = Learner(CONFIG, DAY, KEY)
    assert learner.offer(bad_group) == "malformed"
    assert learner.counts.malformed == 1
