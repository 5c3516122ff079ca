"""Hypothesis strategies: realistic behavioural event streams, arrival orders and deliveries.

A scenario is a handful of customers (a feature configuration drawn too: lateness, windows,
half-life, tracking caps), each with events of all ten types with valid attributes spread over
~400 days (so the 365-day window and bucket pruning matter), with timestamps that often sit on
UTC day boundaries, on window edges, or share a millisecond with another event, often about the
same ticket, product or campaign (ties that the ticket, holding and campaign tables settle by
rule). Events arrive shuffled *within* the allowed lateness (sorted by ``ts + delay`` with
``0 <= delay <= lateness``), optionally with stragglers: far too late, or exactly at, just inside
or just outside the lateness limit. Records are msgpack, JSON, or msgpack with an RFC 3339 time.

A delivery plan cuts each partition's log into batches, sometimes joins batches of different
partitions, and rewinds now and then (a consumer restarting from an older committed offset), so
records are redelivered with the same ``(partition, offset)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from functools import cache
from typing import Any, TypeVar

import msgpack
from hypothesis import strategies as st

from engine.stream.pipeline import RawRecord
from features.config import FeatureConfig
from features.event import EVENT_TYPES

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
SPAN_DAYS = 400
TOPIC = "events"
ENCODINGS = ("msgpack", "msgpack", "msgpack", "json", "rfc3339")
T = TypeVar("T")

KEY_FEATURES = ("payments", "budgeting", "alerts", "card_controls")
OTHER_FEATURES = ("transfers", "statements", "savings_goals", "investments")
PRODUCTS = ("mortgage", "credit_card", "savings", "current_account", "insurance")
UNLISTED_PRODUCTS = ("pension",)  # held, counted in products_held, but not a balance_<p> feature
TICKET_IDS = ("T-1", "T-2")  # few, so openings and closes of one ticket meet
# Types whose tables settle ties by a documented rule: give them many same-millisecond events.
TIED_TYPES = ("support_ticket", "product_holding", "campaign_response", "score")
EXTERNAL_MODELS = ("rf_churn", "uplift", "fraud")
MIN_TS_MS = 946_684_800_000  # as_of of 2000-01-01: never after an event's ts
CAMPAIGNS = ("spring", "summer", "autumn", "winter", "winback", "cashback", "referral", "travel", "student")
CAMPAIGN_OUTCOMES = ("delivered", "opened", "clicked", "converted", "unsubscribed")


@dataclass
class Scenario:
    """Events of several customers in arrival order, and where each customer's events are logged."""

    config: FeatureConfig
    events: list[dict[str, Any]]
    partition_of: dict[str, int]
    n_partitions: int
    encodings: dict[str, str] = field(default_factory=dict)
    """event_id -> how the record is encoded on the wire: "msgpack", "json" or "rfc3339"."""

    @property
    def customers(self) -> list[str]:
        return sorted(self.partition_of)

    def log(self, partition: int) -> list[dict[str, Any]]:
        """The events of one partition, in offset order."""
        return [e for e in self.events if self.partition_of[e["customer_id"]] == partition]

    def records(self, partition: int) -> list[RawRecord]:
        """The partition's log as raw records; offsets are the positions in the log."""
        return [
            RawRecord(
                TOPIC,
                partition,
                offset,
                e["customer_id"].encode(),
                encode(e, self.encodings.get(e["event_id"])),
            )
            for offset, e in enumerate(self.log(partition))
        ]


def encode(event: dict[str, Any], how: str | None) -> bytes:
    if how == "json":
        return json.dumps(event).encode()
    if how == "rfc3339":
        when = datetime.fromtimestamp(event["ts"] / 1000, tz=UTC).isoformat(timespec="milliseconds")
        return msgpack.packb({**event, "ts": when.replace("+00:00", "Z")})
    return msgpack.packb(event)


def lateness_ms(config: FeatureConfig) -> int:
    allowed = Fraction(config.allowed_lateness_seconds) * 1000
    assert allowed.denominator == 1, "strategies use lateness in whole milliseconds"
    return int(allowed)


# --- configuration ---------------------------------------------------------------------------


@st.composite
def feature_configs(draw: st.DrawFn) -> FeatureConfig:
    """The default catalogue, or a variant with other lateness, half-life or windows."""
    if draw(st.booleans()):
        return FeatureConfig()
    windows = draw(
        st.sampled_from(
            [
                ((30, 90, 365), (7, 14, 30), 30),
                ((1, 30, 365), (1, 7), 14),
                ((7, 400), (2, 45), 60),
            ]
        )
    )
    return FeatureConfig(
        allowed_lateness_seconds=draw(st.sampled_from([0.0, 3_600.0, 43_200.0, 86_400.0, 259_200.0])),
        engagement_half_life_days=draw(st.sampled_from([14.0, 3.5, 60.0])),
        purchase_windows_days=windows[0],
        login_windows_days=windows[1],
        activity_window_days=windows[2],
        max_tracked_features=draw(st.sampled_from([64, 2, 1, 0])),
        max_tracked_campaigns=draw(st.sampled_from([8, 3, 1])),
        max_external_scores=draw(st.sampled_from([16, 2, 1])),
    )


# --- one event -------------------------------------------------------------------------------
# Strategies are built once (module level or cached): building them per draw costs more than
# drawing from them.


@cache
def ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


money_cents = st.one_of(
    st.integers(0, 300_00), st.integers(0, 5_000_000_00), st.sampled_from([0, 1, 5, 99, 100])
)


@st.composite
def amounts(draw: st.DrawFn) -> float | int:
    """A purchase amount: whole cents as a float (12.34), sometimes an int (12) or a sub-cent
    amount (0.295, rounded half-even to cents as written)."""
    value = draw(money_cents)
    form = draw(ints(0, 9))
    if form == 0:
        return value // 100
    if form == 1:
        return value / 1000
    return value / 100


@st.composite
def balances(draw: st.DrawFn) -> float | int:
    value = draw(money_cents) * draw(st.sampled_from([1, 1, 1, -1]))
    if draw(ints(0, 4)) == 0:
        return value // 100
    return value / 100


ATTRS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "purchase": st.fixed_dictionaries(
        {"amount": amounts(), "currency": st.just("EUR"), "product": st.sampled_from(PRODUCTS)}
    ),
    "login": st.fixed_dictionaries({}, optional={"channel": st.sampled_from(["web", "ios", "android"])}),
    "session": st.fixed_dictionaries({}, optional={"duration_s": st.integers(0, 7200)}),
    "feature_used": st.fixed_dictionaries({"feature": st.sampled_from(KEY_FEATURES + OTHER_FEATURES)}),
    "support_ticket": st.fixed_dictionaries(
        {
            "ticket_id": st.sampled_from(TICKET_IDS),
            "status": st.sampled_from(["opened", "closed"]),
            "severity": st.sampled_from(["low", "medium", "high", "critical"]),
        }
    ),
    "page_view": st.fixed_dictionaries({"page": st.sampled_from(["/home", "/offers", "/help"])}),
    "app_click": st.fixed_dictionaries({"element": st.sampled_from(["pay", "menu", "banner"])}),
    "call_center": st.fixed_dictionaries({"reason": st.sampled_from(["card_lost", "complaint", "query"])}),
    "product_holding": st.fixed_dictionaries(
        {"product": st.sampled_from(PRODUCTS + UNLISTED_PRODUCTS), "balance": balances()}
    ),
    "campaign_response": st.fixed_dictionaries(
        {
            "campaign": st.sampled_from(CAMPAIGNS),
            "variant": st.sampled_from(["A", "B"]),
            "outcome": st.sampled_from(CAMPAIGN_OUTCOMES),
        }
    ),
    "score": st.fixed_dictionaries(
        {
            "model": st.sampled_from(EXTERNAL_MODELS),
            "value": st.sampled_from([0.0, 0.25, 0.83, 1.0, -2.5]),
            "version": st.sampled_from(["v1", "v2"]),
        },
        optional={"as_of": st.just(MIN_TS_MS)},
    ),
}
assert set(ATTRS) == set(EVENT_TYPES)


def envelope(
    event_id: str, customer_id: str, event_type: str, ts: int, attrs: dict[str, Any]
) -> dict[str, Any]:
    return {
        "v": 1,
        "event_id": event_id,
        "customer_id": customer_id,
        "type": event_type,
        "ts": ts,
        "attrs": attrs,
    }


# --- one customer's events ------------------------------------------------------------------
# Each event is drawn from one independent "spec" (type, attributes, how its time is chosen, its
# arrival delay, its wire encoding) in a list, and resolved into an envelope afterwards; ties
# refer to earlier events by an index taken modulo their number. So the shrinker can delete any
# event, or any customer, without disturbing the others.

# Hypothesis caps an example at 8 KB of choices, so each event is a handful of choices: its type
# and attributes, one integer of "knobs" (decoded below), how far back it is, its delay.
BACK_RANGES = (2 * DAY_MS, 20 * DAY_MS, 60 * DAY_MS, SPAN_DAYS * DAY_MS)
EDGE_OFFSETS = (0, -1, DAY_MS - 1, DAY_MS // 2)
MIDNIGHT_OFFSETS = (0, -1, 1)
STRAGGLER_DELTA = st.one_of(st.sampled_from([-1, 0, 1]), st.integers(-60 * DAY_MS, 0))
KNOBS = (
    10,
    4,
    1024,
    4,
    8,
    len(ENCODINGS),
)  # when, scale, choice, twin, tiebreak, encoding  # sizes of the fields packed into EventSpec.knobs


@dataclass(frozen=True)
class EventSpec:
    type: str
    attrs: dict[str, Any]
    knobs: int
    back: int  # how far before the customer's newest event (random times), modulo a range
    delay: int  # arrival delay, within the allowed lateness

    def unpack(self) -> tuple[int, ...]:
        """(when, scale, choice, twin, tiebreak, encoding); all 0 is the simplest event.

        when: 1 the same time as an earlier event, 2 a window edge, 3 a UTC midnight, else random
        (``back`` modulo BACK_RANGES[scale]); choice: which earlier event, window or offset
        (modulo their number); twin, for TIED_TYPES: 1 the same time as an earlier event of the
        type, 2 or 3 also the same attributes but one; tiebreak: order among equal arrival keys.
        """
        out, rest = [], self.knobs
        for size in KNOBS:
            out.append(rest % size)
            rest //= size
        return tuple(out)


@cache
def delays(allowed: int) -> st.SearchStrategy[int]:
    return st.integers(0, allowed)


@cache
def event_specs(event_types: tuple[str, ...], allowed: int) -> st.SearchStrategy[EventSpec]:
    typed = st.one_of([st.tuples(st.just(t), ATTRS[t]) for t in event_types])
    knobs = st.integers(0, math.prod(KNOBS) - 1)
    return st.builds(
        lambda type_attrs, *rest: EventSpec(*type_attrs, *rest),
        typed,
        knobs,
        st.integers(0, SPAN_DAYS * DAY_MS),
        delays(allowed),
    )


@dataclass(frozen=True)
class CustomerSpec:
    end_ms: int
    events: list[EventSpec]
    stragglers: list[tuple[int, int, EventSpec]]  # (position, delta from the lateness limit, event)
    partition: int


def window_lengths(config: FeatureConfig) -> list[int]:
    return sorted({*config.purchase_windows_days, *config.login_windows_days, config.activity_window_days, 1})


@cache
def customer_specs(
    allowed: int, max_events: int, event_types: tuple[str, ...], stragglers: bool, coarse: bool = False
) -> st.SearchStrategy[CustomerSpec]:
    """One customer; ``coarse`` puts their newest event on one of 4 times a day (ties across customers)."""
    time_of_day = (
        st.sampled_from([0, DAY_MS // 4, DAY_MS // 2, 3 * DAY_MS // 4]) if coarse else ints(0, DAY_MS - 1)
    )
    specs = event_specs(event_types, allowed)
    late = st.tuples(ints(0, 1_000), STRAGGLER_DELTA, event_specs(EVENT_TYPES, allowed))
    return st.builds(
        CustomerSpec,
        end_ms=st.builds(
            lambda day, ms: T0_MS + day * DAY_MS + ms, ints(SPAN_DAYS - 40, SPAN_DAYS), time_of_day
        ),
        # Two lists (older ones, then more): longer histories on average than one list gives.
        events=st.tuples(
            st.lists(specs, min_size=1, max_size=max_events // 2 + 1),
            st.lists(specs, max_size=max_events // 2),
        ).map(lambda two: two[0] + two[1]),
        stragglers=st.lists(late, max_size=4) if stragglers else st.just([]),
        partition=ints(0, 1_000),
    )


def resolve(
    cid: str, spec: CustomerSpec, config: FeatureConfig
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One customer's envelopes in arrival order, and their wire encodings."""
    end_ms = spec.end_ms
    end_day = end_ms // DAY_MS
    events: list[dict[str, Any]] = []
    keys = []
    encodings = {}
    for index, e in enumerate(spec.events):
        when, scale, choice, twin_kind, tiebreak, encoding = e.unpack()
        attrs = e.attrs
        same_type = [x for x in events if x["type"] == e.type]
        if index == 0:
            ts = end_ms  # the newest event
        elif e.type in TIED_TYPES and same_type and twin_kind:
            # The same millisecond as an earlier event of the type, often about the same ticket,
            # product or campaign with one attribute changed: an opening and a close, two
            # balances, two outcomes or variants; their tables settle such ties by rule.
            twin = same_type[choice % len(same_type)]
            ts = twin["ts"]
            if twin_kind >= 2 and attrs:
                changed = sorted(attrs)[(choice // 16) % len(attrs)]
                attrs = {**twin["attrs"], changed: attrs[changed]}
        elif when == 1:
            ts = events[choice % len(events)]["ts"]  # the same millisecond as another event
        elif when == 2:  # on a window edge: the first day of a window, or the day before it
            lengths = window_lengths(config)
            days = lengths[choice % len(lengths)]
            ts = min((end_day - days + 1) * DAY_MS + EDGE_OFFSETS[choice % len(EDGE_OFFSETS)], end_ms)
        else:
            ts = end_ms - e.back % (BACK_RANGES[scale] + 1)
            if when == 3:  # on a UTC midnight, or a millisecond either side
                ts = min((ts // DAY_MS) * DAY_MS + MIDNIGHT_OFFSETS[choice % len(MIDNIGHT_OFFSETS)], end_ms)
        event_id = f"{cid}-{index}"
        events.append(envelope(event_id, cid, e.type, ts, attrs))
        keys.append((ts + e.delay, tiebreak, index))
        encodings[event_id] = ENCODINGS[encoding]
    # Arrival: sorted by ts + delay with delay <= lateness, so none is too late.
    ordered = [events[i] for _key, _tiebreak, i in sorted(keys)]
    # Stragglers: placed after some prefix, at the lateness limit of that prefix plus delta (-1:
    # just too late, 0 and 1: just in time, very negative: far too late).
    allowed = lateness_ms(config)
    for number, (position, delta, e) in enumerate(spec.stragglers):
        at = 1 + position % len(ordered)
        newest = max(x["ts"] for x in ordered[:at])
        event_id = f"{cid}-late{number}"
        ordered.insert(at, envelope(event_id, cid, e.type, newest - allowed + delta, e.attrs))
        encodings[event_id] = ENCODINGS[e.unpack()[-1]]
    return ordered, encodings


# --- arrival order ------------------------------------------------------------------------------


@st.composite
def order_within_lateness(
    draw: st.DrawFn, events: list[dict[str, Any]], config: FeatureConfig
) -> list[dict[str, Any]]:
    """The events in an arrival order where none is too late: sorted by ts + delay, delay <= lateness."""
    delay = delays(lateness_ms(config))
    keys = [(e["ts"] + draw(delay), draw(ints(0, 7)), i) for i, e in enumerate(events)]
    return [events[i] for _key, _tiebreak, i in sorted(keys)]


@st.composite
def interleave(draw: st.DrawFn, sequences: list[list[T]]) -> list[T]:
    """Merge sequences in a random interleaving that keeps each one's order."""
    remaining = [list(reversed(seq)) for seq in sequences if seq]
    out = []
    while remaining:
        index = draw(ints(0, len(remaining) - 1))
        out.append(remaining[index].pop())
        if not remaining[index]:
            del remaining[index]
    return out


@st.composite
def scenarios(
    draw: st.DrawFn,
    min_customers: int = 1,
    max_customers: int = 4,
    max_events: int = 30,
    stragglers: bool = True,
    config: FeatureConfig | None = None,
    max_partitions: int = 2,
    event_types: tuple[str, ...] = EVENT_TYPES,
    coarse: bool = False,
) -> Scenario:
    """Several customers' events in arrival order (see the module docstring)."""
    config = config if config is not None else draw(feature_configs())
    specs = draw(
        st.lists(
            customer_specs(lateness_ms(config), max_events, event_types, stragglers, coarse),
            min_size=min_customers,
            max_size=max_customers,
        )
    )
    n_partitions = draw(ints(1, max_partitions))
    per_customer = []
    partition_of = {}
    encodings: dict[str, str] = {}
    for index, spec in enumerate(specs):
        cid = f"cust-{index}"
        ordered, own_encodings = resolve(cid, spec, config)
        per_customer.append(ordered)
        encodings |= own_encodings
        partition_of[cid] = spec.partition % n_partitions
    events = draw(interleave(per_customer))
    return Scenario(config, events, partition_of, n_partitions, encodings)


# --- deliveries ---------------------------------------------------------------------------------


@st.composite
def partition_batches(draw: st.DrawFn, length: int, max_rewinds: int = 3) -> list[tuple[int, int]]:
    """Contiguous offset ranges [start, end) covering 0..length, with a few rewinds (redeliveries)."""
    batches: list[tuple[int, int]] = []
    position, rewinds = 0, 0
    while position < length:
        end = min(length, position + draw(ints(1, max(1, length))))
        batches.append((position, end))
        if rewinds < max_rewinds and draw(ints(0, 3)) == 0:
            rewinds += 1
            position = draw(ints(0, end))  # restart from an older committed offset
        else:
            position = end
    return batches


Range = tuple[int, int, int]
"""(partition, first offset, end offset): records [first, end) of one partition's log."""
Batch = tuple[Range, ...]
"""The ranges handed to one ``SegmentPipeline.process`` call (at most one per partition)."""
Plan = list[Batch]


@st.composite
def batched(draw: st.DrawFn, ranges: list[Range]) -> Plan:
    """Batches of ranges: sometimes ranges of other partitions join a batch (a consumer taking
    from several partitions at once)."""
    plan: Plan = []
    for item in ranges:
        if plan and item[0] not in {p for p, _s, _e in plan[-1]} and draw(ints(0, 2)) == 0:
            plan[-1] = (*plan[-1], item)
        else:
            plan.append((item,))
    return plan


@st.composite
def delivery_plans(draw: st.DrawFn, scenario: Scenario) -> Plan:
    """Batches covering every partition's log, with rewinds, interleaved across partitions."""
    per_partition = []
    for partition in range(scenario.n_partitions):
        length = len(scenario.log(partition))
        per_partition.append([(partition, s, e) for s, e in draw(partition_batches(length))])
    return draw(batched(draw(interleave(per_partition))))  # type: ignore[arg-type]


@st.composite
def replay_plans(draw: st.DrawFn, scenario: Scenario) -> Plan:
    """Every partition again from any earlier offset to its end (a restart from an old commit)."""
    per_partition = []
    for partition in range(scenario.n_partitions):
        length = len(scenario.log(partition))
        start = draw(ints(0, length))
        batches = draw(partition_batches(length - start, max_rewinds=0))
        per_partition.append([(partition, start + s, start + e) for s, e in batches])
    return draw(batched(draw(interleave(per_partition))))  # type: ignore[arg-type]


def delivered(plan: Plan) -> int:
    """How many records the plan hands to the pipeline, redeliveries included."""
    return sum(end - start for batch in plan for _p, start, end in batch)
