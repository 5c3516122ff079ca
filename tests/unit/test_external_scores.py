"""External batch scores (``score`` events): kept in the customer's state by as-of time, never
activity, stored and read back, seen by the rules as ``score_<model>`` and carried in change
events with their version and as-of time."""

from __future__ import annotations

import importlib
import json
import random
from dataclasses import fields
from typing import Any

import msgpack
import pytest

from engine.app import rule_names
from engine.explain import Explanation
from engine.rules.loader import parse_rules
from engine.schemas import validate_event
from engine.segmentation import PopulationCuts
from engine.settings import load_settings
from engine.stream.customer_step import CustomerStep, StepConfig
from engine.stream.external_scores import score_entries, score_entry
from engine.stream.rule_scores import rule_scores
from features.catalogue import snapshot
from features.config import FeatureConfig
from features.event import Event, PositionedEvent
from features.redis_store import STATE_FORMAT, CustomerRecord, decode_state, encode_state
from features.state import CustomerState, apply_event
from models.labels import LabelRules

DAY = 86_400.0
T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z, epoch seconds
CONFIG = FeatureConfig()


def score_event(
    ts: float, value: float, version: str = "rf-1", as_of_ms: int | None = None, model: str = "rf_churn"
) -> Event:
    attrs: dict[str, Any] = {"model": model, "value": value, "version": version}
    if as_of_ms is not None:
        attrs["as_of"] = as_of_ms
    return Event(f"s-{ts}-{version}", "c-1", "score", ts, attrs)


def login(ts: float) -> Event:
    return Event(f"l-{ts}", "c-1", "login", ts, {"channel": "web"})


def fold(events: list[Event], config: FeatureConfig = CONFIG) -> CustomerState:
    state = None
    for event in events:
        state, applied = apply_event(state, event, config)
        assert applied
    assert state is not None
    return state


# --- state: latest by as_of, then ts ----------------------------------------------------------


def test_a_score_event_stores_value_version_and_as_of_defaulting_to_ts() -> None:
    state = fold([login(T0), score_event(T0 + 10, 0.83, "rf-2026-11-30")])
    assert state.external_scores == {"rf_churn": [0.83, "rf-2026-11-30", T0 + 10, T0 + 10]}
    state = fold([score_event(T0 + 10, 0.5, as_of_ms=round((T0 - DAY) * 1000))])
    assert state.external_scores["rf_churn"] == [0.5, "rf-1", T0 - DAY, T0 + 10]


def test_an_older_as_of_does_not_replace_the_stored_score_whatever_its_ts() -> None:
    newer = score_event(T0, 0.9, "v2", as_of_ms=round((T0 - 1 * DAY) * 1000))
    older = score_event(T0 + 3600, 0.1, "v1", as_of_ms=round((T0 - 2 * DAY) * 1000))  # arrives later
    for order in ([newer, older], [older, newer]):
        assert fold(order).external_scores["rf_churn"] == [0.9, "v2", T0 - DAY, T0]


def test_equal_as_of_is_settled_by_ts_then_version_then_value() -> None:
    as_of = round((T0 - DAY) * 1000)
    first, second = score_event(T0, 0.2, "v1", as_of), score_event(T0 + 1, 0.1, "v1", as_of)
    assert fold([second, first]).external_scores["rf_churn"][0] == 0.1  # the later ts
    a, b = score_event(T0, 0.2, "v1", as_of), score_event(T0, 0.1, "v2", as_of)
    assert fold([a, b]).external_scores == fold([b, a]).external_scores
    assert fold([a, b]).external_scores["rf_churn"][1] == "v2"


def test_scores_of_several_models_are_capped_keeping_the_latest_as_of() -> None:
    config = FeatureConfig(max_external_scores=2)
    events = [score_event(T0 + i, 0.5, model=name) for i, name in enumerate(["aa", "bb", "cc"])]
    assert sorted(fold(events, config).external_scores) == ["bb", "cc"]
    assert sorted(fold(events[::-1], config).external_scores) == ["bb", "cc"]


def test_a_score_event_is_not_activity() -> None:
    # A login at T0; the score 5 days later is applied and counted, but read at the same moment
    # every feature equals the one without it: recency, engagement, sessions, activity, tenure.
    without = fold([login(T0)])
    with_score = fold([login(T0), score_event(T0 + 5 * DAY, 0.83)])
    assert with_score.events == 2 and with_score.last_ts == T0 + 5 * DAY
    assert (with_score.engagement, with_score.engagement_ts) == (without.engagement, without.engagement_ts)
    assert with_score.last_login_ts == T0 and with_score.session_days == without.session_days
    at = T0 + 6 * DAY
    assert snapshot("c-1", with_score, CONFIG, at).as_dict() == snapshot("c-1", without, CONFIG, at).as_dict()
    assert snapshot("c-1", with_score, CONFIG, at)["days_since_last_activity"] == 6.0


def test_a_score_event_is_not_engagement_even_if_configured() -> None:
    config = FeatureConfig(engagement_weights={"score": 5.0, "login": 1.0})
    assert fold([score_event(T0, 0.5)], config).engagement == 0.0


def test_a_too_late_score_event_is_dropped_and_counted() -> None:
    state = fold([login(T0 + 10 * DAY)])
    state, applied = apply_event(state, score_event(T0, 0.9), CONFIG)
    assert not applied and state.late_dropped == 1 and state.external_scores == {}


# --- serialisation --------------------------------------------------------------------------


def test_external_scores_survive_the_stored_round_trip() -> None:
    state = fold([login(T0), score_event(T0 + 1, 0.83, "rf-2026-11-30", round(T0 * 1000))])
    assert decode_state(encode_state(state)) == state
    assert CustomerState.from_dict(state.to_dict()) == state


def test_a_record_stored_before_external_scores_reads_with_none() -> None:
    state = fold([login(T0)])
    names = [f.name for f in fields(CustomerState) if f.name != "external_scores"]
    old = msgpack.packb([STATE_FORMAT, *(getattr(state, n) for n in names)], use_bin_type=True)
    assert decode_state(old) == state and decode_state(old).external_scores == {}
    data = state.to_dict()
    del data["external_scores"]
    assert CustomerState.from_dict(data) == state


# --- rules: score_<model>, precedence, change events ------------------------------------------


def test_rule_scores_add_external_ones_below_the_engines_own() -> None:
    state = fold([score_event(T0, 0.83), score_event(T0, 0.4, model="uplift")])
    state.external_scores["churn"] = [0.99, "x", T0, T0]  # as if stored; the schema rejects the name
    engine = {"churn": 0.3, "clv": 12.0}
    scores = rule_scores(engine, {"clv"}, {}, state)
    # churn is warming up: None to the rules, not the external 0.99
    assert scores == {"rf_churn": 0.83, "uplift": 0.4, "clv": 12.0}


def test_score_entries_mark_external_scores_with_version_and_as_of() -> None:
    state = fold([score_event(T0, 0.83, "rf-2026-11-30", round((T0 - DAY) * 1000))])
    entries = score_entries({"rf_churn": 0.83, "clv": 12.0}, state)
    assert entries == {
        "rf_churn": {
            "score": 0.83,
            "version": "rf-2026-11-30",
            "as_of": round((T0 - DAY) * 1000),
            "source": "external",
        },
        "clv": {"score": 12.0},
    }
    assert score_entry("rf_churn", 0.83, None) == {"score": 0.83}


RULES = """
version: "ext-1"
families:
  - name: churn_risk
    segments:
      - name: at_risk
        when: "score_rf_churn >= 0.8"
"""


class NoModels:
    """A model snapshot with no ready model (only the external score reaches the rules)."""

    ready: frozenset[str] = frozenset()
    label = "2026-05-28T00:00Z"

    def contributions(self, model: str, row: Any, k: int) -> None:
        return None


def step() -> CustomerStep:
    settings = load_settings(external_scores="rf_churn")
    rules = parse_rules(RULES, "rules.yaml", rule_names(settings, CONFIG))
    config = StepConfig(features=CONFIG, labels=LabelRules(), input_names=("frequency",))
    return CustomerStep(
        config, lambda: rules, lambda _: PopulationCuts(), lambda _: NoModels(), lambda: 1.8e9
    )  # type: ignore[arg-type,return-value]


def judge(
    customer: CustomerStep, record: CustomerRecord, state: CustomerState, event: Event, offset: int
) -> list[Any]:
    work = customer.working(record)
    steps = customer.apply_event(record, state, work, PositionedEvent(event, 0, offset))
    next(steps)  # the score request; no engine model scores
    with pytest.raises(StopIteration) as done:
        steps.send({})
    return done.value.value  # type: ignore[no-any-return]


def test_a_rule_on_an_external_score_fires_after_the_score_event_and_not_before() -> None:
    customer = step()
    record = CustomerRecord("c-1")
    state = fold([login(T0)])
    assert judge(customer, record, state, login(T0), 0) == []  # no score yet: None >= 0.8 is false
    low = score_event(T0 + 60, 0.5, "rf-2026-11-29")
    state, _ = apply_event(state, low, CONFIG)
    assert judge(customer, record, state, low, 1) == []  # 0.5 < 0.8
    as_of_ms = round((T0 - 3600) * 1000)
    high = score_event(T0 + 120, 0.83, "rf-2026-11-30", as_of_ms)
    state, _ = apply_event(state, high, CONFIG)
    # the stored score: as_of T0 - 1 h is before low's (T0 + 60 s): the older computation loses
    assert state.external_scores["rf_churn"][0] == 0.5
    later = score_event(T0 + 180, 0.83, "rf-2026-11-30")
    state, _ = apply_event(state, later, CONFIG)
    [change] = judge(customer, record, state, later, 3)
    assert (change.family, change.from_segment, change.to_segment) == ("churn_risk", None, "at_risk")
    assert change.scores["rf_churn"] == {
        "score": 0.83,
        "version": "rf-2026-11-30",
        "as_of": round((T0 + 180) * 1000),
        "source": "external",
    }
    assert change.event_ts_ms == round((T0 + 180) * 1000)
    assert change.reason["conditions"][0]["value"] == 0.83


def test_explain_renders_an_external_scores_version_and_as_of() -> None:
    row = {"score": 0.83, "version": "rf-2026-11-30", "as_of": 1_780_000_000_000, "source": "external"}
    explanation = Explanation("c-1", T0, {}, {"rf_churn": row}, {}, {}, {}, 0, "ext-1")
    text = explanation.render()
    assert "rf_churn" in text and "external: version rf-2026-11-30, as of 2026-05-28T20:26:40Z" in text


# --- the worked batch example, trained on a `segflow scores export` CSV ---


def test_the_batch_example_trains_and_writes_valid_score_events(tmp_path: Any) -> None:
    example = importlib.import_module("deploy.examples.batch_scores")
    rng = random.Random(3)
    # The columns of `segflow scores export`: features (blank: None), scores, segments (text).
    lines = ["customer_id,frequency,days_since_last_activity,recency_days,score_clv,segment_lifecycle"]
    for i in range(60):
        silent = "" if i % 7 == 0 else f"{rng.uniform(0, 40):.2f}"
        lines.append(f"c{i},{rng.randint(0, 9)},{silent},{rng.uniform(0, 40):.2f},{i},active")
    export = tmp_path / "customers.csv"
    export.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.jsonl"
    assert example.main([str(export), "--out", str(out), "--version", "rf-2026-11-30"]) == 0
    events = [validate_event(json.loads(line)) for line in out.read_text().splitlines()]
    assert [e.customer_id for e in events] == [f"c{i}" for i in range(60)]
    assert {(e.type, e.attrs["model"], e.attrs["version"]) for e in events} == {
        ("score", "rf_churn", "rf-2026-11-30")
    }
    assert all(0.0 <= e.attrs["value"] <= 1.0 and e.attrs["as_of"] / 1000 == e.ts for e in events)
