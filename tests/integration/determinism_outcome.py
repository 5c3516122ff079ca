"""What a run of ``test_determinism.py`` decided, and how two runs' decisions differ.

An ``Outcome`` holds every customer's feature state and memberships and every change event,
action decision and decision outcome a run emitted (decoded from its schema v1 payload);
``describe`` tells compactly, per rule family, where another run's outcome departs from the
reference's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from engine.codecs import decode_msgpack
from features.state import CustomerState
from models.label_messages import MalformedLabel, decode_label


class Change(NamedTuple):
    """What a segment-change event says, without its wall-clock and score fields."""

    customer_id: str
    family: str
    source: str | None
    to: str | None
    cause: str


@dataclass
class Outcome:
    """What one run decided: every customer's state and memberships, every change emitted."""

    states: dict[str, CustomerState | None]
    memberships: dict[str, dict[str, tuple[str, float]]]
    changes: dict[str, Change]
    sent_twice: int = 0
    """Change events on the topic more than once (same id): allowed, so only counted."""
    notes: dict[str, int] = field(default_factory=dict)
    """Worker counters and the like, shown next to a difference."""
    actions: dict[str, str] = field(default_factory=dict)
    """Action decisions by action id: their schema v1 map without the wall-clock ``emitted_ts``."""
    outcomes: dict[str, str] = field(default_factory=dict)
    """Decision outcomes by outcome id (their whole schema v1 map): what lift is computed from."""
    labels: dict[str, str] = field(default_factory=dict)
    """Resolved labels by label id (every field of the label message): what the learner learns."""
    tallies: dict[int, str] = field(default_factory=dict)
    """Per sealed model snapshot version, its decision-outcome tallies (what bandits read)."""


def _change_of(payload: bytes) -> tuple[str, Change]:
    wire = decode_msgpack(payload)
    cause = wire["cause"]
    where = f"tick {cause['tick']}" if "tick" in cause else f"offset {cause['offset']}"
    change = Change(
        wire["customer_id"], wire["family"], wire["from"], wire["to"], f"p{cause['partition']} {where}"
    )
    return wire["change_id"], change


def add_change(outcome: Outcome, payload: bytes) -> None:
    """Add one change event (schema v1 msgpack) to ``outcome``; a repeated id is counted."""
    change_id, change = _change_of(payload)
    if change_id in outcome.changes:
        outcome.sent_twice += 1
    outcome.changes[change_id] = change


def add_action(outcome: Outcome, payload: bytes) -> None:
    """Add one action decision (schema v1 msgpack), keyed by its id; the wall clock left out."""
    wire = decode_msgpack(payload)
    wire.pop("emitted_ts")
    outcome.actions[wire["action_id"]] = repr(sorted(wire.items()))


def add_outcome(outcome: Outcome, payload: bytes) -> None:
    """Add one decision outcome (schema v1 msgpack), keyed by its id."""
    wire = decode_msgpack(payload)
    outcome.outcomes[wire["outcome_id"]] = repr(sorted(wire.items()))


def add_label(outcome: Outcome, payload: bytes) -> None:
    """Add one resolved label of the labels topic, keyed by its id; the topic's other messages
    (the learner's outcome tallies) are not labels and are left out."""
    try:
        label = decode_label(payload)
    except MalformedLabel:
        return
    outcome.labels[label.label_id] = repr(label)


def accounted(outcome: Outcome) -> int:
    """How many events the stored states account for (applied or dropped as too late)."""
    return sum(s.events + s.late_dropped for s in outcome.states.values() if s is not None)


def _segment(outcome: Outcome, customer_id: str, family: str) -> str | None:
    membership = outcome.memberships.get(customer_id, {}).get(family)
    return None if membership is None else membership[0]


def _state_fields(a: CustomerState | None, b: CustomerState | None) -> str:
    if a is None or b is None:
        return "missing" if b is None else "unexpected"
    da, db = a.to_dict(), b.to_dict()
    return ",".join(name for name in da if da[name] != db[name])


def _show(change_id: str, change: Change) -> str:
    return (
        f"{change.customer_id} {change.family} {change.source}->{change.to} ({change.cause}, {change_id[:8]})"
    )


def describe(
    name: str, reference: Outcome, other: Outcome, families: Sequence[str], examples: int = 3
) -> str:
    """How ``other`` differs from ``reference``: per family, and a few examples of each kind."""
    customers = sorted(reference.states.keys() | other.states.keys())
    decided = Counter(c.family for c in reference.changes.values())
    per_family = ", ".join(f"{f} {decided[f]}" for f in families)
    lines = [
        f"{name} differs from the clean 1-worker run ({len(customers)} customers; its changes: {per_family}):"
    ]
    differ = [c for c in customers if reference.states.get(c) != other.states.get(c)]
    if differ:
        shown = "; ".join(
            f"{c}: {_state_fields(reference.states.get(c), other.states.get(c))}" for c in differ
        )
        lines.append(f"  features: {len(differ)} customers differ, e.g. {shown[:300]}")
    else:
        lines.append("  features: identical for every customer")
    for family in families:
        moved = [c for c in customers if _segment(reference, c, family) != _segment(other, c, family)]
        since = [
            c
            for c in customers
            if c not in moved
            and reference.memberships.get(c, {}).get(family) != other.memberships.get(c, {}).get(family)
        ]
        if not moved and not since:
            lines.append(f"  memberships {family}: identical")
        else:
            shown = ", ".join(
                f"{c} {_segment(reference, c, family)} vs {_segment(other, c, family)}"
                for c in moved[:examples]
            )
            lines.append(
                f"  memberships {family}: {len(moved)} customers end in another segment"
                f"{f' (e.g. {shown})' if moved else ''}, {len(since)} in the same one since another time"
            )
    missing = reference.changes.keys() - other.changes.keys()
    extra = other.changes.keys() - reference.changes.keys()
    if missing or extra:
        lines.append(
            f"  changes: {len(reference.changes)} in the reference,"
            f" {len(missing)} missing, {len(extra)} extra"
        )
        for family in families:
            m = sorted(i for i in missing if reference.changes[i].family == family)
            e = sorted(i for i in extra if other.changes[i].family == family)
            if m or e:
                lines.append(
                    f"    {family}: -{len(m)} +{len(e)}"
                    + "".join(f"\n      missing {_show(i, reference.changes[i])}" for i in m[:examples])
                    + "".join(f"\n      extra   {_show(i, other.changes[i])}" for i in e[:examples])
                )
    pairs = {(i, c.to) for i, c in reference.changes.items()} ^ {(i, c.to) for i, c in other.changes.items()}
    if pairs:
        lines.append(f"  (change_id, to) pairs in one run only: {len(pairs)}")
    for what in ("actions", "outcomes", "labels"):
        mine, theirs = getattr(reference, what), getattr(other, what)
        if mine != theirs:
            differing = sum(1 for i in mine.keys() & theirs.keys() if mine[i] != theirs[i])
            lines.append(
                f"  {what}: {len(mine)} in the reference, {len(mine.keys() - theirs.keys())} missing,"
                f" {len(theirs.keys() - mine.keys())} extra, {differing} with other content"
            )
            for i in sorted(mine.keys() - theirs.keys())[:examples]:
                lines.append(f"    missing {mine[i][:400]}")
            for i in sorted(theirs.keys() - mine.keys())[:examples]:
                lines.append(f"    extra   {theirs[i][:400]}")
    common = reference.tallies.keys() & other.tallies.keys()
    differing = sorted(k for k in common if reference.tallies[k] != other.tallies[k])
    if differing or not common:
        lines.append(
            f"  snapshot tallies: {len(common)} versions in both, {len(differing)} differ {differing[:5]}"
        )
    noted = ", ".join(f"{k.removeprefix('segflow_')}={v}" for k, v in other.notes.items())
    lines.append(f"  run: {noted}; change events sent twice: {other.sent_twice}")
    return "\n".join(lines)


def same(reference: Outcome, other: Outcome) -> bool:
    """True when both runs decided exactly the same."""
    return (
        reference.states == other.states
        and reference.memberships == other.memberships
        and reference.changes.keys() == other.changes.keys()
        and {(i, c.to) for i, c in reference.changes.items()} == {(i, c.to) for i, c in other.changes.items()}
        and reference.actions == other.actions
        and reference.outcomes == other.outcomes
        and reference.labels == other.labels
        and same_tallies(reference, other)
    )


def same_tallies(reference: Outcome, other: Outcome) -> bool:
    """Every model snapshot sealed in both runs tallies the same outcomes (and some are)."""
    common = reference.tallies.keys() & other.tallies.keys()
    return bool(common) and all(reference.tallies[k] == other.tallies[k] for k in common)
