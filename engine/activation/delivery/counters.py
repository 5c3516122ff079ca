"""What ``segflow deliver`` has done: counters it logs periodically and a metrics page can read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class DestinationCounters:
    """One destination's counts."""

    attempts: int = 0  # requests (or SMTP sends) made, retries included
    delivered: int = 0
    retried: int = 0  # attempts that failed transiently and were tried again
    dead_lettered: int = 0


@dataclass(slots=True)
class DeliveryCounters:
    """Every record read from the actions topic ends in exactly one of: delivered, dead-lettered
    (a send action no destination accepted, or a malformed record), or withheld (by reason)."""

    read: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    malformed: int = 0  # records that are not a valid action (also counted in dead_lettered)
    withheld: Counter[str] = field(default_factory=Counter)  # decision != send, per reason
    destinations: dict[str, DestinationCounters] = field(default_factory=dict)
    in_flight: int = 0  # read, not yet finished
    commits: int = 0

    def destination(self, name: str) -> DestinationCounters:
        """The counters of destination ``name`` (made on first use)."""
        if name not in self.destinations:
            self.destinations[name] = DestinationCounters()
        return self.destinations[name]

    @property
    def retried(self) -> int:
        """Attempts that failed transiently and were tried again, over every destination."""
        return sum(c.retried for c in self.destinations.values())

    @property
    def finished(self) -> int:
        """Records that are delivered, dead-lettered or withheld."""
        return self.delivered + self.dead_lettered + sum(self.withheld.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy (for logs and a metrics endpoint)."""
        return {
            "read": self.read,
            "delivered": self.delivered,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "malformed": self.malformed,
            "withheld": dict(sorted(self.withheld.items())),
            "in_flight": self.in_flight,
            "commits": self.commits,
            "destinations": {
                name: {
                    "attempts": c.attempts,
                    "delivered": c.delivered,
                    "retried": c.retried,
                    "dead_lettered": c.dead_lettered,
                }
                for name, c in sorted(self.destinations.items())
            },
        }

    def summary(self) -> str:
        """One log line."""
        withheld = ", ".join(f"{k}={v}" for k, v in sorted(self.withheld.items())) or "none"
        per = "; ".join(
            f"{name}: {c.delivered} delivered, {c.retried} retried, {c.dead_lettered} dead-lettered"
            for name, c in sorted(self.destinations.items())
        )
        return (
            f"read {self.read}, delivered {self.delivered}, retried {self.retried}, "
            f"dead-lettered {self.dead_lettered} ({self.malformed} malformed), withheld {withheld}, "
            f"in flight {self.in_flight}" + (f" | {per}" if per else "")
        )
