"""Pure evaluation of rule families with hysteresis, and when time alone could change a result.

Resolution rule, per family, for a customer at event time ``as_of`` (epoch seconds):

1. ``candidate`` is the first segment, in priority order, whose ``enter`` holds (None if none).
2. If the customer is currently in segment S of the family (S still exists in the rules) and S
   is *retained*, i.e. ``as_of < since + S.min_dwell_seconds`` or S's exit condition does not
   hold (exit defaults to ``not enter``), the result is S, unless ``candidate`` has a strictly
   higher priority than S and S's dwell is over, in which case the result is ``candidate``.
3. Otherwise the result is ``candidate`` (None: the customer leaves the family).
4. ``since`` is ``as_of`` when the segment changes, else unchanged. A current segment that no
   longer exists in the rules (rules reloaded) counts as no segment.

With no dwell and the default exit this is plain "first match wins". Reasons: entering a
segment gives the conditions of its ``enter`` that held (rule ``<family>.<segment>``); leaving
to no segment gives the conditions of S's exit that held (rule ``<family>.<S>.exit``). A decision
that does not change carries a cheap reason without conditions; :func:`explain_membership` gives
the full one when wanted. Labels: the first ``labels`` entry whose ``when`` holds, else the
segment's ``label`` (which defaults to its name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.rules.expressions import Condition, Variables
from engine.rules.model import Family, RuleSet, Segment

Crossing = Callable[[str, float | None], float | None]
CrossingNames = tuple[tuple[str, tuple[float | None, ...]], ...]
Earliest = Callable[[CrossingNames, float], float | None]
_SET = object.__setattr__


@dataclass(frozen=True, slots=True)
class Membership:
    """A customer's current segment in one family."""

    segment: str
    since: float  # event time (epoch seconds) it entered


@dataclass(frozen=True, init=False)
class FamilyDecision:
    """The segment a family puts a customer in at one moment, and why."""

    family: str
    previous: str | None
    segment: str | None  # None: in no segment of this family
    label: str | None
    since: float | None
    reason: dict[str, Any]

    # One per family per event. A frozen dataclass's own __init__ calls object.__setattr__ per
    # field (slots or not); handing the instance its whole __dict__ at once costs half as much.
    def __init__(
        self,
        family: str,
        previous: str | None,
        segment: str | None,
        label: str | None,
        since: float | None,
        reason: dict[str, Any],
    ) -> None:
        _SET(
            self,
            "__dict__",
            {
                "family": family,
                "previous": previous,
                "segment": segment,
                "label": label,
                "since": since,
                "reason": reason,
            },
        )

    @property
    def changed(self) -> bool:
        """Whether the customer moved to another segment (or into or out of the family)."""
        return self.segment != self.previous

    def membership(self) -> Membership | None:
        """The membership to store after this decision (None: in no segment)."""
        if self.segment is None or self.since is None:
            return None
        return Membership(self.segment, self.since)


def _reason(rule: str, subject: str, conditions: list[Condition]) -> dict[str, Any]:
    because = " and ".join(c.text() for c in conditions) or "no condition"
    return {
        "rule": rule,
        "conditions": [c.as_dict() for c in conditions],
        "text": f"{subject} because {because}",
    }


def _enter(
    family: Family, segment: Segment, previous: str | None, v: Variables, as_of: float
) -> FamilyDecision:
    _, conditions = segment.enter.explain(v)
    reason = _reason(f"{family.name}.{segment.name}", f"{family.name}={segment.name}", conditions)
    label = segment.label_of(v) if segment.labels else segment.label
    return FamilyDecision(family.name, previous, segment.name, label, as_of, reason)


def _stay(family: Family, segment: Segment, current: Membership, v: Variables) -> FamilyDecision:
    reason = {
        "rule": f"{family.name}.{segment.name}",
        "conditions": [],
        "text": f"{family.name}={segment.name} unchanged",
    }
    label = segment.label_of(v) if segment.labels else segment.label
    return FamilyDecision(family.name, segment.name, segment.name, label, current.since, reason)


def _leave(family: Family, held: Segment | None, previous: str, v: Variables) -> FamilyDecision:
    rule = f"{family.name}.{previous}.exit"
    if held is None:
        reason = {
            "rule": rule,
            "conditions": [],
            "text": f"{family.name}=none because segment {previous!r} is no longer in the rules",
        }
    else:
        _, conditions = held.exit_condition.explain(v)
        reason = _reason(rule, f"{family.name}=none", conditions)
    return FamilyDecision(family.name, previous, None, None, None, reason)


_STAY, _ENTER, _LEAVE, _NONE = range(4)


def _resolve(
    family: Family, variables: Variables, current: Membership | None, as_of: float
) -> tuple[int, Segment | None]:
    """Which way the resolution rule goes (see the module docstring), and the segment it names:
    the one stayed in or entered, or the one left (None when it left the rules)."""
    held = None if current is None else family.segment(current.segment)
    if held is not None and current is not None:
        if current.since <= as_of < current.since + held.min_dwell_seconds:
            return _STAY, held
        if not held.exit_condition.function(variables):
            candidate = family.first_entering(variables, held.priority)
            return (_STAY, held) if candidate is None else (_ENTER, candidate)
    candidate = family.first_entering(variables, len(family.segments))
    if candidate is None:
        return (_NONE, None) if current is None else (_LEAVE, held)
    if candidate is held and current is not None:
        return _STAY, held  # an exit that overlaps enter: still in
    return _ENTER, candidate


def evaluate_family(
    family: Family, variables: Variables, current: Membership | None, as_of: float
) -> FamilyDecision:
    """The decision of ``family`` for ``variables`` at ``as_of`` given the current membership.

    See the module docstring for the resolution rule.
    """
    way, segment = _resolve(family, variables, current, as_of)
    previous = None if current is None else current.segment
    if way == _ENTER:
        return _enter(family, segment, previous, variables, as_of)  # type: ignore[arg-type]
    if way == _STAY:
        return _stay(family, segment, current, variables)  # type: ignore[arg-type]
    if way == _LEAVE:
        return _leave(family, segment, previous, variables)  # type: ignore[arg-type]
    none = {"rule": f"{family.name}.none", "conditions": [], "text": f"{family.name}=none"}
    return FamilyDecision(family.name, None, None, None, None, none)


def _variables_of(rules: RuleSet, variables: Variables) -> Variables:
    values_of = getattr(variables, "values_of", None)
    return variables if values_of is None else values_of(rules.expression_names)


def evaluate_rules(
    rules: RuleSet, variables: Variables, memberships: Mapping[str, Membership], as_of: float
) -> list[FamilyDecision]:
    """One decision per family of ``rules``, in file order; ``memberships`` maps family -> current.

    Variables with a ``values_of(names)`` method (``engine.segmentation.RuleVariables``) are read
    once, for the names the rules' expressions read, into a dict every family then reads from.
    """
    values = _variables_of(rules, variables)
    return [evaluate_family(family, values, memberships.get(family.name), as_of) for family in rules.families]


def changed_decisions(
    rules: RuleSet, variables: Variables, memberships: Mapping[str, Membership], as_of: float
) -> list[FamilyDecision]:
    """The decisions of ``evaluate_rules`` that change a membership, in file order.

    The per-event path: most decisions keep the customer where they are, and those are not built.
    """
    values = _variables_of(rules, variables)
    changes = []
    for family in rules.families:
        current = memberships.get(family.name)
        way, segment = _resolve(family, values, current, as_of)
        # Entering is always another segment (the one held is stayed in) and leaving always
        # leaves one: these two ways are exactly the changes.
        if way == _ENTER:
            previous = None if current is None else current.segment
            changes.append(_enter(family, segment, previous, values, as_of))  # type: ignore[arg-type]
        elif way == _LEAVE:
            changes.append(_leave(family, segment, current.segment, values))  # type: ignore[union-attr]
    return changes


def explain_membership(family: Family, membership: Membership, variables: Variables, as_of: float) -> dict:
    """The full reason a customer is (still) in ``membership.segment``: what keeps them there.

    Within the dwell: the dwell; otherwise the facts that make the exit condition false. For a
    segment that is no longer in the rules, a reason saying so without conditions.
    """
    segment = family.segment(membership.segment)
    subject = f"{family.name}={membership.segment}"
    if segment is None:
        return {
            "rule": f"{family.name}.{membership.segment}",
            "conditions": [],
            "text": f"{subject} (removed)",
        }
    until = membership.since + segment.min_dwell_seconds
    if as_of < until:
        condition = Condition("as_of", "<", until, as_of)
        return _reason(f"{family.name}.{segment.name}.dwell", subject, [condition])
    held, conditions = segment.exit_condition.explain(variables)
    if held:
        return _reason(f"{family.name}.{segment.name}.exit", f"{family.name}=none", conditions)
    return _reason(f"{family.name}.{segment.name}", subject, conditions)


def next_due(
    rules: RuleSet,
    variables: Variables,
    memberships: Mapping[str, Membership],
    as_of: float,
    crossing: Crossing,
    earliest: Earliest | None = None,
) -> float | None:
    """The earliest event time after ``as_of`` at which time alone could change a decision.

    ``crossing(name, threshold)`` must give the earliest time > ``as_of`` at which variable
    ``name`` may cross ``threshold`` with no new event for the customer (threshold None: may
    change at all), or None if it does not change with time. The result is the minimum over
    the rule set's precomputed crossing points (see ``RuleSet.crossing_points``: a bare variable
    compared with a constant gives that threshold, a variable used any other way gives None) and,
    for each current membership with a dwell, the dwell's end. Times <= ``as_of`` are ignored;
    None means nothing is due. ``variables`` are the values ``crossing`` is assumed to close
    over; they are not read here.

    ``earliest(points, after)``, if given, must be the earliest ``crossing(name, t)`` later than
    ``after`` over ``points``, ``(name, thresholds)`` pairs (None if none); it is then asked once,
    for ``RuleSet.crossing_names``, instead of ``crossing`` once per point, with the same result
    (``engine.segmentation.TimeModel.earliest``).
    """
    best: float | None = None
    if earliest is None:
        for name, threshold in rules.crossing_points:
            due = crossing(name, threshold)
            if due is not None and due > as_of and (best is None or due < best):
                best = due
    else:
        best = earliest(rules.crossing_names, as_of)
    for family in rules.dwell_families:
        membership = memberships.get(family.name)
        if membership is None:
            continue
        segment = family.segment(membership.segment)
        if segment is None or segment.min_dwell_seconds <= 0:
            continue
        due = membership.since + segment.min_dwell_seconds
        if due > as_of and (best is None or due < best):
            best = due
    return best
