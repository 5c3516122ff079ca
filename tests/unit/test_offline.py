"""The offline replay: labels mature in event time, holdout customers are never learned from."""

from __future__ import annotations

import math
import random
from typing import Any

from features.config import FeatureConfig
from features.event import Event
from models.labels import LabelRules
from models.offline import LabelRow, OfflineRun, hindsight_auc, replay
from models.registry import model_specs

DAY = 86_400.0
T0 = 1_767_225_600.0
CONFIG = FeatureConfig(allowed_lateness_seconds=3 * DAY)


def ev(customer: str, kind: str, day: float, **attrs: Any) -> Event:
    return Event(f"{customer}-{kind}-{day}", customer, kind, T0 + day * DAY, attrs)


def churn_run(holdout_fraction: float) -> OfflineRun:
    specs = [s for s in model_specs(CONFIG.products) if s.name == "churn"]
    return OfflineRun(
        specs, CONFIG, LabelRules(churn_days=30), holdout_fraction=holdout_fraction, warmup_days=0
    )


def test_churn_labels_resolve_by_activity_and_by_the_watermark() -> None:
    run = churn_run(0.0)
    # alice: predicted at d0, active again at d10 -> negative; predicted again at d10 (due d40).
    # bob's events move the watermark (newest - 3 days): at d45 it is d42 >= d40 -> alice positive.
    events = [
        ev("alice", "login", 0),
        ev("alice", "login", 10),
        ev("bob", "login", 20),
        ev("bob", "login", 45),
    ]
    result = replay(events, run)
    labels = [(r.y_true, r.holdout) for r in result.rows["churn"]]
    # alice: negative at d10, positive at d45 (due d40); bob: predicted at d20, active again at
    # d45 -> negative; bob's d45 prediction is still pending.
    assert sorted(labels) == [(0.0, False), (0.0, False), (1.0, False)]
    assert set(run.pending["bob"]) == {"churn"}
    assert run.pending["bob"]["churn"].made_ts == T0 + 45 * DAY
    assert "churn" not in run.pending["alice"]


def test_nothing_resolves_before_the_watermark_passes_the_due_time() -> None:
    run = churn_run(0.0)
    replay([ev("alice", "login", 0), ev("bob", "login", 32.9)], run)  # watermark d29.9 < due d30
    assert run.result.rows.get("churn", []) == []
    replay([ev("bob", "page_view", 33.0, page="/")], run)  # watermark d30 -> due
    assert [r.y_true for r in run.result.rows["churn"]] == [1.0]


def test_holdout_customers_are_scored_but_never_learned_from() -> None:
    run = churn_run(1.0)  # everyone in the holdout
    events = [ev(f"c{i}", "login", day) for i in range(5) for day in (0, 5, 10)]
    events += [ev("z", "login", 80)]
    result = replay(sorted(events, key=lambda e: e.ts), run)
    assert result.rows["churn"] and all(row.holdout for row in result.rows["churn"])
    assert result.evaluations["churn"].report()["prequential"]["n"] == 0
    model = run.models["churn"]
    assert list(model.steps.values())[-1].weights == {}  # never learned anything


def _weights(run: OfflineRun) -> dict[str, float]:
    return dict(list(run.models["churn"].steps.values())[-1].weights)


def test_an_early_label_is_learned_only_once_its_prediction_is_due() -> None:
    run = churn_run(0.0)
    # alice's d0 prediction resolves negative at d10 (active again) and is scored at once, but it
    # is learned only when the watermark passes its due time d30 (bob's d33.5 login: d30.5).
    replay([ev("alice", "login", 0), ev("alice", "login", 10)], run)
    assert [r.y_true for r in run.result.rows["churn"]] == [0.0]
    assert run.class_counts.get("churn") is None and len(run.maturing) == 1
    assert not _weights(run)
    replay([ev("bob", "login", 32.9)], run)  # watermark d29.9: not yet
    assert run.class_counts.get("churn") is None
    replay([ev("bob", "login", 33.5)], run)  # alice's label learned; bob's d32.9 one now waits
    assert run.class_counts["churn"] == [1, 0] and len(run.maturing) == 1
    assert _weights(run)


def test_labels_can_be_learned_as_they_resolve() -> None:
    specs = [s for s in model_specs(CONFIG.products) if s.name == "churn"]
    run = OfflineRun(
        specs, CONFIG, LabelRules(churn_days=30), holdout_fraction=0.0, warmup_days=0, learn_at_due=False
    )
    replay([ev("alice", "login", 0), ev("alice", "login", 10)], run)
    assert run.class_counts["churn"] == [1, 0] and len(run.maturing) == 0


def test_labels_learned_in_due_order_whichever_way_they_resolved() -> None:
    run = churn_run(0.0)
    learned: list[tuple[str, float, float]] = []
    run._learn = lambda label: learned.append((label.model, label.made_ts, label.y_true))  # type: ignore[method-assign]
    # alice: d0 (negative at d2, due d30), d2 (no more activity: positive, due d32);
    # bob: d1 (negative at d20, due d31). Learned in due order: alice d0, bob d1, alice d2.
    events = [ev("alice", "login", 0), ev("bob", "login", 1), ev("alice", "login", 2)]
    events += [ev("bob", "login", 20), ev("carol", "login", 40)]
    replay(events, run)
    assert learned == [("churn", T0, 0.0), ("churn", T0 + 1 * DAY, 0.0), ("churn", T0 + 2 * DAY, 1.0)]


def test_a_model_scores_only_when_it_makes_a_prediction(monkeypatch: Any) -> None:
    import models.offline as offline

    calls: list[str] = []
    real = offline.score

    def counting(model: Any, task: str, x: dict[str, float]) -> float:
        calls.append(task)
        return real(model, task, x)

    monkeypatch.setattr(offline, "score", counting)
    specs = [s for s in model_specs(CONFIG.products) if s.name == "churn"]
    run = OfflineRun(specs, CONFIG, LabelRules(churn_days=30), warmup_days=0, prediction_interval_days=7)
    # d0 predicts; d1 resolves it (active again) but is within 7 days of it; d3 likewise; d8 predicts.
    replay([ev("alice", "login", day) for day in (0, 1, 3, 8)], run)
    assert len(calls) == 2
    assert run.pending["alice"]["churn"].made_ts == T0 + 8 * DAY


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
