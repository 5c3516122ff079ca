"""The offline replay: labels mature in event time, holdout customers are never learned from."""

from __future__ import annotations

from typing import Any

from features.config import FeatureConfig
from features.event import Event
from models.labels import LabelRules
from models.offline import OfflineRun, replay
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
