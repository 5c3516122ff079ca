"""A customer's behavioural state and the pure function that applies one event to it.

Everything here is plain data and plain functions: the Redis store persists ``CustomerState``
and the tests recompute it from raw events without any server. Money is kept in integer minor
units (cents) so that sums do not depend on the order events arrive in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from features.event import SECONDS_PER_DAY, Event


def to_minor_units(amount: float) -> int:
    """An amount in major units (e.g. 12.34) as integer minor units (1234), rounded half-even."""
    return round(amount * 100)


@dataclass(frozen=True, slots=True)
class CustomerState:
    """What the store keeps per customer; times are event times in epoch seconds."""

    first_ts: float
    last_ts: float
    events: int = 0
    orders: int = 0
    revenue_minor: int = 0
    last_purchase_ts: float | None = None
    first_purchase_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping for serialisation."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerState:
        """Inverse of ``to_dict``; unknown keys are an error, not silently dropped."""
        return cls(**data)


def apply_event(state: CustomerState | None, event: Event) -> CustomerState:
    """Return the state after ``event``; order-independent for the fields kept here."""
    if state is None:
        state = CustomerState(first_ts=event.ts, last_ts=event.ts)
    else:
        state = replace(state, first_ts=min(state.first_ts, event.ts), last_ts=max(state.last_ts, event.ts))
    state = replace(state, events=state.events + 1)
    if event.type == "purchase":
        state = replace(
            state,
            orders=state.orders + 1,
            revenue_minor=state.revenue_minor + to_minor_units(float(event.attrs["amount"])),
            last_purchase_ts=_max_optional(state.last_purchase_ts, event.ts),
            first_purchase_ts=_min_optional(state.first_purchase_ts, event.ts),
        )
    return state


def _max_optional(current: float | None, candidate: float) -> float:
    return candidate if current is None else max(current, candidate)


def _min_optional(current: float | None, candidate: float) -> float:
    return candidate if current is None else min(current, candidate)


@dataclass(frozen=True, slots=True)
class RfmView:
    """Recency, frequency and monetary value of a customer as seen at event time ``as_of``."""

    as_of: float
    recency_days: float | None
    tenure_days: float
    frequency: int
    monetary: float
    average_order_value: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping, for explanations and change events."""
        return asdict(self)


def rfm_view(state: CustomerState, as_of: float) -> RfmView:
    """Derive R/F/M at ``as_of`` (days are fractional, never negative)."""
    recency = None
    if state.last_purchase_ts is not None:
        recency = max(0.0, as_of - state.last_purchase_ts) / SECONDS_PER_DAY
    monetary = state.revenue_minor / 100
    return RfmView(
        as_of=as_of,
        recency_days=recency,
        tenure_days=max(0.0, as_of - state.first_ts) / SECONDS_PER_DAY,
        frequency=state.orders,
        monetary=monetary,
        average_order_value=(monetary / state.orders) if state.orders else None,
    )
