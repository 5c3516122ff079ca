"""Which sealed snapshots a batch's decisions read, and whether they are loaded yet."""

from __future__ import annotations

from collections.abc import Iterable

from engine.stream.customer_step import CustomerStep
from engine.stream.model_gate import ModelGate
from engine.stream.population_gate import PopulationGate
from features.redis_store import CustomerRecord


class SnapshotReadiness:
    """The model and population snapshots a moment's decision reads: loaded, or loadable now."""

    def __init__(self, models: ModelGate, population: PopulationGate, step: CustomerStep) -> None:
        self.models = models
        self.population = population
        self._step = step

    def loaded_for(self, ts: float) -> bool:
        """Whether ``ts``'s snapshots are loaded already (no await on the common path)."""
        if not self.models.is_loaded(self.models.version_of(ts)):
            return False
        return not self._step.reads_population() or self.population.is_sealed(self.population.version_of(ts))

    async def ready(self, ts: float) -> bool:
        """Whether a decision at ``ts`` can read its model and population snapshots now."""
        version = self.models.version_of(ts)
        if not (self.models.is_loaded(version) or await self.models.ensure(version, version)):
            return False
        if not self._step.reads_population():
            return True
        day = self.population.version_of(ts)
        return self.population.is_sealed(day) or await self.population.ensure(day, day)

    async def load(self, records: Iterable[CustomerRecord], latest: float, first: float | None) -> None:
        """Make sure every snapshot the customers' moments read is loaded (up to ``latest``'s)."""
        moments = [r.state.last_ts for r in records if r.state is not None]
        # A customer's newest event may be later than the chunk's (an out-of-order event is
        # judged at the customer's newest moment): its snapshots were sealed when it came.
        earliest = min((*moments, latest) if first is None else (*moments, first, latest))
        newest = max(moments, default=latest)
        gates: list[ModelGate | PopulationGate] = [self.models]
        if self._step.reads_population():
            gates.append(self.population)
        for gate in gates:
            low, high = gate.version_of(earliest), gate.version_of(max(newest, latest))
            if not await gate.ensure(low, high):
                raise RuntimeError(f"snapshot {high} was sealed, but an earlier one is not")
