"""Lift per experiment, variant and segment, from outcome records (``engine.activation.outcomes``).

Outcomes are deduplicated by ``outcome_id`` (one per decision), so a topic that holds some twice
after a redelivery gives the same table. Two comparisons are made:

* **experiment**: each variant against the experiment's holdout (``control``), with the
  sample-ratio check of the exposures against the allocation the rules file declares;
* **global control**: per action, every treated decision against the global control group.

An outcome is credited to the latest decision of its action whose window holds its event time
(``engine.activation.planner``); rates are conversions per decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.activation.experiments.assignment import CONTROL, ExperimentSpec, variant_probabilities
from engine.activation.experiments.lift import (
    ArmCounts,
    ArmLift,
    SampleRatioCheck,
    arm_lift,
    sample_ratio_mismatch,
)
from engine.activation.outcomes import Outcome

ALL_SEGMENTS = "*"


@dataclass(frozen=True, slots=True)
class LiftRow:
    """One treated arm against its control, in one segment (``*``: all)."""

    comparison: str
    """``experiment <name>`` or ``global control <action>``."""
    segment: str
    arm: str
    lift: ArmLift
    control_exposures: int


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


def _counts(outcomes: list[Outcome]) -> ArmCounts:
    return ArmCounts(len(outcomes), sum(o.converted for o in outcomes), sum(o.revenue for o in outcomes))


def lift_table(
    outcomes: Iterable[Outcome],
    experiments: Mapping[str, ExperimentSpec],
    experiment: str | None = None,
    segment: str | None = None,
    sequential: bool = False,
) -> LiftTable:
    """The lift rows of ``outcomes`` (optionally one experiment's, one segment's)."""
    kept, repeats = unique(outcomes)
    if segment is not None:
        kept = [o for o in kept if o.segment == segment]
    rows: list[LiftRow] = []
    checks: dict[str, SampleRatioCheck] = {}
    names = sorted({o.experiment for o in kept if o.experiment is not None})
    for name in names if experiment is None else [n for n in names if n == experiment]:
        members = [o for o in kept if o.experiment == name and o.group != "global_control"]
        for seg in [ALL_SEGMENTS, *sorted({o.segment for o in members})]:
            scoped = members if seg == ALL_SEGMENTS else [o for o in members if o.segment == seg]
            control = [o for o in scoped if o.group == CONTROL]
            arms = sorted({o.variant or "" for o in scoped if o.group == "treated"})
            for arm in arms:
                treated = [o for o in scoped if o.group == "treated" and o.variant == arm]
                lift = arm_lift(arm, _counts(treated), _counts(control), sequential=sequential)
                rows.append(LiftRow(f"experiment {name}", seg, arm, lift, len(control)))
        spec = experiments.get(name)
        if spec is not None:
            observed: dict[str, int] = {}
            for o in members:
                arm = CONTROL if o.group == CONTROL else o.variant or ""
                observed[arm] = observed.get(arm, 0) + 1
            allocation = variant_probabilities(spec)
            if len(allocation) >= 2 and set(observed) <= set(allocation):
                checks[name] = sample_ratio_mismatch(observed, allocation)
    if experiment is None:
        for action in sorted({o.action for o in kept}):
            mine = [o for o in kept if o.action == action]
            held = [o for o in mine if o.group == "global_control"]
            if held:
                treated = [o for o in mine if o.group == "treated"]
                lift = arm_lift("treated", _counts(treated), _counts(held), sequential=sequential)
                rows.append(LiftRow(f"global control {action}", ALL_SEGMENTS, "treated", lift, len(held)))
    return LiftTable(rows, checks, len(kept), repeats)
