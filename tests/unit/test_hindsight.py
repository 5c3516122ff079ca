"""The hindsight reference of ``segflow evaluate``: its holdout, label counts and gap interval."""

from __future__ import annotations

import math
import random

from models.hindsight import LabelRow, hindsight_auc


def _rows(n_customers: int, seed: int) -> list[LabelRow]:
    rng = random.Random(seed)
    rows = []
    for c in range(n_customers):
        holdout = c % 3 == 0
        for _ in range(4):
            a = rng.gauss(0, 1)
            y = float(a + rng.gauss(0, 1) > 1.5)
            rows.append(LabelRow({"a": a, "b": rng.gauss(0, 1)}, y, 1 / (1 + math.exp(-a)), holdout, f"c{c}"))
    return rows


def test_hindsight_reference_reports_its_holdout_and_a_gap_interval() -> None:
    rows = _rows(300, seed=1)
    out = hindsight_auc(rows, ["a", "b"])
    test = [r for r in rows if r.holdout]
    assert out["holdout_labels"] == len(test) and out["train_labels"] == len(rows) - len(test)
    assert out["holdout_positives"] == sum(1 for r in test if r.y_true)
    gap = out["reference_auc"] - out["online_auc"]  # type: ignore[operator]
    assert out["gap_low"] <= gap <= out["gap_high"]  # type: ignore[operator]
    assert hindsight_auc(rows, ["a", "b"]) == out  # the bootstrap is seeded


def test_hindsight_reference_needs_both_classes() -> None:
    rows = [LabelRow({"a": float(i)}, 0.0, 0.1, i % 2 == 0, f"c{i}") for i in range(10)]
    out = hindsight_auc(rows, ["a"])
    assert out["reference_auc"] is None and out["gap_low"] is None and out["holdout_positives"] == 0
