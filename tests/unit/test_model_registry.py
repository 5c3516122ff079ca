"""The model registry: which models exist and how their River estimators are built."""

from __future__ import annotations

import ast
import math
import random
from pathlib import Path

import pytest
from river import compose, forest, linear_model, preprocessing, tree

from models.registry import (
    CLASSIFIER_INTERCEPT_LEARNING_RATE,
    CLASSIFIER_LEARNING_RATE,
    MODEL_KINDS,
    SCALED_LIMIT,
    ModelSpec,
    build_model,
    clip_scaled,
    expm1_revenue,
    log1p_revenue,
    model_specs,
)
from models.scoring import score

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def _stream(n: int, seed: int) -> list[tuple[dict[str, float], bool, float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(5, 2), "c": float(rng.random() < 0.5)}
        label = x["a"] + 0.3 * x["c"] + rng.gauss(0, 0.5) > 0
        revenue = max(0.0, 50 * math.exp(x["a"]) + rng.gauss(0, 5))
        rows.append((x, label, revenue))
    return rows


def test_model_specs_default_order_and_horizons() -> None:
    specs = model_specs(("mortgage", "savings"))
    assert [s.name for s in specs] == ["churn", "clv", "propensity_mortgage", "propensity_savings"]
    assert [s.task for s in specs] == ["classification", "regression", "classification", "classification"]
    assert [s.horizon_days for s in specs] == [30.0, 90.0, 30.0, 30.0]
    assert all(isinstance(s, ModelSpec) and s.description for s in specs)
    with pytest.raises(AttributeError):
        specs[0].name = "other"  # type: ignore[misc]


def test_model_specs_custom_horizons() -> None:
    specs = model_specs(["insurance"], churn_days=14, clv_days=365, propensity_days=7)
    assert [s.horizon_days for s in specs] == [14.0, 365.0, 7.0]
    assert "14" in specs[0].description


@pytest.mark.parametrize(
    ("products", "kwargs"),
    [
        ((), {"churn_days": 0}),
        ((), {"clv_days": -1}),
        ((), {"propensity_days": 0.0}),
        (("a", "a"), {}),
        (("",), {}),
    ],
)
def test_model_specs_rejects_bad_arguments(products: tuple[str, ...], kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        model_specs(products, **kwargs)


def test_build_model_default_kinds() -> None:
    classifier = build_model("classification")
    assert isinstance(classifier, compose.Pipeline)
    steps = list(classifier.steps.values())
    assert isinstance(steps[0], preprocessing.StandardScaler)
    assert isinstance(steps[1], compose.FuncTransformer)  # the clip of standardised values
    assert isinstance(steps[2], linear_model.LogisticRegression)
    assert steps[2].optimizer.learning_rate == CLASSIFIER_LEARNING_RATE
    # The intercept has its own, faster rate: it must reach the log-odds of rare churn quickly.
    assert steps[2].intercept_lr.learning_rate == CLASSIFIER_INTERCEPT_LEARNING_RATE
    regressor = build_model("regression")
    assert isinstance(regressor, compose.TargetTransformRegressor)
    inner = list(regressor.regressor.steps.values())
    assert isinstance(inner[0], preprocessing.StandardScaler)
    assert isinstance(inner[2], linear_model.LinearRegression)


def test_standardised_values_are_clipped() -> None:
    assert clip_scaled({"a": 7.0, "b": -9.0, "c": 0.5}) == {"a": SCALED_LIMIT, "b": -SCALED_LIMIT, "c": 0.5}


def test_build_model_tree_and_forest() -> None:
    assert isinstance(
        list(build_model("classification", "tree").steps.values())[-1], tree.HoeffdingTreeClassifier
    )
    assert isinstance(list(build_model("regression", "tree").steps.values())[-1], tree.HoeffdingTreeRegressor)
    arf = build_model("classification", "forest")
    assert isinstance(arf, forest.ARFClassifier) and arf.n_models == 10 and arf.seed is not None
    assert isinstance(build_model("regression", "forest"), forest.ARFRegressor)


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_model_learns_and_predicts(task: str, kind: str) -> None:
    model = build_model(task, kind)
    rows = _stream(150, seed=1)
    for x, label, revenue in rows:
        model.learn_one(x, label if task == "classification" else revenue)
    value = score(model, task, rows[0][0])
    assert math.isfinite(value)
    if task == "classification":
        assert 0.0 <= value <= 1.0


def test_forest_is_deterministic() -> None:
    first, second = build_model("classification", "forest"), build_model("classification", "forest")
    rows = _stream(200, seed=2)
    for x, label, _ in rows:
        first.learn_one(x, label)
        second.learn_one(x, label)
    assert [score(first, "classification", x) for x, _, _ in rows[:30]] == [
        score(second, "classification", x) for x, _, _ in rows[:30]
    ]


def test_linear_clv_learns_log_revenue_and_never_predicts_negative() -> None:
    model = build_model("regression")
    for x, _, revenue in _stream(2000, seed=3):
        model.learn_one(x, revenue)
    rich, poor = {"a": 2.0, "b": 5.0, "c": 0.0}, {"a": -2.0, "b": 5.0, "c": 0.0}
    assert score(model, "regression", rich) > score(model, "regression", poor) >= 0.0
    # The wrapped linear model predicts in log1p space.
    assert model.regressor.predict_one(rich) == pytest.approx(math.log1p(model.predict_one(rich)))
    assert score(model, "regression", {"a": -1e6, "b": 0.0, "c": 0.0}) == 0.0


def test_target_transform_helpers() -> None:
    assert log1p_revenue(-10.0) == 0.0
    assert log1p_revenue(math.e - 1) == pytest.approx(1.0)
    assert expm1_revenue(-3.0) == 0.0
    assert expm1_revenue(log1p_revenue(123.45)) == pytest.approx(123.45)


@pytest.mark.parametrize(("task", "kind"), [("classification", "svm"), ("ranking", "linear")])
def test_build_model_rejects_unknown_choices(task: str, kind: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        build_model(task, kind)
    message = str(excinfo.value)
    assert "\n" not in message
    if task == "classification":
        assert all(choice in message for choice in MODEL_KINDS)


def test_models_package_never_imports_engine() -> None:
    for path in MODELS_DIR.glob("*.py"):
        tree_ = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree_):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name == "engine" or name.startswith("engine.") for name in names), path.name


def test_linear_classifier_intercept_finds_a_rare_positive_rate() -> None:
    """1 positive in 60 (the churn rate): the intercept alone must reach about log(1/59)."""
    model = build_model("classification")
    rng = random.Random(4)
    for _ in range(3000):
        model.learn_one({"a": rng.gauss(0, 1)}, rng.random() < 1 / 60)
    assert 0.005 < score(model, "classification", {"a": 0.0}) < 0.05
