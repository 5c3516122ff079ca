"""The per-event fast path of the rules over simulated customers equals the plain one.

``RuleVariables.values_of`` against ``RuleVariables.get``, ``evaluate_rules`` on the variables
against the same on a plain dict, compiled expressions and first-entering functions against the
closure trees, ``next_due`` with ``TimeModel.earliest`` against asking ``TimeModel.crossing``
point by point, and the quintile and window loops against the formulas they replaced.
"""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.rules.evaluate import Membership, changed_decisions, evaluate_rules, next_due
from engine.rules.loader import DEFAULT_RULES_PATH, load_rules
from engine.rules.model import RuleSet
from engine.rules.variables import known_variables
from engine.segmentation import PopulationCuts, RuleVariables, TimeModel, _next_bucket_expiry
from features.catalogue import catalogue, snapshot
from features.config import FeatureConfig
from features.state import apply_event
from models.population import PopulationConfig
from models.registry import model_specs
from models.simulate import generate_events, to_event

CONFIG = FeatureConfig()
MODELS = [spec.name for spec in model_specs(CONFIG.products)]
KNOWN = known_variables([spec.name for spec in catalogue(CONFIG)] + ["days_since_last_activity"], MODELS)
DAY = 86_400.0
RESCORE = 7 * DAY


def quintile_cuts(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return [ordered[-(-k * len(ordered) // 5) - 1] for k in range(1, 5)] if ordered else []


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(DEFAULT_RULES_PATH, KNOWN)


@pytest.fixture(scope="module")
def moments(rules: RuleSet) -> list[tuple[RuleVariables, dict[str, Membership], float]]:
    """(variables, memberships, as_of) at every 3rd event of a small simulated population."""
    rng = random.Random(11)
    states: dict = {}
    memberships: dict[str, dict[str, Membership]] = {}
    cuts = PopulationCuts()
    out = []
    events = generate_events(PopulationConfig(customers=80, days=120, seed=4))
    for index, wire in enumerate(events):
        event = to_event(wire)
        state, applied = apply_event(states.get(event.customer_id), event, CONFIG)
        states[event.customer_id] = state
        if index % 500 == 0:
            buyers = [s for s in states.values() if s.orders]
            raw = {
                "recency": quintile_cuts([s.last_purchase_ts for s in buyers]),
                "frequency": quintile_cuts([s.orders for s in buyers]),
                "monetary": quintile_cuts([s.revenue_minor for s in buyers]),
            }
            cuts = PopulationCuts.from_cuts(raw, event.ts)
        if not applied or index % 3:
            continue
        scores = {name: rng.random() for name in MODELS}
        frozen = copy.deepcopy(state)  # later events change the state in place
        variables = RuleVariables(snapshot(event.customer_id, frozen, CONFIG), scores, cuts, frozen)
        current = memberships.setdefault(event.customer_id, {})
        out.append((variables, dict(current), state.last_ts))
        for decision in evaluate_rules(rules, variables, current, state.last_ts):
            membership = decision.membership()
            if membership is None:
                current.pop(decision.family, None)
            else:
                current[decision.family] = membership
    return out


def test_values_of_reads_what_get_reads(rules: RuleSet, moments: list) -> None:
    for variables, _, _ in moments:
        values = variables.values_of(rules.expression_names)
        assert {n: values.get(n) for n in rules.names} == {n: variables.get(n) for n in rules.names}


def test_evaluate_rules_on_variables_equals_on_a_plain_dict(rules: RuleSet, moments: list) -> None:
    changes = 0
    for variables, current, as_of in moments:
        plain = {name: variables.get(name) for name in rules.names}
        decisions = evaluate_rules(rules, variables, current, as_of)
        assert decisions == evaluate_rules(rules, plain, current, as_of)
        changes += sum(d.changed for d in decisions)
    assert changes > 50  # the sample moves customers between segments


def test_compiled_expressions_and_families_equal_the_closures(rules: RuleSet, moments: list) -> None:
    expressions = [e for f in rules.families for s in f.segments for e in s.expressions()]
    assert all(e.compiled for e in expressions)
    for variables, _, _ in moments[::4]:
        values = variables.values_of(rules.expression_names)
        for expression in expressions:
            assert expression.evaluate(values) == expression.closure(variables)
        for family in rules.families:
            for before in range(len(family.segments) + 1):
                first = next((s for s in family.segments[:before] if s.enter.closure(values)), None)
                assert family.first_entering(values, before) is first
            for segment in family.segments:
                label = next((text for when, text in segment.labels if when.closure(values)), segment.label)
                assert segment.label_of(values) == label


@pytest.mark.parametrize("later_days", [0.0, 0.4, 3.0, 40.0])
def test_next_due_with_earliest_equals_asking_each_point(
    rules: RuleSet, moments: list, later_days: float
) -> None:
    due_some = 0
    for variables, current, last_ts in moments[::2]:
        as_of = last_ts + later_days * DAY
        if later_days:
            features = snapshot(variables.features.customer_id, variables.state, CONFIG, as_of)
            variables = RuleVariables(features, variables.scores, variables.cuts, variables.state)
        time_model = TimeModel(variables, CONFIG, as_of, RESCORE)
        expected = next_due(rules, variables, current, as_of, time_model.crossing)
        assert (
            next_due(rules, variables, current, as_of, time_model.crossing, time_model.earliest) == expected
        )
        for name, thresholds in rules.crossing_names:
            dues = [time_model.crossing(name, t) for t in thresholds]
            for after in (as_of, as_of + 5 * DAY):
                later = [d for d in dues if d is not None and d > after]
                assert time_model.earliest(((name, thresholds),), after) == min(later, default=None)
        due_some += expected is not None
    assert due_some > 0


@given(
    st.lists(st.floats(0, 400), max_size=4),
    st.lists(st.integers(0, 30), max_size=4),
    st.one_of(st.none(), st.floats(0, 500)),
    st.integers(-2, 40),
)
def test_quintiles_and_r_drop_equal_the_counting_formulas(
    recency: list[float], counts: list[int], days: float | None, orders: int
) -> None:
    cuts = PopulationCuts(tuple(recency), tuple(counts), tuple(c * 100 for c in counts))
    r_expected = None if days is None or not recency else 1 + sum(1 for c in recency if days < c)
    assert cuts.r_score(days) == r_expected
    f_expected = None if orders <= 0 or not counts else 1 + sum(1 for c in counts if orders > c)
    assert cuts.f_score(orders) == f_expected
    m_expected = None if orders <= 0 or not counts else 1 + sum(1 for c in counts if orders * 90 > c * 100)
    assert cuts.m_score(orders * 90, orders) == m_expected
    drop = None if days is None else min([c - days for c in recency if c > days], default=None)
    assert cuts.next_r_drop(days) == drop


@given(st.dictionaries(st.integers(0, 60), st.integers(1, 3)), st.integers(0, 60), st.integers(1, 30))
def test_next_bucket_expiry_equals_the_oldest_bucket_formula(buckets: dict, today: int, days: int) -> None:
    inside = [day for day in buckets if today - days + 1 <= day <= today]
    expected = (min(inside) + days) * DAY if inside else None
    assert _next_bucket_expiry(buckets, today, days) == expected


def test_changed_decisions_are_the_decisions_that_change(rules: RuleSet, moments: list) -> None:
    changes = 0
    for variables, current, as_of in moments:
        expected = [d for d in evaluate_rules(rules, variables, current, as_of) if d.changed]
        assert changed_decisions(rules, variables, current, as_of) == expected
        changes += len(expected)
    assert changes > 50
