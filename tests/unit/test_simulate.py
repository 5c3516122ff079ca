"""The population simulator: reproducible, schema-valid, ordered, and its drivers hold.

Statistical expectations are computed from the latent profiles (``generate_customers``) with the
documented formulas, and compared with what the event stream shows.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

import pytest

from engine.schemas import validate_event
from features.event import EVENT_TYPES
from models.population import BAD_SEVERITIES, DAY_MS
from models.simulate import (
    PopulationConfig,
    generate_customers,
    generate_events,
    purchase_propensity,
    sample_stream,
    to_event,
    write_jsonl,
)

SMALL = PopulationConfig(customers=120, days=30, seed=3)
MODERATE = PopulationConfig(customers=2000, days=90, seed=11)


@pytest.fixture(scope="module")
def population() -> tuple[list[Any], list[dict[str, Any]]]:
    profiles = generate_customers(MODERATE)
    gc.disable()  # ~300k live dicts: skip the repeated full collections while building them
    try:
        return profiles, list(generate_events(MODERATE, profiles))
    finally:
        gc.enable()


@pytest.fixture(scope="module")
def by_customer(population: tuple[list[Any], list[dict[str, Any]]]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for event in population[1]:
        grouped[event["customer_id"]].append(event)
    return grouped


def test_same_seed_same_stream_and_different_seed_differs() -> None:
    first = list(generate_events(SMALL))
    assert first == list(generate_events(SMALL))
    assert generate_customers(SMALL) == generate_customers(SMALL)
    other = list(generate_events(replace(SMALL, seed=4)))
    assert [e["ts"] for e in other] != [e["ts"] for e in first]


def test_customers_do_not_depend_on_population_size() -> None:
    small = generate_customers(replace(SMALL, customers=40))
    assert small == generate_customers(SMALL)[:40]


def test_every_event_validates_and_ids_are_unique(population) -> None:
    _, events = population
    for event in events:
        validate_event(event, currency="EUR")
    assert len({e["event_id"] for e in events}) == len(events)
    # score events come from an external batch job, not from the customers simulated
    assert set(Counter(e["type"] for e in events)) == set(EVENT_TYPES) - {"score"}


def test_stream_is_in_event_time_order(population) -> None:
    _, events = population
    stamps = [e["ts"] for e in events]
    assert all(a <= b for a, b in itertools.pairwise(stamps))
    assert stamps[0] >= MODERATE.start * 1000
    assert stamps[-1] < MODERATE.end_ms


def test_customers_are_silent_before_joining_and_after_churning(population, by_customer) -> None:
    profiles, _ = population
    churned = 0
    for profile in profiles:
        events = by_customer.get(profile.customer_id, [])
        if profile.churned:
            churned += 1
            assert profile.end_ms == MODERATE.start_ms + profile.churn_day * DAY_MS
        for event in events:
            assert profile.join_ms <= event["ts"] < profile.end_ms
    assert 0.05 * len(profiles) < churned < 0.4 * len(profiles)


def test_new_joiners_are_staggered_and_start_with_an_account(population, by_customer) -> None:
    profiles, _ = population
    joiners = [p for p in profiles if p.segment == "new"]
    assert len({p.join_day for p in joiners}) > 30
    for profile in joiners:
        assert profile.join_day >= 1
        first = by_customer[profile.customer_id][0]
        assert first["type"] == "product_holding"
        assert first["attrs"]["product"] == "current_account"
        assert first["ts"] == profile.join_ms


def test_tickets_open_and_close_with_the_same_id(population, by_customer) -> None:
    profiles, _ = population
    for profile in profiles:
        tickets = [e for e in by_customer.get(profile.customer_id, []) if e["type"] == "support_ticket"]
        opened = {e["attrs"]["ticket_id"]: e for e in tickets if e["attrs"]["status"] == "opened"}
        closed = {e["attrs"]["ticket_id"]: e for e in tickets if e["attrs"]["status"] == "closed"}
        assert set(closed) <= set(opened)
        for ticket_id, close in closed.items():
            assert close["ts"] >= opened[ticket_id]["ts"]
            assert close["attrs"]["severity"] == opened[ticket_id]["attrs"]["severity"]
        assert sorted(opened) == sorted(t.ticket_id for t in profile.tickets)


def test_key_features_come_only_from_adopters(population, by_customer) -> None:
    profiles, _ = population
    for profile in profiles:
        used = {
            e["attrs"]["feature"]
            for e in by_customer.get(profile.customer_id, [])
            if e["type"] == "feature_used"
        }
        assert used & set(MODERATE.key_features) <= set(profile.adopted_features)


def test_volume_is_realistic(population) -> None:
    profiles, events = population
    weeks = sum(p.exposure_days for p in profiles) / 7
    assert 5 <= len(events) / weeks <= 30


def test_purchases_and_sessions_follow_profile_rates(population, by_customer) -> None:
    profiles, _ = population
    observed: Counter[str] = Counter()
    expected: defaultdict[str, float] = defaultdict(float)
    sessions_seen = sessions_expected = 0.0
    for profile in profiles:
        events = by_customer.get(profile.customer_id, [])
        observed[profile.segment] += sum(e["type"] == "purchase" for e in events)
        expected[profile.segment] += profile.purchase_rate * profile.exposure_days
        sessions_seen += sum(e["type"] == "session" for e in events)
        sessions_expected += profile.engagement * profile.exposure_days
    for segment in ("champion", "regular", "occasional", "new"):
        assert observed[segment] == pytest.approx(expected[segment], rel=0.12)
    assert sessions_seen == pytest.approx(sessions_expected, rel=0.05)

    def per_customer_day(segment: str) -> float:
        days = sum(p.exposure_days for p in profiles if p.segment == segment)
        return observed[segment] / days

    assert per_customer_day("champion") > 4 * per_customer_day("occasional")


def test_churn_without_tickets_matches_the_baseline_hazard() -> None:
    config = replace(MODERATE, ticket_rate=0.0)
    profiles = generate_customers(config)
    expected = 0.0
    for p in profiles:
        draws = max(0, config.days - 1 - p.join_day)  # day-end draws within the horizon
        expected += 1 - (1 - p.churn_hazard) ** draws
    observed = sum(p.churned for p in profiles)
    assert abs(observed - expected) < 4 * math.sqrt(expected)


def test_support_tickets_drive_churn(population, by_customer) -> None:
    profiles, _ = population
    groups: defaultdict[str, list[bool]] = defaultdict(list)
    for profile in profiles:
        opened = [
            e
            for e in by_customer.get(profile.customer_id, [])
            if e["type"] == "support_ticket" and e["attrs"]["status"] == "opened"
        ]
        bad = any(e["attrs"]["severity"] in BAD_SEVERITIES for e in opened)
        if not opened:
            groups["none"].append(profile.churned)
        elif not bad:
            groups["low or medium only"].append(profile.churned)
        else:
            groups["high or critical"].append(profile.churned)
        if len(opened) >= 2:
            groups["two or more"].append(profile.churned)
    assert min(len(flags) for flags in groups.values()) > 150
    rate = {name: sum(flags) / len(flags) for name, flags in groups.items()}
    assert rate["low or medium only"] > 1.4 * rate["none"]
    assert rate["two or more"] > 2 * rate["none"]
    assert rate["high or critical"] > 2.5 * rate["none"]


def test_engagement_and_key_features_lower_churn() -> None:
    config = replace(MODERATE, ticket_rate=0.0, customers=4000)
    profiles = [p for p in generate_customers(config) if p.join_day == 0]
    engaged = [p.churned for p in profiles if p.engagement > 0.5]
    disengaged = [p.churned for p in profiles if p.engagement < 0.1]
    assert sum(engaged) / len(engaged) < 0.6 * sum(disengaged) / len(disengaged)
    adopters = [p.churned for p in profiles if len(p.adopted_features) >= 2]
    non_adopters = [p.churned for p in profiles if not p.adopted_features]
    assert sum(adopters) / len(adopters) < 0.8 * sum(non_adopters) / len(non_adopters)


def test_savings_make_mortgage_acquisition_more_likely(population, by_customer) -> None:
    profiles, _ = population
    # group -> [customers, customers who bought a mortgage, expected such customers]
    tally: dict[str, list[float]] = {"savings >= 10k": [0, 0, 0.0], "no savings": [0, 0, 0.0]}
    for profile in profiles:
        if "mortgage" in profile.initial_holdings:
            continue
        savings = profile.initial_holdings.get("savings")
        if savings is None:
            group = "no savings"
        elif savings >= 10_000:
            group = "savings >= 10k"
        else:
            continue
        products = [
            e["attrs"]["product"] for e in by_customer.get(profile.customer_id, []) if e["type"] == "purchase"
        ]
        # Chance that one of these purchases is a mortgage, at the holdings the customer joined
        # with (savings then only grow, so this slightly underestimates).
        weights = purchase_propensity(MODERATE, profile.affinities, profile.initial_holdings)
        share = weights["mortgage"] / sum(weights.values())
        tally[group][0] += 1
        tally[group][1] += "mortgage" in products
        tally[group][2] += 1 - (1 - share) ** len(products)
    rate = {group: bought / customers for group, (customers, bought, _) in tally.items()}
    assert rate["savings >= 10k"] > 1.8 * rate["no savings"]
    for _, bought, expected in tally.values():
        assert bought == pytest.approx(expected, rel=0.35)


def test_variant_b_gets_more_clicks(population) -> None:
    _, events = population
    counts: Counter[tuple[str, str]] = Counter()
    for event in events:
        if event["type"] == "campaign_response":
            counts[(event["attrs"]["variant"], event["attrs"]["outcome"])] += 1
    click_rate = {v: counts[(v, "clicked")] / counts[(v, "opened")] for v in "AB"}
    assert click_rate["B"] > click_rate["A"]


def test_late_emission_is_bounded_and_keeps_event_times() -> None:
    ordered = list(generate_events(SMALL))
    late_config = replace(SMALL, late_fraction=0.2, max_lateness_seconds=900)
    late = list(generate_events(late_config))
    assert late == list(generate_events(late_config))
    assert sorted(late, key=lambda e: e["event_id"]) == sorted(ordered, key=lambda e: e["event_id"])
    assert late != ordered
    high_water = 0
    out_of_order = 0
    for event in late:
        if event["ts"] < high_water:
            out_of_order += 1
            assert high_water - event["ts"] <= 900_000
        high_water = max(high_water, event["ts"])
    assert out_of_order > 0.05 * len(late)
    assert list(generate_events(replace(SMALL, late_fraction=0.0))) == ordered


def test_write_jsonl_and_helpers(tmp_path) -> None:
    events = sample_stream(customers=15, days=10, seed=7)
    assert events == sample_stream(customers=15, days=10, seed=7)
    path = tmp_path / "events.jsonl"
    assert write_jsonl(events, path) == len(events) > 0
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events
    typed = to_event(events[0])
    assert typed == validate_event(events[0], currency="EUR")


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        PopulationConfig(customers=10, late_fraction=1.5)
    with pytest.raises(ValueError):
        PopulationConfig(customers=10, days=0)
