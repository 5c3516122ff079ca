"""What a batch's commit round trip updates besides the customer records: the due index, the
population placements, the partitions' positions and the segment aggregates."""

from __future__ import annotations

from engine.rules.model import RuleSet
from engine.snapshots.population import Placement
from engine.stream.aggregates import Move, SegmentAggregates
from engine.stream.customer_run import UNPLACED, CustomerOutcome
from engine.stream.due_index import DueIndex
from engine.stream.population_gate import PopulationGate
from engine.stream.watermarks import PartitionClock


def queue_indexes(
    pipe: object,
    *,
    outcomes: dict[str, CustomerOutcome],
    due: DueIndex,
    population: PopulationGate,
    clock: PartitionClock,
    positions: dict[int, tuple[float, int]],
    aggregates: SegmentAggregates,
    rules: RuleSet,
) -> None:
    """Queue every index update of ``outcomes`` on ``pipe`` (the commit's pipeline)."""
    by_partition: dict[int, dict[str, float | None]] = {}
    for customer_id, outcome in outcomes.items():
        if outcome.write is None:
            continue
        by_partition.setdefault(outcome.partition, {})[customer_id] = outcome.due
    for partition, moments in by_partition.items():
        due.queue(pipe, partition, moments)
    placed: dict[int, dict[str, Placement | None]] = {}
    for customer_id, outcome in outcomes.items():
        if outcome.population is not UNPLACED:
            placed.setdefault(outcome.partition, {})[customer_id] = outcome.population  # type: ignore[assignment]
    for partition, placements in placed.items():
        population.queue_placements(pipe, partition, placements)
    if positions:
        clock.queue_positions(pipe, positions)
    moves: dict[str, list[Move]] = {family.name: [] for family in rules.families}
    for customer_id, outcome in outcomes.items():
        for name, segment in outcome.placements.items():
            if name in moves:
                moves[name].append((customer_id, segment, outcome.revenue_minor))
    for family in rules.families:
        aggregates.queue_moves(pipe, family, moves[family.name])
