"""The strongest simple rule: chosen on training labels, measured on holdout labels."""

from __future__ import annotations

import numpy as np
import pytest

from models.baselines import roc_auc, strongest_rule
from models.hindsight import LabelRow


def row(x: dict[str, float], y: float, pred: float, holdout: bool) -> LabelRow:
    return LabelRow(x=x, y_true=y, y_pred=pred, holdout=holdout)


def test_roc_auc_counts_ties_half() -> None:
    # Positives at 0.9 and 0.5, negatives at 0.5 and 0.1: pairs (0.9>0.5, 0.9>0.1, 0.5=0.5, 0.5>0.1)
    # give (1 + 1 + 0.5 + 1) / 4.
    truth = np.array([1.0, 1.0, 0.0, 0.0])
    assert roc_auc(truth, np.array([0.9, 0.5, 0.5, 0.1])) == 0.875
    assert roc_auc(np.array([1.0, 1.0]), np.array([0.2, 0.3])) is None


def test_the_rule_is_chosen_on_training_labels_and_measured_on_the_holdout() -> None:
    # On training labels "silent" separates perfectly (higher: positive) and "noise" not at all,
    # so "silent" is chosen even though "noise" happens to be perfect on the holdout.
    train = [
        row({"silent": 30.0, "noise": 1.0}, 1, 0.5, False),
        row({"silent": 20.0, "noise": 2.0}, 1, 0.5, False),
        row({"silent": 5.0, "noise": 1.0}, 0, 0.5, False),
        row({"silent": 1.0, "noise": 2.0}, 0, 0.5, False),
    ]
    holdout = [
        # silent: positives 40, 3; negatives 10, 2 -> pairs 40>10, 40>2, 3<10, 3>2 = 3/4.
        row({"silent": 40.0, "noise": 9.0}, 1, 0.9, True),
        row({"silent": 3.0, "noise": 8.0}, 1, 0.6, True),
        row({"silent": 10.0, "noise": 1.0}, 0, 0.7, True),
        row({"silent": 2.0, "noise": 0.0}, 0, 0.1, True),
    ]
    rule = strongest_rule("churn", "classification", train + holdout, ["silent", "noise"])
    assert rule.rule == "silent (higher: positive)"
    assert rule.rule_metric == 0.75
    # Online: positives 0.9, 0.6; negatives 0.7, 0.1 -> 0.9>0.7, 0.9>0.1, 0.6<0.7, 0.6>0.1 = 3/4.
    assert rule.online_metric == 0.75 and rule.online_wins is False
    assert (rule.train_labels, rule.holdout_labels) == (4, 4)


def test_a_lower_is_positive_rule_is_found() -> None:
    rows = [row({"logins": float(v)}, y, 0.5, h) for v, y, h in [(9, 0, 0), (1, 1, 0), (8, 0, 1), (2, 1, 1)]]
    rule = strongest_rule("churn", "classification", rows, ["logins"])
    assert rule.rule == "logins (lower: positive)" and rule.rule_metric == 1.0


def test_regression_rule_is_a_least_squares_line_on_the_best_input() -> None:
    # y = 2 + 3 * spend exactly on training labels; "other" is unrelated.
    train = [
        row({"spend": s, "other": o}, 2 + 3 * s, 0.0, False) for s, o in [(0, 5), (1, 1), (2, 4), (3, 0)]
    ]
    holdout = [
        row({"spend": 4.0, "other": 2.0}, 15.0, 13.0, True),
        row({"spend": 1.0, "other": 3.0}, 4.0, 5.0, True),
    ]
    rule = strongest_rule("clv", "regression", train + holdout, ["spend", "other"])
    assert rule.rule == "2 + 3 x spend"
    # The line predicts 14 and 5: errors 1 and 1. Online errors 2 and 1.
    assert rule.rule_metric == pytest.approx(1.0)
    assert rule.online_metric == pytest.approx(1.5) and rule.online_wins is False


def test_no_labels_no_rule() -> None:
    rule = strongest_rule("churn", "classification", [], ["x"])
    assert rule.rule is None and rule.online_wins is None
