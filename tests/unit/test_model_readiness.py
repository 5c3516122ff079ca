"""Model readiness: the decision on hand-made metrics, its place in snapshots, gate and reports.

Expected standard errors are worked out here from Hanley & McNeil (1982), eq. 2, written out
again below (not through ``models.readiness``); label counts come from the labels themselves.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from learner_data import DAY, make_labels

from engine.app import readiness_rules
from engine.dashboard.data import DashboardData, Lag
from engine.dashboard.page import render_page
from engine.dashboard.timeline import ChangeLog
from engine.explain import Explanation
from engine.settings import load_settings
from engine.stream.model_gate import VersionModels
from engine.stream.rule_scores import rule_scores
from features.state import CustomerState
from models.config import ModelConfig
from models.evaluation import WindowedAUC
from models.label_messages import encode_label
from models.learner import SNAPSHOT_SCHEMA, Learner, encode_snapshot, period_of
from models.readiness import ReadinessRules, auc_interval, hanley_mcneil_se, readiness
from models.registry import model_specs
from models.report import prometheus_lines
from models.snapshots import decode_snapshot

NAMES = ("a", "b", "c", "d", "e", "f")
SPECS = tuple(model_specs(("savings",), churn_days=5, clv_days=8, propensity_days=5))
KEY = b"test-key"


def holdout(auc: float | None, positives: int, negatives: int) -> dict[str, Any]:
    """An evaluation report with only what readiness reads filled in."""
    return {
        "holdout": {
            "n": positives + negatives,
            "positives": positives,
            "roc_auc": auc,
            "auc_positives": positives,
            "auc_negatives": negatives,
        }
    }


def by_hand_se(a: float, n_pos: int, n_neg: int) -> float:
    q1 = a / (2 - a)
    q2 = 2 * a**2 / (1 + a)
    return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a**2) + (n_neg - 1) * (q2 - a**2)) / (n_pos * n_neg))


def test_auc_062_with_30_positives_and_300_negatives_lies_above_one_half() -> None:
    # Q1 = 0.62/1.38 = 0.449275; Q2 = 2*0.3844/1.62 = 0.474568; A(1-A) = 0.2356
    # SE^2 = (0.2356 + 29*0.064875 + 299*0.090168) / 9000 = 29.0773 / 9000 = 0.0032308
    se = by_hand_se(0.62, 30, 300)
    assert se == pytest.approx(0.056840, abs=1e-6)
    assert hanley_mcneil_se(0.62, 30, 300) == pytest.approx(se, rel=1e-12)
    low, high = auc_interval(0.62, 30, 300)
    assert (low, high) == pytest.approx((0.62 - 1.96 * se, 0.62 + 1.96 * se))
    assert 0.5 < low == pytest.approx(0.5086, abs=1e-4)
    assert readiness("classification", 500, holdout(0.62, 30, 300), ReadinessRules()).ready


def test_auc_060_with_the_same_counts_still_contains_one_half() -> None:
    se = by_hand_se(0.60, 30, 300)  # 0.056900: 0.60 - 1.96 * se = 0.4885 <= 0.5
    assert 0.60 - 1.96 * se < 0.5 < 0.60 + 1.96 * se
    decided = readiness("classification", 500, holdout(0.60, 30, 300), ReadinessRules())
    assert not decided.ready
    assert decided.reason == "holdout AUC 95% interval 0.49-0.71 contains 0.5"
    assert decided.describe() == "warming up: holdout AUC 95% interval 0.49-0.71 contains 0.5"
    # A wider z makes 0.62 warm up too: 0.62 - 2.576 * 0.056840 = 0.4736.
    wide = ReadinessRules(auc_z=2.576)
    assert readiness("classification", 500, holdout(0.62, 30, 300), wide).reason == (
        "holdout AUC 99% interval 0.47-0.77 contains 0.5"
    )


def test_an_auc_surely_below_one_half_is_warming_up() -> None:
    decided = readiness("classification", 500, holdout(0.2, 50, 500), ReadinessRules())
    assert not decided.ready and decided.reason is not None and decided.reason.endswith("is below 0.5")


def test_label_count_rule() -> None:
    rules = ReadinessRules(min_labels=200)
    good = holdout(0.9, 100, 1000)
    assert readiness("classification", 199, good, rules).reason == "199 labels learned < 200"
    assert readiness("classification", 200, good, rules).ready
    # A model that learned nothing is never ready, whatever the setting.
    off = ReadinessRules(min_labels=0, require_auc=False)
    assert readiness("classification", 0, good, off).reason == "0 labels learned < 1"
    assert readiness("classification", 1, holdout(None, 0, 0), off).ready


def test_no_holdout_auc_or_too_few_of_a_class_is_warming_up() -> None:
    rules = ReadinessRules(min_labels=1)
    one_class = readiness("classification", 500, holdout(None, 0, 40), rules)
    assert one_class.reason == "holdout AUC window has 0 positive and 40 negative labels (< 10 of each)"
    # One positive ranked first: A = 1 and Hanley-McNeil's SE is 0, an interval of no width.
    assert by_hand_se(1.0, 1, 40) == 0.0
    assert not readiness("classification", 500, holdout(1.0, 1, 40), rules).ready
    assert readiness(
        "classification", 500, holdout(1.0, 1, 40), replace(rules, min_holdout_per_class=1)
    ).ready


def test_regression_models_are_ready_by_label_count_only() -> None:
    rules = ReadinessRules(min_labels=200)
    no_auc = {"holdout": {"n": 0, "mae": None, "rmse": None}}
    assert readiness("regression", 200, no_auc, rules).ready
    assert readiness("regression", 150, no_auc, rules).reason == "150 labels learned < 200"


def test_windowed_auc_counts_the_labels_of_its_window() -> None:
    auc = WindowedAUC(window=3)
    for y, p in [(True, 0.9), (True, 0.8), (False, 0.1), (False, 0.2), (True, 0.7)]:
        auc.update(y, p)
    assert auc.counts() == (1, 2)  # the last three: False, False, True


def test_changing_any_threshold_changes_the_fingerprint() -> None:
    base = ModelConfig(specs=SPECS, input_names=NAMES)
    prints = {base.fingerprint}
    for change in (
        {"min_labels": 100},
        {"require_auc": False},
        {"auc_z": 2.576},
        {"min_holdout_per_class": 20},
    ):
        prints.add(replace(base, readiness=replace(base.readiness, **change)).fingerprint)  # type: ignore[arg-type]
    assert len(prints) == 5
    assert replace(base, readiness=ReadinessRules()).fingerprint == base.fingerprint


def sealed(rules: ReadinessRules) -> tuple[dict[str, Any], list[Any]]:
    config = ModelConfig(specs=SPECS, input_names=NAMES, readiness=rules)
    labels = make_labels(config, 400, seed=5, days=10)
    learner = Learner(config, DAY, KEY)
    for label in labels:
        learner.offer(encode_label(label))
    last = period_of(max(m.due_ts for m in labels), DAY)
    return dict(learner.seal_through(last))[last], labels


def test_snapshot_carries_readiness_through_a_round_trip() -> None:
    snapshot, labels = sealed(ReadinessRules(min_labels=1000))
    decoded = decode_snapshot(encode_snapshot(snapshot))
    assert snapshot["schema"] == SNAPSHOT_SCHEMA == 3
    for spec in SPECS:
        learned = sum(1 for m in labels if m.model == spec.name and not m.holdout)
        assert 0 < learned < 1000
        entry, model = snapshot["models"][spec.name], decoded.models[spec.name]
        assert entry["ready"] is model.ready is False
        assert entry["warming_up_reason"] == model.warming_up_reason == f"{learned} labels learned < 1000"
    ready, _ = sealed(ReadinessRules(min_labels=30, require_auc=False))
    assert all(
        m.ready and m.warming_up_reason is None
        for m in decode_snapshot(encode_snapshot(ready)).models.values()
    )


def test_readiness_is_a_function_of_the_snapshot_alone() -> None:
    rules = ReadinessRules(min_labels=30, min_holdout_per_class=3)
    snapshot, _ = sealed(rules)
    for name, entry in snapshot["models"].items():
        again = readiness(entry["task"], entry["labels_learned"], snapshot["metrics"][name], rules)
        assert (again.ready, again.reason) == (entry["ready"], entry["warming_up_reason"])


def test_a_schema_1_snapshot_is_refused() -> None:
    snapshot, _ = sealed(ReadinessRules())
    with pytest.raises(ValueError, match="schema-3"):
        decode_snapshot(msgpack.packb({**snapshot, "schema": 1}, use_bin_type=True))


def test_a_schema_2_snapshot_still_reads_without_outcome_tallies() -> None:
    snapshot, _ = sealed(ReadinessRules())
    older = {key: value for key, value in snapshot.items() if key != "outcomes"}
    decoded = decode_snapshot(msgpack.packb({**older, "schema": 2}, use_bin_type=True))
    assert decoded.outcomes == () and set(decoded.models) == set(snapshot["models"])


def test_the_gate_gives_rules_the_scores_of_ready_models_only() -> None:
    snapshot, _ = sealed(ReadinessRules(min_labels=30, require_auc=False))
    snapshot["models"]["propensity_savings"].update(ready=False, warming_up_reason="12 labels learned < 200")
    models = VersionModels(decode_snapshot(encode_snapshot(snapshot)))
    assert models.ready == {"churn", "clv"}
    assert models.readiness()["propensity_savings"] == "warming up: 12 labels learned < 200"
    assert models.readiness()["churn"] == "ready"
    [scores] = models.score_rows([[0.0] * len(NAMES)])
    assert set(scores) == {"churn", "clv", "propensity_savings"}  # still scored for the prediction book
    state = CustomerState(first_ts=0.0, last_ts=0.0)
    assert set(rule_scores(scores, models.ready, {}, state)) == {"churn", "clv"}


def test_metrics_explain_and_dashboard_say_warming_up() -> None:
    readiness_report = {
        "churn": {"ready": True, "warming_up_reason": None, "text": "ready"},
        "clv": {"ready": False, "warming_up_reason": "3 labels learned < 200", "text": "warming up: 3..."},
    }
    lines = prometheus_lines({}, readiness_report)
    assert 'segflow_model_ready{model="churn"} 1' in lines and 'segflow_model_ready{model="clv"} 0' in lines
    explanation = Explanation("c1", 0.0, {}, {}, {}, {}, {}, 0, "v1", models={"clv": "warming up: 3 labels"})
    assert "warming up: 3 labels" in explanation.render()
    assert explanation.as_dict()["models"] == {"clv": "warming up: 3 labels"}
    learner = {"readiness": readiness_report, "reports": {}}
    data = DashboardData(
        None, None, "off", None, "", ChangeLog(), Lag("g", {}), None, 0, learner, [], 200, {}
    )
    page = render_page(data)
    assert (
        '<td class="readiness">warming up: 3...</td>' in page and '<td class="readiness">ready</td>' in page
    )


def test_settings_reach_the_readiness_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert readiness_rules(load_settings()) == ReadinessRules()
    monkeypatch.setenv("SEGFLOW_MODEL_READY_MIN_LABELS", "50")
    monkeypatch.setenv("SEGFLOW_MODEL_READY_REQUIRE_AUC", "false")
    monkeypatch.setenv("SEGFLOW_MODEL_READY_AUC_Z", "2.576")
    monkeypatch.setenv("SEGFLOW_MODEL_READY_MIN_HOLDOUT_PER_CLASS", "25")
    assert readiness_rules(load_settings()) == ReadinessRules(50, False, 2.576, 25)
