"""The lifecycle family: new / active / lapsed, by tenure, recency and frequency of purchases.

Resolved in priority order at event time ``as_of``:

1. ``new``: first seen less than ``new_days`` ago and fewer than 2 orders;
2. ``active``: last purchase at most ``active_days`` ago;
3. ``lapsed``: everyone else (no purchase in the last ``active_days`` days, or never).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from features.catalogue import FeatureSnapshot

FAMILY = "lifecycle"
NEW, ACTIVE, LAPSED = "new", "active", "lapsed"


@dataclass(frozen=True, slots=True)
class LifecycleParams:
    """Thresholds of the family, in days of event time."""

    new_days: float = 30.0
    active_days: float = 30.0


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition that held, with the value it held for."""

    name: str
    op: str
    threshold: float | None
    value: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping for the wire."""
        return {"name": self.name, "op": self.op, "threshold": self.threshold, "value": self.value}

    def text(self) -> str:
        """Human-readable form, e.g. ``recency_days=3.2 <= 30``."""
        value = "none" if self.value is None else _number(self.value)
        if self.threshold is None:
            return f"{self.name} is {value}"
        return f"{self.name}={value} {self.op} {self.threshold:g}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The segment a family puts a customer in, and why."""

    family: str
    segment: str
    rule: str
    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    def reason(self) -> dict[str, Any]:
        """The wire form of the reason: rule, conditions with values, and a sentence."""
        text = " and ".join(c.text() for c in self.conditions) or "no condition"
        return {
            "rule": self.rule,
            "conditions": [c.as_dict() for c in self.conditions],
            "text": f"{self.family}={self.segment} because {text}",
        }


def _number(value: float) -> str:
    # Six decimals (~0.1 s in days) so that a value just past a threshold never reads as equal.
    return f"{value:.6f}".rstrip("0").rstrip(".")


def evaluate(features: FeatureSnapshot, params: LifecycleParams) -> Decision:
    """The lifecycle segment of a customer from a feature snapshot."""
    tenure_days = float(features["tenure_days"] or 0.0)
    frequency = int(features["frequency"] or 0)
    recency = features["recency_days"]
    tenure = Condition("tenure_days", "<", params.new_days, tenure_days)
    orders_few = Condition("orders", "<", 2, frequency)
    if tenure_days < params.new_days and frequency < 2:
        return Decision(FAMILY, NEW, f"{FAMILY}.{NEW}", (tenure, orders_few))
    if recency is not None and recency <= params.active_days:
        cond = Condition("recency_days", "<=", params.active_days, float(recency))
        return Decision(FAMILY, ACTIVE, f"{FAMILY}.{ACTIVE}", (cond,))
    if tenure_days >= params.new_days:
        not_new = Condition("tenure_days", ">=", params.new_days, tenure_days)
    else:
        not_new = Condition("orders", ">=", 2, frequency)
    if recency is None:
        stale = Condition("recency_days", "is", None, None)
    else:
        stale = Condition("recency_days", ">", params.active_days, float(recency))
    return Decision(FAMILY, LAPSED, f"{FAMILY}.{LAPSED}", (stale, not_new))
