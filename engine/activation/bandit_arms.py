"""A bandit experiment's arm counts as a decision at some event time may read them.

A bandit decision must not read anything that differs between workers, restarts or replays, so
it reads no live counter: its arm counts are the treated outcomes of its experiment tallied in
the **sealed model snapshot** its event time reads (``engine.stream.model_gate``; the learner
tallies decision outcomes exactly once by period, ``models.outcome_messages``). The allocation
therefore moves once per model period (a day by default), from outcomes known one to two periods
earlier: periodic re-allocation, as Braze (twice a day) and GrowthBook (at most every 15 minutes)
do, in event time. The arm is then drawn with the decision id's hash
(``engine.activation.experiments.bandits.choose``), so a redelivered event draws the same arm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.activation.experiments.assignment import ExperimentSpec
from engine.activation.experiments.bandits import ArmStats, BanditState

if TYPE_CHECKING:
    from engine.stream.model_gate import VersionModels

_CACHED = 1024


class BanditArms:
    """Arm counts per (snapshot version, experiment), from the snapshot a moment reads."""

    def __init__(self, models: Callable[[float], VersionModels] | None) -> None:
        """``models``: the snapshot a moment reads (None: no snapshots, every arm counts zero)."""
        self._models = models
        self._cache: dict[tuple[int, str, tuple[str, ...]], BanditState] = {}

    def state(self, moment: float, experiment: ExperimentSpec) -> BanditState:
        """The counts of ``experiment``'s arms (treated outcomes: outcomes and conversions)."""
        arms = experiment.arms
        if self._models is None:
            return BanditState({arm: ArmStats() for arm in arms})
        models = self._models(moment)
        key = (models.version, experiment.name, arms)
        state = self._cache.get(key)
        if state is None:
            counts = {arm: [0, 0] for arm in arms}
            for tally in models.snapshot.outcomes:
                if (
                    tally.experiment == experiment.name
                    and tally.group == "treated"
                    and tally.variant in counts
                ):
                    counts[tally.variant][0] += tally.outcomes
                    counts[tally.variant][1] += tally.conversions
            state = BanditState({arm: ArmStats(n, float(s)) for arm, (n, s) in counts.items()})
            if len(self._cache) >= _CACHED:
                self._cache.clear()
            self._cache[key] = state
        return state
