"""A seeded synthetic customer population emitting a schema-v1 behavioural event stream.

``generate_events(PopulationConfig(customers=..., seed=...))`` yields wire dicts
(``v, event_id, customer_id, type, ts`` in epoch milliseconds, ``attrs``) in event-time order,
ties broken by customer index then per-customer sequence. The same config always yields the
same stream: each customer's traits, tickets and churn day come from its own ``random.Random``
streams seeded by ``(seed, index)`` (see ``models.population``), and the individual events from
one population-wide stream drawn in a fixed order; nothing reads global random state or the
clock. Memory is bounded by one day of events plus a small state per customer (about 350 MB
peak RSS for 100k customers, whatever the number of days).

The formulas of the drivers are plain functions of ``models.population`` so that models and
tests can recompute expectations from the profiles: ``baseline_churn_hazard``,
``daily_churn_hazard`` and ``purchase_propensity``.

Behavioural drivers (per customer; an *active day* lies between joining and churning; LN(m, s)
is a lognormal factor exp(N(m, s)); names in ``backticks`` are ``PopulationConfig`` fields or
``CustomerProfile`` traits):

=================== ============================================================================
behaviour           driver
=================== ============================================================================
segment             champion 10%, regular 35%, occasional 30%, new 15%, dormant 10%
                    (``segments``); each sets mean engagement, purchase rate and spend level.
                    Events per active customer-week: about 37, 19, 7, 17 and 2; 15 overall.
key features        each of ``key_features`` adopted independently with chance
                    ``key_feature_adoption`` (``adopted_features``, fixed for life).
join                ``new`` joins on a uniform day 1..days-1 at 08-20h UTC; its first event is
                    a product_holding of the primary product (current_account). Others exist
                    from day 0 with holdings drawn from their product affinities.
sessions            Poisson(``engagement``) per active day, engagement = segment mean * LN(0,.35),
                    around the customer's ``preferred_hour``. Each session: login (``channel``),
                    page_view ~ Poisson(1.5) (30% product pages, by affinity), app_click ~
                    Poisson(0.8), feature_used ~ Poisson(0.6) over ``adopted_features`` (key
                    features) + Poisson(0.15) over other features, then session with duration_s
                    (median 240 s, at most 1 h) at its end.
purchases           Poisson(``purchase_rate``) per active day; amount = ``spend_level`` *
                    LN(0, 0.6) in ``currency``, whatever the product; product drawn by
                    ``purchase_propensity``.
purchase propensity weight(p) = affinity(p) * n(p) * m(p): n = ``new_product_factor`` for a
                    product not held yet, else 1; m(mortgage) = 1 + savings balance /
                    ``savings_mortgage_scale`` (``held_mortgage_factor`` once one is held),
                    m(insurance) = ``mortgage_insurance_boost`` if a mortgage is held, else 1.
                    Buying a product not yet held opens it (a product_holding follows).
support tickets     Poisson process at ``ticket_rate`` per day (``config.ticket_rate`` *
                    Gamma(0.8) spread, independent of segment); severity low/medium/high/
                    critical 45/35/15/5%; closed (same ticket_id) after
                    RESOLUTION_DAYS[severity] * LN(0, 0.6) days, unless the customer churns
                    first.
call_center         daily chance ``call_center_rate``, plus ``call_center_ticket_boost`` on days
                    a ticket is open (then after the ticket opened, reason mostly ticket_followup)
product_holding     each held product reports its balance about every 1 /
                    ``holding_report_rate`` days (at most one report a day); savings grow by
                    ``daily_saving`` a day and by savings purchases, other balances drift by
                    LN(0, 0.03) per report.
campaign_response   a wave every ``campaign_every_days`` for the next product in turn; reached
                    with ``campaign_reach``; variant A/B 50/50; funnel delivered -> opened
                    (0.15 + 0.5 * engagement) -> clicked (0.25, * ``variant_b_click_uplift`` for
                    B) -> converted (``campaign_conversion`` * propensity weight, max 0.9);
                    1% unsubscribe on delivery and receive no further waves.
churn               at the end of each active day (not the last), with daily hazard
                    baseline * (1 + ``open_ticket_churn_effect`` * open tickets
                    + ``recent_ticket_churn_effect`` * tickets opened in the last
                    ``ticket_memory_days`` + ``bad_ticket_churn_effect`` * the high/critical
                    ones among those), capped at ``max_daily_churn_hazard``;
                    baseline (``churn_hazard``) = ``base_churn_hazard``
                    * exp(-``engagement_churn_effect`` * engagement)
                    * (1 - ``feature_churn_effect``) ** number of adopted key features.
                    A churned customer emits nothing at or after the start of ``churn_day``.
late emission       ``late_fraction`` of events are emitted up to ``max_lateness_seconds`` later
                    than their ``ts`` (which is unchanged); 0.0 gives a strictly ordered stream.
=================== ============================================================================
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from features.event import Event
from models.population import (
    DAY_MS,
    HOUR_MS,
    CustomerProfile,
    PopulationConfig,
    SegmentSpec,
    Ticket,
    generate_customers,
    initial_balance,
    purchase_propensity,
)

__all__ = [
    "CustomerProfile",
    "PopulationConfig",
    "SegmentSpec",
    "Ticket",
    "generate_customers",
    "generate_events",
    "purchase_propensity",
    "sample_stream",
    "to_event",
    "write_jsonl",
]

SCHEMA_VERSION = 1
PAGES = ("home", "accounts", "transactions", "offers", "profile", "help")
ELEMENTS = ("menu", "transfer_button", "card_tile", "offer_banner", "search", "notifications")
OTHER_FEATURES = ("statements", "settings", "help_center")
CALL_REASONS = ("card_issue", "payment_query", "product_info", "complaint", "address_change")

RawEvent = tuple[int, str, dict[str, Any]]  # (ts in epoch ms, type, attrs)


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth's method; a normal approximation for large means)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    """A uniform choice (cheaper than ``Random.choice``)."""
    return options[int(rng.random() * len(options))]


class _CustomerSim:
    """The day-by-day detail of one customer's life (the life plan comes from the profile)."""

    __slots__ = (
        "config",
        "holdings",
        "page_weights",
        "profile",
        "rng",
        "seq",
        "ticket_call_from",
        "ticket_events",
        "unsubscribed",
    )

    def __init__(self, config: PopulationConfig, profile: CustomerProfile, rng: random.Random) -> None:
        self.config = config
        self.profile = profile
        self.rng = rng
        self.holdings = dict(profile.initial_holdings)
        self.page_weights = list(itertools.accumulate(profile.affinities[p] for p in config.products))
        self.seq = 0
        self.unsubscribed = False
        self.ticket_events: dict[int, list[RawEvent]] = {}
        self.ticket_call_from: dict[int, int] = {}
        for ticket in profile.tickets:
            self._plan_ticket(ticket)

    def _day_of(self, ts_ms: int) -> int:
        return (ts_ms - self.config.start_ms) // DAY_MS

    def _plan_ticket(self, ticket: Ticket) -> None:
        def add(ts_ms: int, status: str) -> None:
            attrs = {"ticket_id": ticket.ticket_id, "status": status, "severity": ticket.severity}
            self.ticket_events.setdefault(self._day_of(ts_ms), []).append((ts_ms, "support_ticket", attrs))

        add(ticket.opened_ms, "opened")
        if ticket.closed_ms is not None:
            add(ticket.closed_ms, "closed")
        open_until = ticket.closed_ms if ticket.closed_ms is not None else self.profile.end_ms
        for day in range(self._day_of(ticket.opened_ms), self._day_of(open_until - 1) + 1):
            from_ms = max(self.config.start_ms + day * DAY_MS, ticket.opened_ms)
            self.ticket_call_from[day] = min(self.ticket_call_from.get(day, from_ms), from_ms)

    def _when(self, day_start: int, lo: int, hi: int) -> int:
        """A time in [lo, hi), usually near the customer's preferred hour."""
        at = day_start + round(self.rng.gauss(self.profile.preferred_hour, 3.0) * HOUR_MS)
        return at if lo <= at < hi else lo + int(self.rng.random() * (hi - lo))

    def day(self, day: int) -> list[RawEvent]:
        """This customer's events of ``day``, sorted by time (all within the day)."""
        config, profile, rng = self.config, self.profile, self.rng
        day_start = config.start_ms + day * DAY_MS
        lo, hi = max(day_start, profile.join_ms), min(day_start + DAY_MS, profile.end_ms)
        if lo >= hi:
            return []
        frac = (hi - lo) / DAY_MS
        out: list[RawEvent] = []
        if day == profile.join_day and profile.join_ms > config.start_ms:
            for product, balance in self.holdings.items():
                out.append((lo, "product_holding", {"product": product, "balance": balance}))
        if "savings" in self.holdings:
            self.holdings["savings"] += profile.daily_saving
        for _ in range(_poisson(rng, profile.engagement * frac)):
            self._session(out, self._when(day_start, lo, hi), hi)
        for _ in range(_poisson(rng, profile.purchase_rate * frac)):
            self._purchase(out, self._when(day_start, lo, hi), hi)
        out.extend(self.ticket_events.get(day, ()))
        self._call(out, day, lo, hi, frac)
        if rng.random() < config.holding_report_rate * len(self.holdings) * frac:
            product = _pick(rng, list(self.holdings))
            if product != "savings":
                self.holdings[product] *= rng.lognormvariate(0.0, 0.03)
            attrs = {"product": product, "balance": round(self.holdings[product], 2)}
            out.append((lo + int(rng.random() * (hi - lo)), "product_holding", attrs))
        if day >= 1 and day % config.campaign_every_days == 0 and not self.unsubscribed:
            self._campaign(out, day, day_start, lo, hi)
        out.sort(key=itemgetter(0))
        return out

    def _session(self, out: list[RawEvent], start: int, hi: int) -> None:
        rng, profile, append = self.rng, self.profile, out.append
        rand = rng.random
        duration = round(min(3600.0, 240.0 * rng.lognormvariate(0.0, 0.8)) * 1000)
        duration = max(0, min(duration, hi - 1 - start))
        span = duration + 1
        append((start, "login", {"channel": profile.channel}))
        for _ in range(_poisson(rng, 1.5)):
            if rand() < 0.3:
                cum = self.page_weights
                product = self.config.products[bisect.bisect(cum, rand() * cum[-1])]
                page = "products/" + product
            else:
                page = _pick(rng, PAGES)
            append((start + int(rand() * span), "page_view", {"page": page}))
        for _ in range(_poisson(rng, 0.8)):
            append((start + int(rand() * span), "app_click", {"element": _pick(rng, ELEMENTS)}))
        features = profile.adopted_features
        uses = [_pick(rng, features) for _ in range(_poisson(rng, 0.6))] if features else []
        uses += [_pick(rng, OTHER_FEATURES) for _ in range(_poisson(rng, 0.15))]
        for feature in uses:
            append((start + int(rand() * span), "feature_used", {"feature": feature}))
        append((start + duration, "session", {"duration_s": duration / 1000}))

    def _purchase(self, out: list[RawEvent], at: int, hi: int) -> None:
        config, profile, rng = self.config, self.profile, self.rng
        weights = purchase_propensity(config, profile.affinities, self.holdings)
        product = rng.choices(config.products, weights=list(weights.values()))[0]
        amount = round(max(0.01, profile.spend_level * rng.lognormvariate(0.0, 0.6)), 2)
        attrs = {"amount": amount, "currency": config.currency, "product": product}
        out.append((at, "purchase", attrs))
        if product not in self.holdings:
            self.holdings[product] = balance = initial_balance(rng, product, profile.spend_level)
            holding = {"product": product, "balance": balance}
            out.append((min(at + 1000, hi - 1), "product_holding", holding))
        elif product == "savings":
            self.holdings["savings"] += amount

    def _call(self, out: list[RawEvent], day: int, lo: int, hi: int, frac: float) -> None:
        config, rng = self.config, self.rng
        chance = config.call_center_rate * frac
        ticket_from = self.ticket_call_from.get(day)
        if ticket_from is not None:
            chance += config.call_center_ticket_boost
        if rng.random() >= chance:
            return
        if ticket_from is not None and max(lo, ticket_from) < hi:
            at = rng.randrange(max(lo, ticket_from), hi)
            reason = "ticket_followup" if rng.random() < 0.7 else _pick(rng, CALL_REASONS)
        else:
            at, reason = rng.randrange(lo, hi), _pick(rng, CALL_REASONS)
        out.append((at, "call_center", {"reason": reason}))

    def _campaign(self, out: list[RawEvent], day: int, day_start: int, lo: int, hi: int) -> None:
        config, profile, rng = self.config, self.profile, self.rng
        wave = day // config.campaign_every_days
        product = config.products[(wave - 1) % len(config.products)]
        at = day_start + 9 * HOUR_MS + rng.randrange(2 * HOUR_MS)
        if not lo <= at < hi or rng.random() >= config.campaign_reach:
            return
        variant = "A" if rng.random() < 0.5 else "B"
        base = {"campaign": f"{product}-wave{wave:02d}", "variant": variant}
        weight = purchase_propensity(config, profile.affinities, self.holdings)[product]
        click = 0.25 * (config.variant_b_click_uplift if variant == "B" else 1.0)
        funnel = (
            ("opened", min(0.9, 0.15 + 0.5 * profile.engagement), 2 * HOUR_MS),
            ("clicked", min(0.95, click), 10 * 60_000),
            ("converted", min(0.9, config.campaign_conversion * weight), 30 * 60_000),
        )
        out.append((at, "campaign_response", {**base, "outcome": "delivered"}))
        if rng.random() < 0.01:
            self.unsubscribed = True
            at += 1 + round(rng.expovariate(1.0) * HOUR_MS)
            if at < hi:
                out.append((at, "campaign_response", {**base, "outcome": "unsubscribed"}))
            return
        for outcome, chance, mean_gap in funnel:
            if rng.random() >= chance:
                return
            at += 1 + round(rng.expovariate(1.0) * mean_gap)
            if at >= hi:
                return
            out.append((at, "campaign_response", {**base, "outcome": outcome}))


def generate_events(
    config: PopulationConfig, profiles: Sequence[CustomerProfile] | None = None
) -> Iterator[dict[str, Any]]:
    """The population's events as schema-v1 wire dicts, merged in event-time order.

    ``profiles`` may be passed to reuse ``generate_customers(config)``. With
    ``config.late_fraction > 0`` some events are emitted late (see the module docstring).
    """
    stream = _ordered_events(config, profiles)
    if config.late_fraction > 0 and config.max_lateness_seconds > 0:
        stream = _emit_some_late(stream, config)
    return stream


def _ordered_events(
    config: PopulationConfig, profiles: Sequence[CustomerProfile] | None
) -> Iterator[dict[str, Any]]:
    if profiles is None:
        profiles = generate_customers(config)
    prefix = f"s{config.seed}-"
    # One detail stream for the whole population, drawn in a fixed order (day, then join order):
    # a per-customer Random would cost 2.5 kB of state per customer.
    rng = random.Random(f"segflow-sim/{config.seed}/detail")
    waiting = sorted(profiles, key=lambda p: (p.join_day, p.index), reverse=True)
    active: list[_CustomerSim] = []
    for day in range(config.days):
        day_start = config.start_ms + day * DAY_MS
        while waiting and waiting[-1].join_day <= day:
            active.append(_CustomerSim(config, waiting.pop(), rng))
        active = [sim for sim in active if sim.profile.end_ms > day_start]
        batch: list[tuple[int, int, int, str, str, dict[str, Any]]] = []
        for sim in active:
            index, cid = sim.profile.index, sim.profile.customer_id
            for ts, kind, attrs in sim.day(day):
                sim.seq += 1
                batch.append((ts, index, sim.seq, cid, kind, attrs))
        batch.sort()  # (ts, index, seq) is unique, so the rest is never compared
        for ts, _, seq, cid, kind, attrs in batch:
            yield {
                "v": SCHEMA_VERSION,
                "event_id": f"{prefix}{cid}-{seq:06d}",
                "customer_id": cid,
                "type": kind,
                "ts": ts,
                "attrs": attrs,
            }


def _emit_some_late(events: Iterable[dict[str, Any]], config: PopulationConfig) -> Iterator[dict[str, Any]]:
    """Hold back ``late_fraction`` of events by 1 ms..``max_lateness_seconds`` of event time."""
    rng = random.Random(f"segflow-sim/{config.seed}/late")
    max_delay = config.max_lateness_seconds * 1000
    held: list[tuple[int, int, dict[str, Any]]] = []
    for order, event in enumerate(events):
        ts = event["ts"]
        delay = rng.randint(1, max_delay) if rng.random() < config.late_fraction else 0
        heapq.heappush(held, (ts + delay, order, event))
        while held[0][0] <= ts:
            yield heapq.heappop(held)[2]
            if not held:
                break
    while held:
        yield heapq.heappop(held)[2]


def to_event(wire: Mapping[str, Any]) -> Event:
    """The typed ``features.event.Event`` of a simulated wire dict (ts in epoch seconds)."""
    return Event(
        event_id=wire["event_id"],
        customer_id=wire["customer_id"],
        type=wire["type"],
        ts=wire["ts"] / 1000,
        attrs=dict(wire.get("attrs") or {}),
    )


def write_jsonl(events: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write events as JSON lines (one compact object per line); returns how many."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event, separators=(",", ":")) + "\n")
            count += 1
    return count


def sample_stream(customers: int = 200, days: int = 90, seed: int = 7) -> list[dict[str, Any]]:
    """A small, fixed demo stream (about 34k events with the defaults)."""
    return list(generate_events(PopulationConfig(customers=customers, days=days, seed=seed)))
