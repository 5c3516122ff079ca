"""Lift per experiment, variant and segment, from outcome records (``engine.activation.outcomes``).

Outcomes are deduplicated by ``outcome_id`` (one per decision), so a topic that holds some twice
after a redelivery gives the same table. Two comparisons are made:

* **experiment**: each variant against the experiment's holdout (``control``), with the
  sample-ratio check of the exposures against the allocation the rules file declares (for a
  bandit, control against all treated: the holdout is its one fixed split; its arms' lifts pool
  decisions made under allocations that moved over time);
* **global control**: per action, every treated decision against the global control group.

An outcome is credited to the latest decision of its action whose window holds its event time
(``engine.activation.planner``); rates are conversions per decision.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from engine.activation.experiments.assignment import (
    CONTROL,
    GLOBAL_CONTROL,
    ExperimentSpec,
    variant_probabilities,
)
from engine.activation.experiments.lift import (
    ArmCounts,
    ArmLift,
    SampleRatioCheck,
    arm_lift,
    sample_ratio_mismatch,
)
from engine.activation.outcomes import Outcome
from models.outcome_messages import OutcomeTally

ALL_SEGMENTS = "*"
EXPERIMENT = "experiment"
"""``LiftRow.kind`` of a variant against its experiment's holdout (else ``GLOBAL_CONTROL``)."""


@dataclass(frozen=True, slots=True)
class LiftRow:
    """One treated arm against its control, in one segment (``*``: all)."""

    kind: str
    """``EXPERIMENT`` (a variant against the holdout) or ``GLOBAL_CONTROL`` (an action's treated
    decisions against the global control group)."""
    name: str
    """The experiment's name, or the action's."""
    segment: str
    arm: str
    lift: ArmLift
    control_exposures: int

    @property
    def comparison(self) -> str:
        """``experiment <name>`` or ``global control <action>``, as tables title it."""
        return f"{'experiment' if self.kind == EXPERIMENT else 'global control'} {self.name}"


@dataclass(frozen=True, slots=True)
class LiftTable:
    """Every comparison's rows, and the sample-ratio check of every experiment."""

    rows: list[LiftRow]
    ratio_checks: dict[str, SampleRatioCheck]
    outcomes: int
    duplicates: int


def unique(outcomes: Iterable[Outcome]) -> tuple[list[Outcome], int]:
    """Outcomes by id (the first of each), and how many repeats were dropped."""
    seen: dict[str, Outcome] = {}
    repeats = 0
    for outcome in outcomes:
        if outcome.outcome_id in seen:
            repeats += 1
        else:
            seen[outcome.outcome_id] = outcome
    return list(seen.values()), repeats


def tallies_of(outcomes: Iterable[Outcome]) -> list[OutcomeTally]:
    """Outcome records summed per (action, experiment, segment, group, variant), in key order;
    the form the learner seals (``models.outcome_messages``: "" for no experiment or variant,
    and a control group's variant is "")."""
    sums: dict[tuple[str, str, str, str, str], list[float]] = {}
    for o in outcomes:
        variant = (o.variant or "") if o.group == "treated" else ""
        key = (o.action, o.experiment or "", o.segment, o.group, variant)
        counts = sums.setdefault(key, [0, 0, 0.0])
        counts[0] += 1
        counts[1] += int(o.converted)
        counts[2] += o.revenue
    return [OutcomeTally(*key, int(n), int(c), float(r)) for key, (n, c, r) in sorted(sums.items())]


def _counts(tallies: Iterable[OutcomeTally]) -> ArmCounts:
    n = c = 0
    revenue = 0.0
    for tally in tallies:
        n, c, revenue = n + tally.outcomes, c + tally.conversions, revenue + tally.revenue
    return ArmCounts(n, c, revenue)


def lift_table(
    outcomes: Iterable[Outcome],
    experiments: Mapping[str, ExperimentSpec],
    experiment: str | None = None,
    segment: str | None = None,
    sequential: bool = False,
    bandits: Collection[str] = (),
) -> LiftTable:
    """The lift rows of ``outcomes`` (optionally one experiment's, one segment's).

    ``bandits``: the experiments whose variants a bandit allocates; their sample-ratio check
    compares control with all treated decisions (the holdout is the one fixed split).
    """
    kept, repeats = unique(outcomes)
    table = tallied_lift(tallies_of(kept), experiments, experiment, segment, sequential, bandits)
    return LiftTable(table.rows, table.ratio_checks, table.outcomes, repeats)


def tallied_lift(
    tallies: Sequence[OutcomeTally],
    experiments: Mapping[str, ExperimentSpec],
    experiment: str | None = None,
    segment: str | None = None,
    sequential: bool = False,
    bandits: Collection[str] = (),
) -> LiftTable:
    """``lift_table`` of outcomes already tallied (a sealed snapshot's, or ``tallies_of``)."""
    kept = [t for t in tallies if segment is None or t.segment == segment]
    rows: list[LiftRow] = []
    checks: dict[str, SampleRatioCheck] = {}
    names = sorted({t.experiment for t in kept if t.experiment})
    for name in names if experiment is None else [n for n in names if n == experiment]:
        members = [t for t in kept if t.experiment == name and t.group != GLOBAL_CONTROL]
        for seg in [ALL_SEGMENTS, *sorted({t.segment for t in members})]:
            scoped = [t for t in members if seg == ALL_SEGMENTS or t.segment == seg]
            control = _counts(t for t in scoped if t.group == CONTROL)
            for arm in sorted({t.variant for t in scoped if t.group == "treated"}):
                treated = _counts(t for t in scoped if t.group == "treated" and t.variant == arm)
                lift = arm_lift(arm, treated, control, sequential=sequential)
                rows.append(LiftRow(EXPERIMENT, name, seg, arm, lift, control.exposures))
        spec = experiments.get(name)
        if spec is not None:
            check = _ratio_check(members, spec, name in bandits)
            if check is not None:
                checks[name] = check
    if experiment is None:
        for action in sorted({t.action for t in kept}):
            mine = [t for t in kept if t.action == action]
            held = _counts(t for t in mine if t.group == GLOBAL_CONTROL)
            if held.exposures:
                treated = _counts(t for t in mine if t.group == "treated")
                lift = arm_lift("treated", treated, held, sequential=sequential)
                rows.append(LiftRow(GLOBAL_CONTROL, action, ALL_SEGMENTS, "treated", lift, held.exposures))
    return LiftTable(rows, checks, sum(t.outcomes for t in kept), 0)


def _ratio_check(members: list[OutcomeTally], spec: ExperimentSpec, bandit: bool) -> SampleRatioCheck | None:
    observed: dict[str, int] = {}
    for t in members:
        arm = CONTROL if t.group == CONTROL else ("treated" if bandit else t.variant)
        observed[arm] = observed.get(arm, 0) + t.outcomes
    allocation = variant_probabilities(spec)
    if bandit:
        allocation = {CONTROL: spec.holdout_fraction, "treated": 1.0 - spec.holdout_fraction}
    allocation = {arm: p for arm, p in allocation.items() if p > 0}
    if len(allocation) < 2 or not set(observed) <= set(allocation):
        return None
    return sample_ratio_mismatch(observed, allocation)
