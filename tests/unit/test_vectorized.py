"""Batch scores equal River's per-row ``score``; batch inputs equal ``to_model_input``.

Every expected value is computed by River (``models.scoring.score`` on the same model and
input), never by the code under test. Models are trained on random data whose columns differ in
scale by up to nine orders of magnitude, with a constant input, an input never seen in training
and rows far beyond the scaler's clip.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import compose, linear_model, optim, preprocessing, tree

from engine.app import model_inputs, specs
from engine.settings import Settings
from features.catalogue import FeatureSnapshot
from models.inputs import MISSING_SUFFIX, to_model_input
from models.registry import MAX_LOG_REVENUE, SCALED_LIMIT, build_model, log1p_revenue, scaled
from models.scoring import score
from models.vectorized import BatchScorer, LinearSnapshot, input_rows

NAMES = (*(f"x{i}" for i in range(8)), "constant", "never_seen", "huge")
CLASSIFY, REGRESS = "classification", "regression"


def _river(
    models: Mapping[str, Any], tasks: Mapping[str, str], names: Sequence[str], X: np.ndarray
) -> np.ndarray:
    """River's scores: one ``score`` call per row and model, columns in ``models`` order."""
    rows = [dict(zip(names, row, strict=True)) for row in X.tolist()]
    return np.array([[score(model, tasks[name], x) for name, model in models.items()] for x in rows])


def _assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Within 1e-9 absolute, or 1e-9 relative for values above 1 (large clv predictions).

    A NaN is equal to a NaN (River's answer for some of the fallback models' extreme inputs).
    """
    assert got.shape == expected.shape
    assert (np.isnan(got) == np.isnan(expected)).all()
    nan = np.isnan(expected)
    error = np.where(nan, 0.0, np.abs(got - expected))
    allowed = np.maximum(1e-9, 1e-9 * np.abs(np.where(nan, 0.0, expected)))
    worst = np.unravel_index(np.argmax(error - allowed), error.shape)
    assert (error <= allowed).all(), f"at {worst}: got {got[worst]!r}, River {expected[worst]!r}"


def _scores(
    models: Mapping[str, Any], tasks: Mapping[str, str], names: Sequence[str], X: np.ndarray
) -> np.ndarray:
    return BatchScorer(list(models), tasks, names).score(models, 0, X)


def _training_rows(rng: np.random.Generator, n: int) -> list[tuple[dict[str, float], bool, float]]:
    """Rows of very different scales; "constant" never varies, "never_seen" is left out."""
    scales = 10.0 ** rng.uniform(-3, 6, 8)
    offsets = rng.normal(0, 3, 8) * scales
    coefficients = rng.normal(0, 2, 8)
    rows = []
    for _ in range(n):
        z = rng.normal(size=8)
        x = dict(zip(NAMES[:8], (offsets + z * scales).tolist(), strict=True))
        x["constant"] = 7.0
        x["huge"] = float(rng.normal(1e12, 1e11))
        x["retired"] = float(rng.normal())  # learned, but no longer an input
        logit = float(coefficients @ z)
        label = bool(rng.random() < 1 / (1 + math.exp(-logit)))
        revenue = 0.0 if rng.random() < 0.4 else float(math.exp(3 + 2 * logit + rng.normal()))
        rows.append((x, label, revenue))
    return rows


def _scoring_rows(
    rng: np.random.Generator, training: list[tuple[dict[str, float], bool, float]]
) -> np.ndarray:
    """Rows like the training data, rows 100x further out (beyond the clip), zeros and extremes."""
    if training:
        base = np.array([[x[name] for name in NAMES[:8]] for x, _, _ in training])
        center, spread = base.mean(axis=0), base.std(axis=0) + 1.0
    else:
        center, spread = np.zeros(8), np.ones(8)
    near = center + rng.normal(size=(30, 8)) * spread
    far = center + rng.normal(size=(10, 8)) * spread * 100
    extreme = rng.choice([-1e300, -1e15, 0.0, 1e15, 1e300], size=(5, 8))
    body = np.vstack([near, far, extreme, np.zeros((1, 8))])
    rows = len(body)
    tail = np.column_stack(
        [
            rng.choice([7.0, 0.0, -3.0, 1e9], size=rows),
            rng.normal(0, 1e6, rows),
            rng.normal(1e12, 1e12, rows),
        ]
    )
    return np.hstack([body, tail])


def _trained(task: str, rows: list[tuple[dict[str, float], bool, float]], model: Any = None) -> Any:
    model = build_model(task) if model is None else model
    for x, label, revenue in rows:
        model.learn_one(x, label if task == CLASSIFY else revenue)
    return model


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_train", [0, 1, 2, 5, 60, 400])
def test_linear_models_equal_river_per_row(seed: int, n_train: int) -> None:
    rng = np.random.default_rng(seed * 1000 + n_train)
    training = _training_rows(rng, n_train)
    models = {
        "churn": _trained(CLASSIFY, training),
        "clv": _trained(REGRESS, training),
        "plain": _trained(
            REGRESS,
            [(x, y, math.log1p(r)) for x, y, r in training],
            scaled() | linear_model.LinearRegression(),
        ),
        "propensity": _trained(CLASSIFY, [(x, not y, r) for x, y, r in training]),
    }
    tasks = {"churn": CLASSIFY, "clv": REGRESS, "plain": REGRESS, "propensity": CLASSIFY}
    X = _scoring_rows(rng, training)
    expected = _river(models, tasks, NAMES, X)
    _assert_close(_scores(models, tasks, NAMES, X), expected)
    if n_train == 0:
        assert (expected[:, [0, 3]] == 0.5).all() and (expected[:, [1, 2]] == 0.0).all()


def test_large_revenue_and_its_clip_equal_river() -> None:
    rng = np.random.default_rng(11)
    training = _training_rows(rng, 300)
    clv = _trained(REGRESS, [(x, y, r * 1e4) for x, y, r in training])
    X = _scoring_rows(rng, training)
    linear = clv.regressor["LinearRegression"]
    for intercept in (linear.intercept, 12.0, MAX_LOG_REVENUE - 1e-9, MAX_LOG_REVENUE + 5.0, -1e-12, -8.0):
        linear.intercept = intercept
        expected = _river({"clv": clv}, {"clv": REGRESS}, NAMES, X)
        _assert_close(_scores({"clv": clv}, {"clv": REGRESS}, NAMES, X), expected)
    assert expected.min() == 0.0, "a negative log-space prediction is clipped at 0 revenue"
    linear.intercept = MAX_LOG_REVENUE + 50.0
    clipped = _river({"clv": clv}, {"clv": REGRESS}, NAMES, X)
    assert clipped.max() == math.expm1(MAX_LOG_REVENUE)
    _assert_close(_scores({"clv": clv}, {"clv": REGRESS}, NAMES, X), clipped)


@pytest.mark.parametrize(
    "intercept", [-1e6, -30.000001, -30.0, -29.999999, -5.0, 0.0, 1e-300, 29.999999, 30.0, 30.000001, 1e6]
)
def test_sigmoid_clamp_at_30_equals_river(intercept: float) -> None:
    # A scaler that has seen one row holds every variance as 0: the logit is the intercept.
    model = build_model(CLASSIFY)
    model.learn_one({name: 1.0 for name in NAMES}, True)
    model["LogisticRegression"].intercept = intercept
    X = np.random.default_rng(3).normal(0, 1e3, (4, len(NAMES)))
    expected = _river({"m": model}, {"m": CLASSIFY}, NAMES, X)
    got = _scores({"m": model}, {"m": CLASSIFY}, NAMES, X)
    _assert_close(got, expected)
    if abs(intercept) > 30:
        assert (got == expected).all() and expected[0, 0] in (0.0, 1.0)


def test_a_constant_input_scales_to_zero_wherever_it_is() -> None:
    # River never subtracts the mean of a zero-variance input: (-1.5e308 - 1.5e308) would be -inf.
    models = {"churn": build_model(CLASSIFY), "clv": build_model(REGRESS)}
    for label in (True, False, True):
        models["churn"].learn_one({"constant": 1.5e308, "x0": float(label)}, label)
        models["clv"].learn_one({"constant": 1.5e308, "x0": float(label)}, 10.0 * label)
    tasks = {"churn": CLASSIFY, "clv": REGRESS}
    X = np.array([[-1.5e308, 1.0], [1.5e308, 0.0], [0.0, 3.0]])
    expected = _river(models, tasks, ["constant", "x0"], X)
    assert np.isfinite(expected).all()
    _assert_close(_scores(models, tasks, ["constant", "x0"], X), expected)


@pytest.mark.filterwarnings("error")
def test_scaling_overflow_is_clipped_silently_as_in_river() -> None:
    model = build_model(CLASSIFY)
    for i in range(50):
        model.learn_one({"tiny": i * 1e-150, "x0": float(i)}, i % 2 == 0)
    X = np.array([[1e300, 1e300], [-1e300, -1e300], [1e-150, 3.0]])
    expected = _river({"m": model}, {"m": CLASSIFY}, ["tiny", "x0"], X)
    _assert_close(_scores({"m": model}, {"m": CLASSIFY}, ["tiny", "x0"], X), expected)


def test_saturated_logits_of_a_fast_learner_equal_river() -> None:
    rng = np.random.default_rng(5)
    model = scaled() | linear_model.LogisticRegression(optimizer=optim.SGD(2.0), intercept_lr=1.0)
    for _ in range(500):
        x = dict(zip(NAMES, rng.normal(size=len(NAMES)).tolist(), strict=True))
        model.learn_one(x, x["x0"] + x["x1"] > 0)
    X = rng.normal(0, 10, (200, len(NAMES)))
    expected = _river({"m": model}, {"m": CLASSIFY}, NAMES, X)
    # The formula gives neither 0.0 nor 1.0 for logits in [-30, 30]: both are River's clamp.
    assert (expected == 0.0).any() and (expected == 1.0).any(), "the test needs saturated logits"
    _assert_close(_scores({"m": model}, {"m": CLASSIFY}, NAMES, X), expected)


def test_hinge_loss_and_models_without_scaler_equal_river() -> None:
    rng = np.random.default_rng(8)
    models = {
        "hinge": scaled() | linear_model.LogisticRegression(loss=optim.losses.Hinge()),
        "bare_logistic": linear_model.LogisticRegression(),
        "bare_linear": linear_model.LinearRegression(),
        "no_clip": preprocessing.StandardScaler() | linear_model.LinearRegression(),
    }
    tasks = {"hinge": CLASSIFY, "bare_logistic": CLASSIFY, "bare_linear": REGRESS, "no_clip": REGRESS}
    for _ in range(300):
        x = dict(zip(NAMES[:8], rng.normal(size=8).tolist(), strict=True))
        for name, model in models.items():
            model.learn_one(x, x["x0"] > 0 if tasks[name] == CLASSIFY else 3 * x["x1"] + 1)
    X = np.vstack([rng.normal(size=(40, len(NAMES))), rng.normal(0, 1e4, (10, len(NAMES)))])
    for name, model in models.items():
        assert LinearSnapshot.from_model(model, tasks[name], NAMES) is not None, name
    _assert_close(_scores(models, tasks, NAMES, X), _river(models, tasks, NAMES, X))


def test_snapshot_holds_river_state_in_input_order() -> None:
    training = _training_rows(np.random.default_rng(2), 100)
    churn, clv = _trained(CLASSIFY, training), _trained(REGRESS, training)
    snapshot = LinearSnapshot.from_model(churn, CLASSIFY, NAMES)
    assert snapshot is not None and snapshot.output == "logistic"
    scaler, logistic = churn["StandardScaler"], churn["LogisticRegression"]
    for i, name in enumerate(NAMES):
        if name in ("constant", "never_seen"):  # variance 0: River scales them to 0
            assert snapshot.inv_std[i] == 0.0 and snapshot.means[i] == 0.0
        else:
            assert snapshot.means[i] == scaler.means[name]
            assert snapshot.inv_std[i] == pytest.approx(1 / math.sqrt(scaler.vars[name]), rel=1e-15)
    assert snapshot.weights[NAMES.index("never_seen")] == 0.0
    assert snapshot.weights[0] == logistic.weights["x0"] and snapshot.intercept == logistic.intercept
    assert (snapshot.low, snapshot.high) == (-SCALED_LIMIT, SCALED_LIMIT)
    assert not snapshot.weights.flags.writeable
    regression = LinearSnapshot.from_model(clv, REGRESS, NAMES)
    assert regression is not None and regression.output == "expm1_revenue"
    plain = LinearSnapshot.from_model(scaled() | linear_model.LinearRegression(), REGRESS, NAMES)
    assert plain is not None and plain.output == "regression"


def test_scoring_does_not_change_the_models() -> None:
    training = _training_rows(np.random.default_rng(4), 50)
    models = {"churn": _trained(CLASSIFY, training), "clv": _trained(REGRESS, training)}
    before = pickle.dumps(models)
    _scores(
        models, {"churn": CLASSIFY, "clv": REGRESS}, NAMES, _scoring_rows(np.random.default_rng(4), training)
    )
    assert pickle.dumps(models) == before


def _halved(y: float) -> float:
    return y / 2


def _weird(task: str) -> list[Any]:
    """Models that are not linear pipelines of the supported shapes."""
    models: list[Any] = [build_model(task, "tree"), build_model(task, "forest")]
    if task == CLASSIFY:
        return [
            *models,
            compose.FuncTransformer(lambda x: {k: 2 * v for k, v in x.items()})
            | linear_model.LogisticRegression(),
            preprocessing.MinMaxScaler() | linear_model.LogisticRegression(),
            preprocessing.StandardScaler()
            | preprocessing.StandardScaler()
            | linear_model.LogisticRegression(),
        ]
    return [
        *models,
        compose.TargetTransformRegressor(
            regressor=scaled() | linear_model.LinearRegression(), func=math.log1p, inverse_func=math.expm1
        ),
        compose.TargetTransformRegressor(
            regressor=scaled() | linear_model.LinearRegression(), func=log1p_revenue, inverse_func=_halved
        ),
        preprocessing.StandardScaler(with_std=False) | linear_model.LinearRegression(),
        preprocessing.StandardScaler(window_size=20) | linear_model.LinearRegression(),
        scaled() | linear_model.LinearRegression(loss=optim.losses.Poisson(), clip_gradient=1.0),
        scaled() | tree.HoeffdingTreeRegressor(),
    ]


@pytest.mark.parametrize("task", [CLASSIFY, REGRESS])
def test_other_models_have_no_snapshot_and_fall_back_to_river(task: str) -> None:
    rng = np.random.default_rng(13)
    training = [(x, y, math.log1p(r)) for x, y, r in _training_rows(rng, 300)]
    models = {f"m{i}": _trained(task, training, model) for i, model in enumerate(_weird(task))}
    models["linear"] = _trained(task, training)
    tasks = dict.fromkeys(models, task)
    for name, model in models.items():
        assert (LinearSnapshot.from_model(model, task, NAMES) is None) == (name != "linear"), name
    X = _scoring_rows(rng, training)[:20]
    got = _scores(models, tasks, NAMES, X)
    expected = _river(models, tasks, NAMES, X)
    assert np.array_equal(got[:, :-1], expected[:, :-1], equal_nan=True), "River scores these: equal exactly"
    _assert_close(got, expected)


def test_models_that_do_not_fit_their_task_have_no_snapshot() -> None:
    assert LinearSnapshot.from_model(build_model(CLASSIFY), REGRESS, NAMES) is None
    assert LinearSnapshot.from_model(build_model(REGRESS), CLASSIFY, NAMES) is None
    with pytest.raises(ValueError, match="ranking"):
        LinearSnapshot.from_model(build_model(CLASSIFY), "ranking", NAMES)


def test_snapshots_refresh_only_with_a_new_version() -> None:
    rng = np.random.default_rng(21)
    training = _training_rows(rng, 400)
    models = {"churn": _trained(CLASSIFY, training[:100]), "clv": _trained(REGRESS, training[:100])}
    models["tree"] = _trained(CLASSIFY, training[:100], build_model(CLASSIFY, "tree"))
    tasks = {"churn": CLASSIFY, "clv": REGRESS, "tree": CLASSIFY}
    scorer = BatchScorer(list(models), tasks, NAMES)
    X = _scoring_rows(rng, training)
    first = scorer.score(models, 100, X)
    _assert_close(first, _river(models, tasks, NAMES, X))
    for name, model in models.items():
        _trained(tasks[name], training[100:], model)
    now = _river(models, tasks, NAMES, X)
    assert np.abs(now[:, :2] - first[:, :2]).max() > 1e-3, "learning should have moved the linear scores"
    stale = scorer.score(models, 100, X)
    assert (stale[:, :2] == first[:, :2]).all(), "same version: the old linear snapshots"
    assert (stale[:, 2] == now[:, 2]).all(), "River scores the tree in its current state"
    _assert_close(scorer.score(models, 400, X), now)


def test_a_replaced_model_is_read_again_under_the_same_version() -> None:
    rng = np.random.default_rng(22)
    training = _training_rows(rng, 200)
    models = {"churn": _trained(CLASSIFY, training)}
    scorer = BatchScorer(["churn"], {"churn": CLASSIFY}, NAMES)
    X = _scoring_rows(rng, training)
    scorer.score(models, 7, X)
    models["churn"] = build_model(CLASSIFY)  # e.g. reset after drift
    assert (scorer.score(models, 7, X) == 0.5).all()


def test_real_bank_inputs_and_columns_in_model_name_order() -> None:
    settings = Settings()
    names = list(model_inputs(settings))
    model_specs = specs(settings)
    tasks = {spec.name: spec.task for spec in model_specs}
    rng = random.Random(9)
    features = sorted({name.removesuffix(MISSING_SUFFIX) for name in names})

    def snapshot() -> dict[str, float | None]:
        return {
            f: None if f + MISSING_SUFFIX in names and rng.random() < 0.3 else rng.expovariate(1 / 50)
            for f in features
        }

    models = {spec.name: build_model(spec.task) for spec in model_specs}
    for x in input_rows([snapshot() for _ in range(300)], names).tolist():
        for spec in model_specs:
            y = rng.random() < 0.2 if spec.task == CLASSIFY else rng.expovariate(1 / 100)
            models[spec.name].learn_one(dict(zip(names, x, strict=True)), y)
    order = [spec.name for spec in reversed(model_specs)]
    snapshots = [snapshot() for _ in range(50)]
    X = input_rows(snapshots, names)
    got = BatchScorer(order, tasks, names).score(models, 0, X)
    expected = np.array(
        [[score(models[name], tasks[name], to_model_input(s, names)) for name in order] for s in snapshots]
    )
    _assert_close(got, expected)


def test_score_rejects_bad_batches() -> None:
    models = {"churn": build_model(CLASSIFY)}
    scorer = BatchScorer(["churn"], {"churn": CLASSIFY}, NAMES)
    assert scorer.score(models, 0, np.zeros((0, len(NAMES)))).shape == (0, 1)
    with pytest.raises(ValueError, match="shape"):
        scorer.score(models, 0, np.zeros((2, len(NAMES) - 1)))
    with pytest.raises(ValueError, match="NaN"):
        scorer.score(models, 0, np.full((1, len(NAMES)), math.nan))
    with pytest.raises(KeyError, match="clv"):
        BatchScorer(["churn", "clv"], {"churn": CLASSIFY, "clv": REGRESS}, NAMES).score(
            models, 0, np.zeros((1, len(NAMES)))
        )
    with pytest.raises(ValueError, match="ranking"):
        BatchScorer(["churn"], {"churn": "ranking"}, NAMES)
    with pytest.raises(KeyError):
        BatchScorer(["churn"], {}, NAMES)
    with pytest.raises(ValueError, match="repeated"):
        BatchScorer(["churn", "churn"], {"churn": CLASSIFY}, NAMES)


# input_rows

FEATURES = ("recency_days", "frequency", "monetary", "balance_savings", "tenure_days")
POOL = (
    *FEATURES,
    "recency_days" + MISSING_SUFFIX,
    "balance_savings" + MISSING_SUFFIX,
    "monetary" + MISSING_SUFFIX,
)
VALID = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
)
ANY = st.one_of(
    VALID, st.just(math.nan), st.just(-math.inf), st.just("12"), st.just(10**400), st.just(np.float64(2.5))
)
NAME_LISTS = st.lists(st.sampled_from(POOL), min_size=1, max_size=len(POOL), unique=True)


def _reference(
    snapshots: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> Callable[[], list[list[float]]]:
    return lambda: [list(to_model_input(s, names).values()) for s in snapshots]


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # compared by type and message
        return type(exc).__name__, str(exc)


def _bits(rows: Any, width: int) -> list[list[int]]:
    """The rows' float64 bit patterns: equal values, and the same sign of zero."""
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), width).view(np.uint64).tolist()


@settings(max_examples=300, deadline=None)
@given(
    names=NAME_LISTS, snapshots=st.lists(st.fixed_dictionaries(dict.fromkeys(FEATURES, VALID)), max_size=6)
)
def test_input_rows_equal_to_model_input_bit_for_bit(
    names: list[str], snapshots: list[dict[str, Any]]
) -> None:
    kind, expected = _outcome(_reference(snapshots, names))
    got = _outcome(lambda: input_rows(snapshots, names))
    if kind != "ok":
        assert got == (kind, expected)
        return
    assert got[0] == "ok" and got[1].shape == (len(snapshots), len(names)) and got[1].dtype == np.float64
    assert _bits(got[1], len(names)) == _bits(expected, len(names))


@settings(max_examples=300, deadline=None)
@given(
    names=NAME_LISTS,
    snapshots=st.lists(
        st.fixed_dictionaries({}, optional=dict.fromkeys(FEATURES, ANY)), min_size=1, max_size=4
    ),
)
def test_input_rows_raise_what_to_model_input_raises(
    names: list[str], snapshots: list[dict[str, Any]]
) -> None:
    kind, expected = _outcome(_reference(snapshots, names))
    got = _outcome(lambda: input_rows(snapshots, names))
    if kind == "ok":
        assert got[0] == "ok" and _bits(got[1], len(names)) == _bits(expected, len(names))
    else:
        assert got == (kind, expected)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"monetary": math.nan}, ValueError),
        ({"frequency": None}, ValueError),
        ({"tenure_days": "3"}, TypeError),
    ],
)
def test_the_first_bad_snapshot_raises_its_error(bad: dict[str, Any], error: type[Exception]) -> None:
    names = ["recency_days", "recency_days__missing", "frequency", "monetary", "tenure_days"]
    good = {"recency_days": None, "frequency": 3, "monetary": 12.5, "tenure_days": 40.0}
    snapshots = [good, good, {**good, **bad}, {**good, "frequency": math.inf}]
    with pytest.raises(error) as expected:
        _reference(snapshots, names)()
    with pytest.raises(error) as got:
        input_rows(snapshots, names)
    assert str(got.value) == str(expected.value)
    missing = [good, {k: v for k, v in good.items() if k != "monetary"}]
    with pytest.raises(KeyError, match="'monetary': not in the snapshot"):
        input_rows([FeatureSnapshot("c", 0.0, s, {}, {}) for s in missing], names)


def test_feature_snapshots_and_other_numbers() -> None:
    names = ["recency_days", "recency_days__missing", "monetary", "frequency"]
    values = [
        {"recency_days": None, "monetary": -5.0, "frequency": True},
        {"recency_days": np.float64(2.5), "monetary": 2**70, "frequency": np.int64(4)},
    ]
    snapshots = [FeatureSnapshot("c", 0.0, v, {}, {}) for v in values]
    assert _bits(input_rows(snapshots, names), 4) == _bits(_reference(snapshots, names)(), 4)
    # An indicator alone does not read its feature as a number.
    assert input_rows([{"recency_days": "n/a"}], ["recency_days__missing"]).tolist() == [[0.0]]
