"""The in-memory form of one behavioural event, as the feature store consumes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES: tuple[str, ...] = (
    "purchase",
    "login",
    "session",
    "feature_used",
    "support_ticket",
    "page_view",
    "app_click",
    "call_center",
    "product_holding",
    "campaign_response",
    "score",
)
"""``score`` is not a customer's action: an external batch job's score for them (``features.state``)."""

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Event:
    """A validated behavioural event; ``ts`` is event time in epoch seconds (UTC)."""

    event_id: str
    customer_id: str
    type: str
    ts: float
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PositionedEvent:
    """An event together with where it sits in its source stream.

    ``partition`` and ``offset`` come from the source (a Kafka topic partition, or a line
    number of a file replay); offsets only ever grow within one partition, which is what
    makes redelivery detectable.
    """

    event: Event
    partition: int
    offset: int
