"""The latent side of the simulator: configuration, customer traits and life plans.

A customer is drawn from two independent random streams seeded by ``(seed, index)`` only, so
customer ``c000042`` has the same profile whatever the population size:

* ``traits``: segment, join day, engagement, spend, ticket propensity, affinities, holdings;
* ``life``: the support tickets (open and close times, severity) and the churn day.

The individual events of each day come from a separate, population-wide stream in
``models.simulate``. Churn depends only on traits and tickets, never on those events, so
``generate_customers`` knows every customer's churn day without emitting a single event and
``generate_events`` replays exactly the same lives. The drivers are documented in
``models.simulate``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
DEFAULT_START = 1_767_225_600  # 2026-01-01T00:00:00Z
DEFAULT_PRODUCTS = ("mortgage", "credit_card", "savings", "current_account", "insurance")
DEFAULT_KEY_FEATURES = ("payments", "budgeting", "alerts", "card_controls")
SEVERITIES = ("low", "medium", "high", "critical")
BAD_SEVERITIES = frozenset({"high", "critical"})
SEVERITY_WEIGHTS = (0.45, 0.35, 0.15, 0.05)
# Median days until a ticket of each severity is closed.
RESOLUTION_DAYS = {"low": 0.8, "medium": 2.0, "high": 4.0, "critical": 6.0}
# Typical affinity of an average customer for each product (others get 0.3).
PRODUCT_POPULARITY = {
    "current_account": 0.6,
    "credit_card": 0.4,
    "savings": 0.35,
    "insurance": 0.2,
    "mortgage": 0.06,
}


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """One customer type: its share of the population and its mean behaviour."""

    name: str
    share: float
    engagement: float  # mean sessions per active day
    purchases_per_day: float  # mean purchases per active day
    spend_level: float  # median purchase amount, in the configured currency
    joins_late: bool = False  # joins on a day after the start instead of before it


DEFAULT_SEGMENTS = (
    SegmentSpec("champion", 0.10, engagement=0.90, purchases_per_day=0.30, spend_level=90.0),
    SegmentSpec("regular", 0.35, engagement=0.45, purchases_per_day=0.10, spend_level=45.0),
    SegmentSpec("occasional", 0.30, engagement=0.15, purchases_per_day=0.03, spend_level=30.0),
    SegmentSpec("new", 0.15, engagement=0.40, purchases_per_day=0.07, spend_level=40.0, joins_late=True),
    SegmentSpec("dormant", 0.10, engagement=0.03, purchases_per_day=0.005, spend_level=25.0),
)


@dataclass(frozen=True)
class PopulationConfig:
    """Everything that defines a synthetic population; the same config gives the same stream."""

    customers: int
    seed: int = 0
    start: int = DEFAULT_START  # epoch seconds of day 0, 00:00 UTC
    days: int = 120
    currency: str = "EUR"
    products: tuple[str, ...] = DEFAULT_PRODUCTS
    key_features: tuple[str, ...] = DEFAULT_KEY_FEATURES
    segments: tuple[SegmentSpec, ...] = DEFAULT_SEGMENTS
    # Churn driver: daily hazard = baseline * (1 + open_effect * open tickets
    #   + recent_effect * tickets opened in the memory window + bad_effect * bad ones of those).
    base_churn_hazard: float = 0.0015  # daily, at zero engagement and no key features
    engagement_churn_effect: float = 1.5  # baseline *= exp(-effect * engagement)
    feature_churn_effect: float = 0.25  # baseline *= (1 - effect) ** adopted key features
    open_ticket_churn_effect: float = 1.5
    recent_ticket_churn_effect: float = 4.0
    bad_ticket_churn_effect: float = 8.0
    ticket_memory_days: float = 30.0
    max_daily_churn_hazard: float = 0.5
    key_feature_adoption: float = 0.35  # chance of adopting each key feature, independently
    ticket_rate: float = 0.012  # mean support tickets per customer per day (gamma spread)
    # Activity.
    call_center_rate: float = 0.004  # daily chance of a call without an open ticket
    call_center_ticket_boost: float = 0.25  # extra daily chance while a ticket is open
    holding_report_rate: float = 1 / 30  # daily chance of a balance report per held product
    # Purchase propensity driver.
    new_product_factor: float = 0.25  # weight of a product not held yet, relative to held ones
    savings_mortgage_scale: float = 10_000.0  # mortgage weight *= 1 + savings balance / scale
    held_mortgage_factor: float = 0.1  # mortgage weight when one is already held
    mortgage_insurance_boost: float = 2.0  # insurance weight when a mortgage is held
    # Campaigns: one wave every ``campaign_every_days``, cycling through the products.
    campaign_every_days: int = 14
    campaign_reach: float = 0.6
    variant_b_click_uplift: float = 1.3
    campaign_conversion: float = 1.0  # converted chance = min(0.9, this * propensity weight)
    # Out-of-order emission (event time is never changed).
    late_fraction: float = 0.0
    max_lateness_seconds: int = 3600

    def __post_init__(self) -> None:
        if self.customers < 0:
            raise ValueError("customers must not be negative")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not self.products:
            raise ValueError("at least one product is needed")
        if not self.segments or any(s.share < 0 for s in self.segments):
            raise ValueError("segments need non-negative shares")
        if sum(s.share for s in self.segments) <= 0:
            raise ValueError("segment shares must not all be zero")
        if not 0.0 <= self.late_fraction <= 1.0:
            raise ValueError("late_fraction must be in [0, 1]")
        if self.max_lateness_seconds < 0:
            raise ValueError("max_lateness_seconds must not be negative")
        if self.campaign_every_days < 1:
            raise ValueError("campaign_every_days must be at least 1")

    @property
    def start_ms(self) -> int:
        """Day 0 in epoch milliseconds."""
        return self.start * 1000

    @property
    def end_ms(self) -> int:
        """The end of the horizon (exclusive) in epoch milliseconds."""
        return self.start_ms + self.days * DAY_MS

    @property
    def primary_product(self) -> str:
        """The product every customer holds from joining (the current account if offered)."""
        return "current_account" if "current_account" in self.products else self.products[0]


@dataclass(frozen=True, slots=True)
class Ticket:
    """A planned support ticket; ``closed_ms`` is None if it is still open at the end."""

    ticket_id: str
    severity: str
    opened_ms: int
    closed_ms: int | None

    @property
    def bad(self) -> bool:
        """High or critical severity: these drive churn hardest."""
        return self.severity in BAD_SEVERITIES


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """The latent truth about one customer, for tests and for evaluating models."""

    index: int
    customer_id: str
    segment: str
    join_day: int
    join_ms: int  # first possible event time (day 0 start for existing customers)
    end_ms: int  # churn time, or the end of the horizon
    engagement: float  # expected sessions per active day
    purchase_rate: float  # expected purchases per active day
    spend_level: float  # median purchase amount
    ticket_rate: float  # expected support tickets per active day
    preferred_hour: float  # centre of the customer's daily activity, hours UTC
    channel: str  # "app" or "web", the usual login channel
    adopted_features: tuple[str, ...]  # key features this customer uses
    affinities: dict[str, float]  # product -> affinity in (0, 1]
    initial_holdings: dict[str, float]  # product -> balance at join
    daily_saving: float = 0.0  # added to the savings balance each active day
    churn_hazard: float = 0.0  # baseline daily churn hazard, before ticket effects
    tickets: tuple[Ticket, ...] = ()
    churn_day: int | None = None  # no events at or after the start of this day

    @property
    def churned(self) -> bool:
        """Whether the customer churns within the horizon."""
        return self.churn_day is not None

    @property
    def exposure_days(self) -> float:
        """Active time within the horizon, in days (join to churn or horizon end)."""
        return max(0, self.end_ms - self.join_ms) / DAY_MS


def customer_id(index: int) -> str:
    """The id of the ``index``-th customer, e.g. ``c000123``."""
    return f"c{index:06d}"


def customer_rng(seed: int, index: int, stream: str) -> random.Random:
    """An independent, reproducible random stream for one customer (sha512 string seeding)."""
    return random.Random(f"segflow-sim/{seed}/{index}/{stream}")


def baseline_churn_hazard(config: PopulationConfig, engagement: float, adopted: int) -> float:
    """Daily churn hazard without tickets: falls with engagement and key-feature adoption."""
    return (
        config.base_churn_hazard
        * math.exp(-config.engagement_churn_effect * engagement)
        * (1.0 - config.feature_churn_effect) ** adopted
    )


def daily_churn_hazard(
    config: PopulationConfig,
    baseline: float,
    open_tickets: int,
    recent_tickets: int,
    recent_bad_tickets: int,
) -> float:
    """Daily churn hazard given open tickets and tickets opened within the memory window.

    ``recent_tickets`` counts every ticket opened in the last ``ticket_memory_days``;
    ``recent_bad_tickets`` the high or critical ones among them (counted in both).
    """
    factor = (
        1.0
        + config.open_ticket_churn_effect * open_tickets
        + config.recent_ticket_churn_effect * recent_tickets
        + config.bad_ticket_churn_effect * recent_bad_tickets
    )
    return min(config.max_daily_churn_hazard, baseline * factor)


def purchase_propensity(
    config: PopulationConfig, affinities: Mapping[str, float], holdings: Mapping[str, float]
) -> dict[str, float]:
    """Relative weight of buying each product, given affinities and current holdings."""
    savings = max(0.0, holdings.get("savings", 0.0))
    weights = {}
    for product in config.products:
        weight = affinities[product]
        if product not in holdings:
            weight *= config.new_product_factor
        if product == "mortgage":
            if "mortgage" in holdings:
                weight *= config.held_mortgage_factor
            else:
                weight *= 1.0 + savings / config.savings_mortgage_scale
        elif product == "insurance" and "mortgage" in holdings:
            weight *= config.mortgage_insurance_boost
        weights[product] = weight
    return weights


def initial_balance(rng: random.Random, product: str, spend_level: float) -> float:
    """A plausible starting balance of ``product`` for a customer of ``spend_level``."""
    if product == "mortgage":
        value = 180_000.0 * rng.lognormvariate(0.0, 0.5)
    elif product == "savings":
        value = spend_level * 150.0 * rng.lognormvariate(0.0, 1.0)
    elif product == "current_account":
        value = spend_level * 30.0 * rng.lognormvariate(0.0, 0.7)
    elif product == "credit_card":
        value = spend_level * 8.0 * rng.lognormvariate(0.0, 0.6)
    else:
        value = spend_level * 20.0 * rng.lognormvariate(0.0, 0.7)
    return round(value, 2)


def generate_customers(config: PopulationConfig) -> list[CustomerProfile]:
    """Every customer's latent traits, tickets and churn day (no events are generated)."""
    return [make_profile(config, index) for index in range(config.customers)]


def make_profile(config: PopulationConfig, index: int) -> CustomerProfile:
    """Draw one customer's traits and life plan from its own seeded streams."""
    rng = customer_rng(config.seed, index, "traits")
    cid = customer_id(index)
    spec = rng.choices(config.segments, weights=[s.share for s in config.segments])[0]
    if spec.joins_late and config.days > 1:
        join_day = rng.randrange(1, config.days)
        join_ms = config.start_ms + join_day * DAY_MS + round(rng.uniform(8, 20) * HOUR_MS)
    else:
        join_day, join_ms = 0, config.start_ms
    engagement = spec.engagement * rng.lognormvariate(0.0, 0.35)
    purchase_rate = spec.purchases_per_day * rng.lognormvariate(0.0, 0.35)
    spend_level = spec.spend_level * rng.lognormvariate(0.0, 0.4)
    ticket_rate = config.ticket_rate * rng.gammavariate(0.8, 1 / 0.8)
    preferred_hour = min(21.5, max(7.0, rng.gauss(14.0, 3.0)))
    channel = "app" if rng.random() < 0.65 else "web"
    adopted = tuple(f for f in config.key_features if rng.random() < config.key_feature_adoption)
    affinities = {
        p: min(1.0, PRODUCT_POPULARITY.get(p, 0.3) * rng.lognormvariate(0.0, 0.5)) for p in config.products
    }
    primary = config.primary_product
    holdings = {primary: initial_balance(rng, primary, spend_level)}
    if not spec.joins_late:
        for product in config.products:
            if product != primary and rng.random() < min(0.9, 1.5 * affinities[product]):
                holdings[product] = initial_balance(rng, product, spend_level)
    daily_saving = round(spend_level * rng.uniform(0.0, 0.3), 2)
    baseline = baseline_churn_hazard(config, engagement, len(adopted))
    tickets, churn_day = _plan_life(config, index, join_day, join_ms, ticket_rate, baseline)
    end_ms = config.end_ms if churn_day is None else config.start_ms + churn_day * DAY_MS
    return CustomerProfile(
        index=index,
        customer_id=cid,
        segment=spec.name,
        join_day=join_day,
        join_ms=join_ms,
        end_ms=end_ms,
        engagement=engagement,
        purchase_rate=purchase_rate,
        spend_level=spend_level,
        ticket_rate=ticket_rate,
        preferred_hour=preferred_hour,
        channel=channel,
        adopted_features=adopted,
        affinities=affinities,
        initial_holdings=holdings,
        daily_saving=daily_saving,
        churn_hazard=baseline,
        tickets=tuple(
            Ticket(
                ticket_id=f"T-{cid}-{n:02d}",
                severity=severity,
                opened_ms=opened,
                closed_ms=closed if closed < end_ms else None,
            )
            for n, (opened, severity, closed) in enumerate(tickets, start=1)
            if opened < end_ms
        ),
        churn_day=churn_day,
    )


def _plan_life(
    config: PopulationConfig,
    index: int,
    join_day: int,
    join_ms: int,
    ticket_rate: float,
    baseline: float,
) -> tuple[list[tuple[int, str, int]], int | None]:
    """Tickets over the whole horizon, then the churn day they and the baseline imply.

    The churn draw happens at the end of each active day (not the last one); a customer who
    churns at the end of day ``d`` has ``churn_day = d + 1``. Tickets after churn are dropped
    by the caller.
    """
    rng = customer_rng(config.seed, index, "life")
    tickets: list[tuple[int, str, int]] = []
    at = float(join_ms)
    while ticket_rate > 0:
        at += rng.expovariate(ticket_rate) * DAY_MS
        if at >= config.end_ms:
            break
        severity = rng.choices(SEVERITIES, weights=SEVERITY_WEIGHTS)[0]
        resolution = RESOLUTION_DAYS[severity] * rng.lognormvariate(0.0, 0.6)
        tickets.append((round(at), severity, round(at + resolution * DAY_MS)))
    last_draw_day = config.days - 2  # a churn at the very end of the horizon is not observable
    if baseline <= 0 or join_day > last_draw_day:
        return tickets, None
    if not tickets:
        # Constant hazard: the number of surviving day-ends is geometric.
        hazard = min(config.max_daily_churn_hazard, baseline)
        draw = rng.random()
        survived = 0 if hazard >= 1 else int(math.log(1.0 - draw) / math.log(1.0 - hazard))
        churn_day = join_day + survived + 1
        return tickets, (churn_day if churn_day <= config.days - 1 else None)
    window_ms = config.ticket_memory_days * DAY_MS
    for day in range(join_day, last_draw_day + 1):
        day_end = config.start_ms + (day + 1) * DAY_MS
        open_now = recent = recent_bad = 0
        for opened, severity, closed in tickets:
            if opened >= day_end:
                break
            open_now += day_end <= closed
            if day_end - window_ms <= opened:
                recent += 1
                recent_bad += severity in BAD_SEVERITIES
        hazard = daily_churn_hazard(config, baseline, open_now, recent, recent_bad)
        if rng.random() < hazard:
            return tickets, day + 1
    return tickets, None
