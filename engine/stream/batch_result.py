"""What one batch (or tick) of the pipeline produced, and how its events were accounted for."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.output import DeadLetter
from engine.stream.batch_records import APPLIED, LABEL, PendingChange
from features.event import PositionedEvent

if TYPE_CHECKING:
    from engine.stream.customer_run import CustomerOutcome


@dataclass(slots=True)
class BatchResult:
    """What one batch produced and how its events were accounted for."""

    changes: list[PendingChange] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    too_late: int = 0
    labels: int = 0
    """Labels resolved (they are among ``changes``, for the labels topic)."""
    ticked: int = 0
    frontiers: dict[int, float] = field(default_factory=dict)
    """Partition -> every label due before this event time is among the outputs so far: publish
    it once they are delivered (the learner seals model versions by it)."""
    held: dict[int, int] = field(default_factory=dict)
    """Partition -> first offset not processed: it waits for a population snapshot to be sealed
    (other partitions are behind in event time); fetch it again from there, a little later."""
    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(event type, outcome) -> events processed: ``applied``, ``duplicate`` or ``too_late``
    (records that did not decode are the ``dead_letters``; held events are counted once processed)."""

    def add_committed(
        self, by_customer: Mapping[str, Sequence[PositionedEvent]], committed: Mapping[str, CustomerOutcome]
    ) -> None:
        """Account for a committed chunk: counts, and the outbox entries to deliver (each once)."""
        returned = {change.change_id for change in self.changes}
        counts = self.events
        types = Counter(p.event.type for events in by_customer.values() for p in events)
        for event_type, n in types.items():
            counts[(event_type, APPLIED)] += n
        for customer_id, outcome in committed.items():
            self.applied += outcome.applied
            self.too_late += outcome.too_late
            self.duplicates += len(by_customer[customer_id]) - outcome.applied - outcome.too_late
            for event_type, what in outcome.skipped:  # rare: redelivered or too late
                counts[(event_type, APPLIED)] -= 1
                counts[(event_type, what)] += 1
            # An earlier chunk's entries are in the outbox until delivered: return them once.
            self.changes.extend(d for d in outcome.deliveries if d.change_id not in returned)
        for key in [key for key, n in counts.items() if n == 0]:
            del counts[key]
        self.labels = sum(1 for c in self.changes if c.kind == LABEL)
