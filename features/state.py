"""A customer's behavioural state and how one event changes it.

The state keeps just enough to answer the feature catalogue (``features.catalogue``) at any
moment at or after the customer's latest event: all-time totals, day buckets for windows
(``features.windows``), a decayed engagement score, ticket, holding and campaign tables.
Every field except the engagement score's last bits of floating point is independent of the
order in which the (not too late) events arrived; money is integer minor units (cents).

A ``score`` event (an external batch job's score for the customer, ``external_scores``) is
applied and counted like any event, and moves the customer's event-time span (``first_ts``,
``last_ts``: lateness and the moment features are read at), but it is not an action of theirs:
no engagement, no window bucket, no login or purchase time, so recency and activity features
do not see it (only ``tenure_days`` of a customer first seen through a score event counts from
it). Per model the score with the latest ``as_of`` (then ``ts``) is kept; an older
one arriving later does not replace it.

``apply_event`` mutates the state it is given (the caller owns it for the batch): copying the
nested tables per event would cost more than the rest of the pipeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from features import windows
from features.config import FeatureConfig
from features.event import SECONDS_PER_DAY, Event

SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
OUTCOME_RANK = {"delivered": 1, "opened": 2, "clicked": 3, "converted": 4, "unsubscribed": 5}
OUTCOME_BY_RANK = {rank: outcome for outcome, rank in OUTCOME_RANK.items()}


def to_minor_units(amount: float) -> int:
    """An amount in major units (e.g. 12.34) as integer minor units (1234), rounded half-even.

    The amount is taken as the shortest decimal that reads back as the same float (what the
    producer wrote), so 1.015 is 101.5 cents and rounds to 102, not to the binary float's 101.
    """
    cents = Decimal(repr(float(amount))) * 100
    return int(cents.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(slots=True)
class CustomerState:
    """What the store keeps per customer; times are event times in epoch seconds."""

    first_ts: float
    last_ts: float
    events: int = 0
    late_dropped: int = 0
    orders: int = 0
    revenue_minor: int = 0
    first_purchase_ts: float | None = None
    last_purchase_ts: float | None = None
    purchase_days: dict[int, list[int]] = field(default_factory=dict)
    last_login_ts: float | None = None
    login_days: dict[int, int] = field(default_factory=dict)
    session_days: dict[int, int] = field(default_factory=dict)
    engagement: float = 0.0
    engagement_ts: float | None = None
    feature_first_use: dict[str, float] = field(default_factory=dict)
    tickets: dict[str, list[Any]] = field(default_factory=dict)
    ticket_open_days: dict[int, int] = field(default_factory=dict)
    call_days: dict[int, int] = field(default_factory=dict)
    holdings: dict[str, list[float]] = field(default_factory=dict)
    campaigns: dict[str, list[Any]] = field(default_factory=dict)
    external_scores: dict[str, list[Any]] = field(default_factory=dict)
    """Per external model: [value, version, as_of, ts] of its latest ``score`` event."""

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping for serialisation."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerState:
        """Inverse of ``to_dict``; unknown keys are an error, not silently dropped (missing ones,
        from a state stored before they existed, take their defaults)."""
        return cls(**data)


def new_state(event: Event) -> CustomerState:
    """The state of a customer before their first event."""
    return CustomerState(first_ts=event.ts, last_ts=event.ts)


def is_too_late(state: CustomerState, event: Event, config: FeatureConfig) -> bool:
    """True when ``event`` is older than the customer's newest event by more than the lateness."""
    return event.ts < state.last_ts - config.allowed_lateness_seconds


def apply_event(
    state: CustomerState | None, event: Event, config: FeatureConfig, not_before: float | None = None
) -> tuple[CustomerState, bool]:
    """Apply ``event`` to ``state`` (in place); return the state and whether it was applied.

    A too-late event changes nothing but the ``late_dropped`` counter. Besides the lateness, the
    caller may set ``not_before``: a moment up to which the customer was already judged (e.g.
    moved on by event time), so that an event from before it is too late as well.
    """
    if state is None:
        state = new_state(event)
    elif is_too_late(state, event, config) or (not_before is not None and event.ts < not_before):
        state.late_dropped += 1
        return state, False
    ts = event.ts
    state.first_ts = min(state.first_ts, ts)
    state.last_ts = max(state.last_ts, ts)
    state.events += 1
    _decay_engagement(state, event, config)
    handler = _HANDLERS.get(event.type)
    if handler is not None:
        handler(state, event, config)
    _prune(state, config)
    return state, True


def _decay_engagement(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    weight = config.engagement_weights.get(event.type, 0.0)
    if weight == 0.0 or event.type == "score":  # a batch job's score is not engagement
        return
    half_life = config.engagement_half_life_days * SECONDS_PER_DAY
    if state.engagement_ts is None:
        state.engagement, state.engagement_ts = weight, event.ts
    elif event.ts >= state.engagement_ts:
        decay = 2.0 ** (-(event.ts - state.engagement_ts) / half_life)
        state.engagement, state.engagement_ts = state.engagement * decay + weight, event.ts
    else:
        state.engagement += weight * 2.0 ** (-(state.engagement_ts - event.ts) / half_life)


def _purchase(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    cents = to_minor_units(float(event.attrs["amount"]))
    state.orders += 1
    state.revenue_minor += cents
    state.first_purchase_ts = _min(state.first_purchase_ts, event.ts)
    state.last_purchase_ts = _max(state.last_purchase_ts, event.ts)
    windows.add_pair(state.purchase_days, windows.day_of(event.ts), 1, cents)


def _login(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    state.last_login_ts = _max(state.last_login_ts, event.ts)
    windows.add(state.login_days, windows.day_of(event.ts))


def _session(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    windows.add(state.session_days, windows.day_of(event.ts))


def _feature_used(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    name = str(event.attrs["feature"])
    used = state.feature_first_use
    used[name] = min(used.get(name, event.ts), event.ts)
    # Key features are always kept; of the others, the max_tracked_features used first (ties by
    # name) are kept, which is the same set whatever order the events arrive in.
    others = [n for n in used if n not in config.key_features]
    if len(others) > config.max_tracked_features:
        del used[max(others, key=lambda n: (used[n], n))]


def _support_ticket(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    ticket_id = str(event.attrs["ticket_id"])
    severity = SEVERITY_RANK[str(event.attrs["severity"])]
    # [severity of the latest opening, latest opened ts, latest closed ts]
    entry = state.tickets.setdefault(ticket_id, [0, None, None])
    if event.attrs["status"] == "opened":
        if entry[1] is None or (event.ts, severity) > (entry[1], entry[0]):
            entry[0], entry[1] = severity, event.ts
        windows.add(state.ticket_open_days, windows.day_of(event.ts))
    else:
        entry[2] = _max(entry[2], event.ts)


def _call_center(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    windows.add(state.call_days, windows.day_of(event.ts))


def _product_holding(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    product = str(event.attrs["product"])
    reported = [float(event.attrs["balance"]), event.ts]
    current = state.holdings.get(product)
    # Latest report wins; equal times are settled by the larger balance, so order never matters.
    if current is None or (reported[1], reported[0]) > (current[1], current[0]):
        state.holdings[product] = reported


def _campaign_response(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    campaign = str(event.attrs["campaign"])
    # [variant, outcome rank (OUTCOME_RANK; a number is smaller stored than the word), ts]
    reported = [str(event.attrs["variant"]), OUTCOME_RANK[str(event.attrs["outcome"])], event.ts]
    current = state.campaigns.get(campaign)
    if current is None or (reported[2], reported[1], reported[0]) > (current[2], current[1], current[0]):
        state.campaigns[campaign] = reported
    if len(state.campaigns) > config.max_tracked_campaigns:
        oldest = min(state.campaigns, key=lambda name: (state.campaigns[name][2], name))
        del state.campaigns[oldest]


def _score(state: CustomerState, event: Event, config: FeatureConfig) -> None:
    model = str(event.attrs["model"])
    as_of_ms = event.attrs.get("as_of")
    as_of = event.ts if as_of_ms is None else float(as_of_ms) / 1000
    reported = [float(event.attrs["value"]), str(event.attrs["version"]), as_of, event.ts]
    current = state.external_scores.get(model)
    # Latest as_of wins, then latest ts; full ties by version and value, so order never matters.
    key = (as_of, event.ts, reported[1], reported[0])
    if current is None or key > (current[2], current[3], current[1], current[0]):
        state.external_scores[model] = reported
    if len(state.external_scores) > config.max_external_scores:
        scores = state.external_scores
        del scores[min(scores, key=lambda name: (scores[name][2], scores[name][3], name))]


_HANDLERS = {
    "purchase": _purchase,
    "login": _login,
    "session": _session,
    "feature_used": _feature_used,
    "support_ticket": _support_ticket,
    "call_center": _call_center,
    "product_holding": _product_holding,
    "campaign_response": _campaign_response,
    "score": _score,
}


def ticket_is_open(entry: list[Any]) -> bool:
    """A ticket is open when its latest status event is an opening (a close at the same time wins)."""
    opened, closed = entry[1], entry[2]
    return opened is not None and (closed is None or closed < opened)


def _prune(state: CustomerState, config: FeatureConfig) -> None:
    newest = windows.day_of(state.last_ts)
    windows.prune(state.purchase_days, newest, config.purchase_horizon_days)
    for buckets in (state.login_days, state.session_days, state.ticket_open_days, state.call_days):
        windows.prune(buckets, newest, config.activity_horizon_days)
    # A settled ticket can go once any event about it would be too late to be applied.
    horizon = state.last_ts - config.allowed_lateness_seconds
    settled = [
        tid
        for tid, entry in state.tickets.items()
        if not ticket_is_open(entry) and entry[2] is not None and entry[2] < horizon
    ]
    for ticket_id in settled:
        del state.tickets[ticket_id]


def _max(current: float | None, candidate: float) -> float:
    return candidate if current is None else max(current, candidate)


def _min(current: float | None, candidate: float) -> float:
    return candidate if current is None else min(current, candidate)
