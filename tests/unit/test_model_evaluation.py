"""Online evaluation: stable holdout, metrics recomputed by hand, drift flagged on the error stream."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from models.evaluation import CalibrationError, ModelEvaluation, is_holdout
from models.registry import build_model
from models.scoring import score

# Computed once; must never change, or every deployed holdout would reshuffle.
HOLDOUT_AMONG_FIRST_200 = [
    "c000043", "c000044", "c000062", "c000070", "c000078", "c000108", "c000112",
    "c000119", "c000138", "c000155", "c000156", "c000161", "c000192",
]  # fmt: skip


def _exact_auc(labels: list[bool], probs: list[float]) -> float:
    """Mann-Whitney: the chance a random positive outranks a random negative (ties count half)."""
    pos = [p for y, p in zip(labels, probs, strict=True) if y]
    neg = [p for y, p in zip(labels, probs, strict=True) if not y]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_holdout_fraction_is_ten_percent() -> None:
    share = sum(is_holdout(f"c{i:06d}") for i in range(100_000)) / 100_000
    assert abs(share - 0.1) < 0.01


def test_holdout_is_stable_across_runs() -> None:
    assert [f"c{i:06d}" for i in range(200) if is_holdout(f"c{i:06d}")] == HOLDOUT_AMONG_FIRST_200
    for i in range(1000):
        customer = f"cust-{i}"
        digest = hashlib.blake2b(f"segflow-holdout{customer}".encode(), digest_size=8).digest()
        assert is_holdout(customer) == (int.from_bytes(digest, "big") / 2**64 < 0.1)


def test_holdout_fraction_and_salt() -> None:
    ids = [f"c{i}" for i in range(2000)]
    assert not any(is_holdout(c, fraction=0.0) for c in ids)
    assert all(is_holdout(c, fraction=1.0) for c in ids)
    assert [is_holdout(c, salt="a") for c in ids] != [is_holdout(c, salt="b") for c in ids]
    with pytest.raises(ValueError):
        is_holdout("c1", fraction=1.5)


def test_ece_on_hand_computed_bins() -> None:
    ece = CalibrationError()
    assert ece.get() is None
    for label, p in [(False, 0.05), (True, 0.15), (False, 0.12), (True, 0.95), (False, 0.91), (True, 1.0)]:
        ece.update(label, p)
    # bin 0: {.05 F} -> |.05 - 0|; bin 1: {.15 T, .12 F} -> |.135 - .5|; bin 9: {.95 T, .91 F, 1.0 T}
    expected = (1 * 0.05 + 2 * abs(0.135 - 0.5) + 3 * abs(2.86 / 3 - 2 / 3)) / 6
    assert ece.get() == pytest.approx(expected) == pytest.approx(1.64 / 6)


def test_perfectly_calibrated_bins_have_zero_ece() -> None:
    ece = CalibrationError()
    for label in (True, False, False, False, True, False, False, False):
        ece.update(label, 0.25)
    assert ece.get() == pytest.approx(0.0)


def test_classification_metrics_match_hand_computation() -> None:
    evaluation = ModelEvaluation("churn", "classification")
    labels, probs = [False, False, True, True], [0.1, 0.4, 0.35, 0.8]
    for label, p in zip(labels, probs, strict=True):
        evaluation.update(label, p, holdout=False)
    report = evaluation.report()["prequential"]
    assert report["n"] == 4 and report["positives"] == 2
    assert report["roc_auc"] == pytest.approx(0.75)
    expected_log_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert report["log_loss"] == pytest.approx(expected_log_loss)


def test_roc_auc_matches_mann_whitney() -> None:
    rng = random.Random(4)
    labels = [rng.random() < 0.4 for _ in range(300)]
    probs = [round(min(max(rng.gauss(0.6 if y else 0.4, 0.2), 0.0), 1.0), 2) for y in labels]
    evaluation = ModelEvaluation("p", "classification")
    for label, p in zip(labels, probs, strict=True):
        evaluation.update(label, p, holdout=True)
    assert evaluation.report()["holdout"]["roc_auc"] == pytest.approx(_exact_auc(labels, probs), abs=1e-9)


def test_regression_metrics_match_hand_computation() -> None:
    evaluation = ModelEvaluation("clv", "regression")
    for y, p in [(10.0, 12.0), (0.0, 3.0), (100.0, 90.0)]:
        evaluation.update(y, p, holdout=False)
    report = evaluation.report()["prequential"]
    assert report["n"] == 3
    assert report["mae"] == pytest.approx(15 / 3)
    assert report["rmse"] == pytest.approx(math.sqrt((4 + 9 + 100) / 3))


def test_empty_and_one_class_reports_have_none() -> None:
    classification = ModelEvaluation("churn", "classification")
    assert classification.report()["prequential"] == {
        "n": 0, "positives": 0, "roc_auc": None, "auc_positives": 0, "auc_negatives": 0,
        "log_loss": None, "ece": None,
    }  # fmt: skip
    classification.update(True, 0.7, holdout=False)
    assert classification.report()["prequential"]["roc_auc"] is None
    assert classification.report()["prequential"]["log_loss"] == pytest.approx(-math.log(0.7))
    regression = ModelEvaluation("clv", "regression")
    assert regression.report()["holdout"] == {"n": 0, "mae": None, "rmse": None}


def test_holdout_and_prequential_are_separate() -> None:
    evaluation = ModelEvaluation("churn", "classification")
    evaluation.update(True, 0.9, holdout=True)
    evaluation.update(False, 0.2, holdout=False)
    evaluation.update(False, 0.3, holdout=False)
    report = evaluation.report()
    assert (report["holdout"]["n"], report["holdout"]["positives"]) == (1, 1)
    assert (report["prequential"]["n"], report["prequential"]["positives"]) == (2, 0)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="restart"):
        ModelEvaluation("churn", "classification", on_drift="restart")
    with pytest.raises(ValueError):
        ModelEvaluation("churn", "ranking")
    evaluation = ModelEvaluation("churn", "classification")
    for bad in (1.2, -0.1, math.nan):
        with pytest.raises(ValueError):
            evaluation.update(True, bad, holdout=False)
    with pytest.raises(ValueError):
        ModelEvaluation("clv", "regression").update(math.inf, 1.0, holdout=False)


def _drifting_stream(evaluation: ModelEvaluation, holdout: bool = False) -> list[int]:
    rng = random.Random(0)
    detected = []
    for i in range(2000):
        label = rng.random() < 0.5
        good = 0.9 if label else 0.1
        p = good if i < 1000 else 1.0 - good  # the world flips half-way
        if evaluation.update(label, p, holdout=holdout, ts=float(i)):
            detected.append(i)
    return detected


@pytest.mark.parametrize("response", ["reset", "alert"])
def test_drift_is_detected_after_the_change(response: str) -> None:
    evaluation = ModelEvaluation("churn", "classification", on_drift=response)
    detected = _drifting_stream(evaluation)
    assert detected and all(i >= 1000 for i in detected)
    assert detected[0] < 1200
    assert evaluation.drift_detections == len(detected)
    drift = evaluation.report()["drift"]
    assert drift["detections"] == len(detected)
    assert drift["last_detection_ts"] == float(detected[-1])
    assert drift["response"] == response


def test_drift_flag_lasts_one_update_and_reset_due_follows_response() -> None:
    for response in ("reset", "alert"):
        evaluation = ModelEvaluation("churn", "classification", on_drift=response)
        rng = random.Random(0)
        for i in range(2000):
            label = rng.random() < 0.5
            p = (0.9 if label else 0.1) if i < 1000 else (0.1 if label else 0.9)
            if evaluation.update(label, p, holdout=False, ts=float(i)):
                assert evaluation.drift_detected
                assert evaluation.reset_due == (response == "reset")
                evaluation.update(label, p, holdout=True)
                assert not evaluation.drift_detected and not evaluation.reset_due
                break
        else:
            pytest.fail("no drift detected")


def test_holdout_labels_never_feed_the_detector() -> None:
    evaluation = ModelEvaluation("churn", "classification")
    assert _drifting_stream(evaluation, holdout=True) == []
    assert evaluation.drift_detections == 0 and evaluation.report()["drift"]["last_detection_ts"] is None


def test_online_linear_churn_classifier_reaches_good_auc() -> None:
    rng = random.Random(11)
    model = build_model("classification")
    evaluation = ModelEvaluation("churn", "classification")
    for _ in range(3000):
        churn = rng.random() < 0.3
        x = {
            "logins_30d": max(0.0, rng.gauss(3 if churn else 7, 3)),
            "days_since_last_login": max(0.0, rng.gauss(15 if churn else 6, 6)),
            "engagement_score": max(0.0, rng.gauss(4 if churn else 9, 4)),
            "noise": rng.gauss(0, 1),
        }
        evaluation.update(churn, score(model, "classification", x), holdout=False)
        model.learn_one(x, churn)
    report = evaluation.report()["prequential"]
    assert report["roc_auc"] > 0.8
    assert report["log_loss"] < math.log(2)


def test_windowed_auc_forgets_labels_older_than_its_window() -> None:
    from models.evaluation import WindowedAUC

    auc = WindowedAUC(window=4)
    for y, p in [(True, 0.1), (False, 0.9), (True, 0.8), (False, 0.2)]:  # perfectly wrong, then right
        auc.update(y, p)
    # positive 0.1 loses to both negatives; positive 0.8 beats 0.2 only: 1 of 4 pairs
    assert auc.get() == pytest.approx(0.25)
    for y, p in [(True, 0.7), (False, 0.3)]:  # the two oldest (wrong) labels leave the window
        auc.update(y, p)
    assert auc.get() == pytest.approx(1.0)
