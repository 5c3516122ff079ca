"""The shared learning step: when a matured label is learned, and with which weight."""

from __future__ import annotations

from models.labels import ResolvedLabel
from models.learning import MAX_POSITIVE_WEIGHT, MaturingLabels, learn_label, positive_weight
from models.registry import build_model


def label(made_ts: float, y_true: float = 0.0) -> ResolvedLabel:
    return ResolvedLabel("churn", {"a": made_ts}, y_true, 0.5, made_ts, made_ts + 1.0, False)


def test_held_labels_ripen_in_due_order_ties_in_the_order_held() -> None:
    held = MaturingLabels()
    assert held.next_due() is None and list(held.ripe(1e9)) == []
    held.hold(label(1.0), due_ts=30.0)
    held.hold(label(2.0), due_ts=10.0)
    held.hold(label(3.0), due_ts=30.0)
    assert len(held) == 3 and held.next_due() == 10.0
    assert [x.made_ts for x in held.ripe(9.9)] == []
    assert [x.made_ts for x in held.ripe(10.0)] == [2.0]
    assert [x.made_ts for x in held.ripe(50.0)] == [1.0, 3.0]
    assert len(held) == 0 and held.next_due() is None


def test_positive_weight_is_the_capped_class_ratio_only_when_balancing() -> None:
    assert positive_weight([90, 3], balance_classes=False) == 1.0
    assert positive_weight([90, 0], balance_classes=True) == 1.0
    assert positive_weight([90, 3], balance_classes=True) == 30.0
    assert positive_weight([5, 10], balance_classes=True) == 1.0
    assert positive_weight([10_000, 1], balance_classes=True) == MAX_POSITIVE_WEIGHT


def test_learn_label_counts_classes_for_classifiers_only() -> None:
    counts = [0, 0]
    classifier = build_model("classification")
    learn_label(classifier, "classification", {"a": 1.0}, 1.0, counts, balance_classes=False)
    learn_label(classifier, "classification", {"a": -1.0}, 0.0, counts, balance_classes=False)
    assert counts == [1, 1]
    other = [0, 0]
    learn_label(build_model("regression"), "regression", {"a": 1.0}, 12.5, other, balance_classes=False)
    assert other == [0, 0]
