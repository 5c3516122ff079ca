"""Scores and explanations from published snapshots alone equal River's on the models they came from.

Expected values are River's own: ``models.scoring.score`` and ``top_contributions`` on the
trained River objects; the code under test only sees their snapshots after a trip through
``to_dict``, msgpack and ``from_dict`` (or a whole published snapshot).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from learner_data import DAY, make_labels
from river import linear_model
from test_vectorized import NAMES, _assert_close, _river, _scoring_rows, _trained, _training_rows

from models.config import ModelConfig
from models.label_messages import encode_label
from models.learner import Learner, encode_snapshot, period_of
from models.registry import build_model, model_specs, scaled
from models.scoring import score, top_contributions
from models.snapshots import decode_snapshot
from models.vectorized import LinearSnapshot, SnapshotScorer, contributions

CLASSIFY, REGRESS = "classification", "regression"
TASKS = {"churn": CLASSIFY, "clv": REGRESS, "plain": REGRESS, "propensity": CLASSIFY}


def trained_models(seed: int, n_train: int) -> tuple[dict[str, Any], np.ndarray]:
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
    return models, _scoring_rows(rng, training)


def travelled(model: Any, task: str, names: tuple[str, ...] = NAMES) -> LinearSnapshot:
    """The model's snapshot after the trip a published one makes: to_dict, msgpack, from_dict."""
    snapshot = LinearSnapshot.from_model(model, task, names)
    assert snapshot is not None
    wire = msgpack.unpackb(msgpack.packb(snapshot.to_dict(), use_bin_type=True), raw=False)
    return LinearSnapshot.from_dict(wire)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_train", [0, 1, 5, 60, 400])
def test_snapshot_scorer_equals_river(seed: int, n_train: int) -> None:
    models, X = trained_models(seed, n_train)
    scorer = SnapshotScorer(
        {name: (TASKS[name], travelled(m, TASKS[name])) for name, m in models.items()}, NAMES
    )
    _assert_close(scorer.score(X), _river(models, TASKS, NAMES, X))


def test_a_snapshot_round_trip_is_exact() -> None:
    models, _ = trained_models(1, 60)
    for name, model in models.items():
        original = LinearSnapshot.from_model(model, TASKS[name], NAMES)
        copy = travelled(model, TASKS[name])
        assert original is not None
        for field in ("means", "inv_std", "weights"):
            assert np.array_equal(getattr(original, field), getattr(copy, field))
            assert not getattr(copy, field).flags.writeable
        assert (copy.low, copy.high, copy.intercept, copy.output) == (
            original.low,
            original.high,
            original.intercept,
            original.output,
        )
    unclipped = travelled(linear_model.LinearRegression(), REGRESS)
    assert (unclipped.low, unclipped.high) == (-math.inf, math.inf)
    with pytest.raises(ValueError, match="differ in length"):
        LinearSnapshot.from_dict({**unclipped.to_dict(), "weights": b"\x00" * 8})


@pytest.mark.parametrize("seed", range(4))
def test_contributions_equal_river_top_contributions(seed: int) -> None:
    models, X = trained_models(seed, 400)
    for name, model in models.items():
        snapshot = travelled(model, TASKS[name])
        for row in X[:46].tolist():  # the rows like the training data and far beyond the clip
            x = dict(zip(NAMES, row, strict=True))
            for k in (3, len(NAMES)):
                expected = top_contributions(model, x, k)
                got = contributions(snapshot, row, NAMES, k)
                assert [n for n, _ in got] == [n for n, _ in expected]
                assert np.allclose([v for _, v in got], [v for _, v in expected], rtol=1e-9, atol=1e-9)


def test_contributions_refuse_a_row_of_another_length() -> None:
    models, _ = trained_models(0, 5)
    with pytest.raises(ValueError, match="inputs"):
        contributions(travelled(models["churn"], CLASSIFY), [1.0, 2.0], NAMES)


def test_a_decoded_published_snapshot_scores_like_the_learners_river_models() -> None:
    names = tuple(f"i{j}" for j in range(12))
    config = ModelConfig(specs=tuple(model_specs(("savings", "mortgage"))), input_names=names)
    labels = make_labels(config, 600, seed=2, days=30)
    learner = Learner(config, DAY)
    for label in labels:
        learner.offer(encode_label(label))
    last = period_of(max(m.due_ts for m in labels), DAY)
    decoded = decode_snapshot(encode_snapshot(dict(learner.seal_through(last))[last]))
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, len(names))) * 10.0 ** (np.arange(len(names)) % 4)
    tasks = {spec.name: spec.task for spec in config.specs}
    _assert_close(decoded.scorer().score(X), _river(learner.models, tasks, names, X))
    x = dict(zip(names, X[0].tolist(), strict=True))
    for name, model in learner.models.items():
        got = decoded.contributions(name, X[0].tolist(), k=4)
        assert got is not None
        assert [n for n, _ in got] == [n for n, _ in top_contributions(model, x, 4)]


def test_models_that_are_not_linear_are_scored_by_river() -> None:
    models, X = trained_models(2, 60)
    tree = _trained(CLASSIFY, _training_rows(np.random.default_rng(3), 200), build_model(CLASSIFY, "tree"))
    entries = {"churn": (CLASSIFY, travelled(models["churn"], CLASSIFY)), "tree": (CLASSIFY, tree)}
    got = SnapshotScorer(entries, NAMES).score(X)
    rows = [dict(zip(NAMES, row, strict=True)) for row in X.tolist()]
    assert got[:, 1].tolist() == [score(tree, CLASSIFY, x) for x in rows]
    _assert_close(got[:, :1], _river({"churn": models["churn"]}, TASKS, NAMES, X))
