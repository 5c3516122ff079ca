"""Scores are well defined from the first event; contributions explain them reproducibly."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from river import preprocessing, tree

from models.registry import build_model
from models.scoring import (
    UNTRAINED_PROBABILITY,
    linear_contributions,
    perturbation_contributions,
    score,
    top_contributions,
)

NAMES = ("logins_30d", "days_since_last_login", "engagement_score", "open_tickets", "noise")


def _churn_rows(n: int, seed: int = 5) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        churn = rng.random() < 0.3
        x = {
            "logins_30d": max(0.0, rng.gauss(2 if churn else 8, 3)),
            "days_since_last_login": max(0.0, rng.gauss(20 if churn else 5, 6)),
            "engagement_score": max(0.0, rng.gauss(3 if churn else 10, 4)),
            "open_tickets": float(rng.random() < (0.3 if churn else 0.1)),
            "noise": rng.gauss(0, 1),
        }
        rows.append((x, churn))
    return rows


def _trained(task: str, kind: str, n: int = 600) -> object:
    model = build_model(task, kind)
    for x, churn in _churn_rows(n):
        model.learn_one(
            x, churn if task == "classification" else (0.0 if churn else 10 * x["engagement_score"])
        )
    return model


@pytest.mark.parametrize("kind", ["linear", "tree", "forest"])
def test_untrained_classifier_scores_the_prior(kind: str) -> None:
    assert score(build_model("classification", kind), "classification", {"a": 1.0}) == UNTRAINED_PROBABILITY


@pytest.mark.parametrize("kind", ["linear", "tree", "forest"])
def test_untrained_regressor_scores_zero(kind: str) -> None:
    assert score(build_model("regression", kind), "regression", {"a": 1.0}) == 0.0


def test_classifier_that_saw_only_negatives_scores_zero() -> None:
    model = preprocessing.StandardScaler() | tree.HoeffdingTreeClassifier()
    model.learn_one({"a": 1.0}, False)
    assert score(model, "classification", {"a": 1.0}) == 0.0


def test_scores_are_probabilities_and_floats() -> None:
    model = _trained("classification", "linear")
    for x, _ in _churn_rows(50, seed=9):
        value = score(model, "classification", x)
        assert type(value) is float and 0.0 <= value <= 1.0
    assert type(score(_trained("regression", "linear"), "regression", x)) is float


def test_unknown_task_raises() -> None:
    with pytest.raises(ValueError, match="ranking"):
        score(build_model("classification"), "ranking", {"a": 1.0})


def test_linear_contributions_are_weight_times_scaled_value() -> None:
    model = _trained("classification", "linear")
    scaler, logistic = model["StandardScaler"], model["LogisticRegression"]
    x = _churn_rows(1, seed=42)[0][0]
    expected = {
        name: logistic.weights[name] * (x[name] - scaler.means[name]) / math.sqrt(scaler.vars[name])
        for name in NAMES
    }
    result = top_contributions(model, x, k=len(NAMES))
    assert [name for name, _ in result] == sorted(expected, key=lambda n: -abs(expected[n]))
    for name, value in result:
        assert value == pytest.approx(expected[name], rel=1e-12)
    # Their sum plus the intercept is the model's log-odds.
    log_odds = sum(expected.values()) + logistic.intercept
    assert score(model, "classification", x) == pytest.approx(1 / (1 + math.exp(-log_odds)))
    assert top_contributions(model, x) == result[:3]


def test_linear_clv_contributions_are_in_log_space() -> None:
    model = _trained("regression", "linear")
    scaler, linear = model.regressor["StandardScaler"], model.regressor["LinearRegression"]
    x = _churn_rows(1, seed=43)[0][0]
    contributions = linear_contributions(model, x)
    assert contributions is not None
    for name in NAMES:
        scaled = (x[name] - scaler.means[name]) / math.sqrt(scaler.vars[name])
        assert contributions[name] == pytest.approx(linear.weights[name] * scaled, rel=1e-12)
    # Their sum plus the intercept is the prediction in log1p space (before the clip at 0).
    assert model.regressor.predict_one(x) == pytest.approx(sum(contributions.values()) + linear.intercept)


def test_non_linear_models_have_no_linear_contributions() -> None:
    assert linear_contributions(_trained("classification", "tree", n=50), {"noise": 1.0}) is None


def test_tree_perturbation_contributions_are_deterministic_and_pure() -> None:
    model = _trained("classification", "tree", n=1500)
    before = pickle.dumps(model)
    rows = _churn_rows(20, seed=77)
    first = [top_contributions(model, x, k=5) for x, _ in rows]
    second = [top_contributions(model, x, k=5) for x, _ in rows]
    assert first == second
    assert pickle.dumps(model) == before
    assert any(value != 0.0 for result in first for _, value in result), "the tree should have split"
    scaler = model["StandardScaler"]
    for (x, _), result in zip(rows, first, strict=True):
        for name, value in result:
            perturbed = {**x, name: scaler.means[name]}
            assert value == score(model, "classification", x) - score(model, "classification", perturbed)
        values = [abs(v) for _, v in result]
        assert values == sorted(values, reverse=True)


def test_forest_perturbation_uses_zero_baseline() -> None:
    model = _trained("regression", "forest", n=300)
    x = _churn_rows(1, seed=8)[0][0]
    contributions = perturbation_contributions(model, x)
    full = score(model, "regression", x)
    for name in NAMES:
        assert contributions[name] == full - score(model, "regression", {**x, name: 0.0})
    assert perturbation_contributions(model, x) == contributions


def test_top_contributions_k_bounds() -> None:
    model = _trained("classification", "linear", n=100)
    x = _churn_rows(1)[0][0]
    assert top_contributions(model, x, k=0) == []
    assert len(top_contributions(model, x, k=50)) == len(NAMES)
    with pytest.raises(ValueError):
        top_contributions(model, x, k=-1)


def test_pipelines_of_other_shapes_fall_back_to_perturbation() -> None:
    # River counts ``scaler | tree`` as an instance of its last step; it must not pass for linear.
    model = preprocessing.StandardScaler() | preprocessing.StandardScaler() | tree.HoeffdingTreeRegressor()
    x = {"a": 1.0}
    model.learn_one(x, 2.0)
    assert linear_contributions(model, x) is None
    assert top_contributions(model, x) == [("a", 0.0)]
