"""The population learner: canonical order, complete periods only, late and holdout labels.

Expected models come from a plain River loop written here (fresh ``build_model`` estimators
taught each distinct label id once, sorted by due time then id, holdout skipped), never from
``models.learner``; snapshots of two runs are compared byte for byte.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np
import pytest
from learner_data import DAY, T0, make_labels, repartitioned, shuffled_with_copies

from models.config import ModelConfig
from models.label_messages import LabelMessage, encode_label
from models.learner import Learner, encode_snapshot, period_of, sealable_version
from models.registry import build_model, model_specs
from models.snapshots import decode_snapshot
from models.vectorized import LinearSnapshot

NAMES = ("a", "b", "c", "d", "e", "f")
CONFIG = ModelConfig(
    specs=tuple(model_specs(("savings",), churn_days=5, clv_days=8, propensity_days=5)),
    input_names=NAMES,
)
P = DAY
KEY = b"test-key"


def feed(learner: Learner, labels: Iterable[LabelMessage]) -> list[str]:
    return [learner.offer(encode_label(m)) for m in labels]


def published(labels: Sequence[LabelMessage], through: int, partitions: int = 8) -> dict[int, bytes]:
    learner = Learner(CONFIG, P, KEY)
    feed(learner, labels)
    frontier = (through + 1) * P
    version = sealable_version(dict.fromkeys(range(partitions), frontier), partitions, P)
    assert version == through
    return {k: encode_snapshot(s) for k, s in learner.seal_through(version)}


def oracle_models(labels: Sequence[LabelMessage], through: int) -> dict[str, Any]:
    """River models taught by hand: first copy of each id, due < (through+1)*P, (due, id) order."""
    first: dict[str, LabelMessage] = {}
    for m in labels:
        first.setdefault(m.label_id, m)
    tasks = {spec.name: spec.task for spec in CONFIG.specs}
    models = {name: build_model(task) for name, task in tasks.items()}
    for m in sorted(first.values(), key=lambda m: (m.due_ts, m.label_id)):
        if m.due_ts >= (through + 1) * P or m.holdout:
            continue
        x = dict(zip(NAMES, np.frombuffer(m.x, dtype="<f4").astype(float).tolist(), strict=True))
        y = bool(m.y_true) if tasks[m.model] == "classification" else m.y_true
        models[m.model].learn_one(x, y)
    return models


def linear_of(blob: bytes, name: str) -> LinearSnapshot:
    snapshot = decode_snapshot(blob).models[name].linear
    assert snapshot is not None
    return snapshot


def assert_same_linear(a: LinearSnapshot, b: LinearSnapshot) -> None:
    for field in ("means", "inv_std", "weights"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert (a.low, a.high, a.intercept, a.output) == (b.low, b.high, b.intercept, b.output)


LABELS = make_labels(CONFIG, 400, seed=5, days=10)
LAST = period_of(max(m.due_ts for m in LABELS), P)


def test_arrival_order_copies_and_partitioning_do_not_change_a_byte() -> None:
    clean = published(LABELS, LAST)
    shuffled = published(shuffled_with_copies(repartitioned(LABELS, 1), seed=9), LAST, partitions=1)
    other = published(shuffled_with_copies(LABELS, seed=10, copies=1.0), LAST, partitions=8)
    assert list(clean) == list(range(period_of(min(m.due_ts for m in LABELS), P), LAST + 1))
    assert clean == shuffled == other


def test_every_version_equals_river_taught_in_canonical_order() -> None:
    versions = published(shuffled_with_copies(LABELS, seed=3), LAST)
    for version in (min(versions), (min(versions) + LAST) // 2, LAST):
        expected = oracle_models(LABELS, version)
        for name, model in expected.items():
            task = next(s.task for s in CONFIG.specs if s.name == name)
            reference = LinearSnapshot.from_model(model, task, NAMES)
            assert reference is not None
            assert_same_linear(linear_of(versions[version], name), reference)


def test_counts_and_metrics_of_a_version() -> None:
    copies = shuffled_with_copies(LABELS, seed=4)
    learner = Learner(CONFIG, P, KEY)
    outcomes = feed(learner, copies)
    assert outcomes.count("buffered") == len(LABELS)
    assert outcomes.count("duplicate") == len(copies) - len(LABELS)
    snapshot = dict(learner.seal_through(LAST))[LAST]
    learned = [m for m in LABELS if not m.holdout]
    assert 0 < len(learned) < len(LABELS)
    assert snapshot["labels_learned_total"] == len(learned) == learner.counts.learned
    for name, metrics in snapshot["metrics"].items():
        assert metrics["prequential"]["n"] == sum(1 for m in learned if m.model == name)
        assert metrics["holdout"]["n"] == sum(1 for m in LABELS if m.holdout and m.model == name)
        assert snapshot["models"][name]["labels_learned"] == metrics["prequential"]["n"]
    assert learner.buffered == 0 and learner.counts.evaluated == len(LABELS)


def test_sealing_waits_for_every_partitions_frontier() -> None:
    k = 20_454  # period of T0
    assert period_of(T0, P) == k and period_of(T0 - 1e-6, P) == k - 1
    assert sealable_version({0: T0, 1: T0, 2: T0}, 4, P) is None
    assert sealable_version({0: T0, 1: T0, 2: T0, 3: T0 + 5 * P}, 4, P) == k - 1
    assert sealable_version({0: T0 + 5 * P, 1: T0 - 0.001, 2: T0, 3: T0}, 4, P) == k - 2
    assert sealable_version({0: T0 + 2 * P, 1: T0 + 3 * P, 7: 0.0}, 2, P) == k + 1


def test_holdout_labels_are_evaluated_never_learned() -> None:
    holdout = [msgspec.structs.replace(m, holdout=True) for m in LABELS]
    learner = Learner(CONFIG, P, KEY)
    feed(learner, holdout)
    snapshot = dict(learner.seal_through(LAST))[LAST]
    untrained = {
        spec.name: LinearSnapshot.from_model(build_model(spec.task), spec.task, NAMES)
        for spec in CONFIG.specs
    }
    for name, entry in snapshot["models"].items():
        assert entry["labels_learned"] == 0
        assert_same_linear(LinearSnapshot.from_dict(entry["linear"]), untrained[name])  # type: ignore[arg-type]
        assert snapshot["metrics"][name]["holdout"]["n"] == sum(1 for m in LABELS if m.model == name)
        assert snapshot["metrics"][name]["prequential"]["n"] == 0


def test_late_labels_are_counted_not_learned() -> None:
    middle = (period_of(min(m.due_ts for m in LABELS), P) + LAST) // 2
    early = [m for m in LABELS if m.due_ts < (middle + 1) * P]
    later = [m for m in LABELS if m.due_ts >= (middle + 1) * P]
    learner = Learner(CONFIG, P, KEY)
    feed(learner, later[: len(later) // 2] + early[: len(early) // 2])
    learner.seal_through(middle)
    outcomes = feed(learner, early[len(early) // 2 :] + later[len(later) // 2 :])
    assert outcomes.count("late") == len(early) - len(early) // 2 == learner.counts.late
    final = encode_snapshot(dict(learner.seal_through(LAST))[LAST])
    on_time = early[: len(early) // 2] + later
    assert final == published(on_time, LAST)[LAST]


def test_nothing_is_published_before_the_first_label_and_empty_periods_repeat_the_models() -> None:
    learner = Learner(CONFIG, P, KEY)
    assert learner.seal_through(20_000) == [] and learner.sealed == 20_000
    assert feed(learner, [msgspec.structs.replace(LABELS[0], due_ts=20_000 * P + 5)]) == ["late"]
    label = msgspec.structs.replace(LABELS[0], due_ts=20_003 * P + 5)
    feed(learner, [label])
    made = learner.seal_through(20_006)
    assert [k for k, _ in made] == [20_003, 20_004, 20_005, 20_006] and learner.first_version == 20_003
    assert all({**s, "version": 20_003} == made[0][1] for _, s in made)
    assert made[-1][1] == learner.snapshot(20_006)


def test_a_restored_checkpoint_continues_exactly() -> None:
    arrivals = shuffled_with_copies(LABELS, seed=6)
    cut = len(arrivals) // 2
    middle = period_of(sorted(m.due_ts for m in LABELS)[len(LABELS) // 3], P)
    first = Learner(CONFIG, P, KEY)
    feed(first, arrivals[:cut])
    early = {k: encode_snapshot(s) for k, s in first.seal_through(middle)}
    restored, meta = Learner.restore(CONFIG, P, KEY, first.dump({"offset": cut}))
    assert meta["offset"] == cut and restored.buffered == first.buffered and restored.sealed == middle
    outcomes = feed(restored, arrivals[cut:])
    late = sum(1 for m in arrivals[cut:] if period_of(m.due_ts, P) <= middle)
    assert outcomes.count("late") == late
    rest = {k: encode_snapshot(s) for k, s in restored.seal_through(LAST)}
    on_time = arrivals[:cut] + [m for m in arrivals[cut:] if period_of(m.due_ts, P) > middle]
    assert early | rest == published(on_time, LAST)


def test_a_checkpoint_of_another_configuration_is_refused() -> None:
    blob = Learner(CONFIG, P, KEY).dump()
    with pytest.raises(ValueError, match="another model configuration or period"):
        Learner.restore(CONFIG, 2 * P, KEY, blob)
    with pytest.raises(ValueError, match="signature"):
        Learner.restore(CONFIG, P, b"other-key", blob)


def test_malformed_messages_are_counted_and_skipped() -> None:
    good = LABELS[0]
    bad = [
        b"",
        b"\x00garbage",
        encode_label(msgspec.structs.replace(good, schema=2)),
        encode_label(msgspec.structs.replace(good, model="nope")),
        encode_label(msgspec.structs.replace(good, x=good.x[:-4])),
        encode_label(msgspec.structs.replace(good, y_pred=float("nan"))),
    ]
    classifier = next(m for m in LABELS if m.model == "churn")
    bad.append(encode_label(msgspec.structs.replace(classifier, y_pred=1.5)))
    learner = Learner(CONFIG, P, KEY)
    assert [learner.offer(raw) for raw in bad] == ["malformed"] * len(bad)
    assert learner.offer(encode_label(good)) == "buffered"
    assert (learner.counts.malformed, learner.counts.consumed, learner.buffered) == (
        len(bad),
        len(bad) + 1,
        1,
    )


def test_tree_models_are_published_as_signed_river_blobs() -> None:
    config = ModelConfig(specs=CONFIG.specs, input_names=NAMES, kind="tree")
    labels = random.Random(1).sample(LABELS, 150)
    learner = Learner(config, P, KEY)
    feed(learner, labels)
    last = period_of(max(m.due_ts for m in labels), P)
    blob = encode_snapshot(dict(learner.seal_through(last))[last])
    decoded = decode_snapshot(blob, KEY)
    assert all(m.linear is None and m.river is not None for m in decoded.models.values())
    with pytest.raises(ValueError, match="checkpoint key"):
        decode_snapshot(blob)
