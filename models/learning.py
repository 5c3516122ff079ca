"""How one matured label teaches a model: the single learning step shared by the worker and replays.

Churn positives are rare (about 1 in 80 predictions in the simulator), so a classifier learns a
positive with a weight of (negatives seen / positives seen), capped, which keeps its ranking of
customers (ROC AUC) from collapsing towards "nobody churns". Regression labels learn unweighted.
"""

from __future__ import annotations

from typing import Any

MAX_POSITIVE_WEIGHT = 50.0


def positive_weight(counts: list[int], balance_classes: bool) -> float:
    """The weight of a positive label given ``counts`` = [negatives, positives] seen so far."""
    if not balance_classes or not counts[1]:
        return 1.0
    return min(MAX_POSITIVE_WEIGHT, max(1.0, counts[0] / counts[1]))


def learn_label(
    model: Any, task: str, x: dict[str, float], y_true: float, counts: list[int], balance_classes: bool
) -> None:
    """Teach ``model`` one label; ``counts`` ([negatives, positives]) is updated for classifiers."""
    if task == "classification":
        positive = bool(y_true)
        counts[int(positive)] += 1
        weight = positive_weight(counts, balance_classes) if positive else 1.0
        model.learn_one(x, positive, w=weight)
    else:
        model.learn_one(x, float(y_true))
