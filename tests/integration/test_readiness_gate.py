"""A warming-up model never assigns a segment: the pipeline on a real Redis, a customer's first event.

The bug this guards against: 'Cross-sell Mortgage' fired on a customer's first event with
"score_propensity_mortgage=0.5 >= 0.3", from a propensity model that had learned a handful of
labels. Here the mortgage model learned 5 positive labels (all inputs zero, so its scaler
ignores them and only its intercept moves: it scores above 0.5 for anyone). Under the default
readiness thresholds (200 labels) it is warming up and the rules see no score; with the
thresholds off (the old rule: one label learned is enough) the same customer is cross-sold,
which shows the event does satisfy the rule otherwise.
"""

from __future__ import annotations

from array import array

import msgpack
import pytest
from helpers import seal_untrained_models, with_redis
from redis.asyncio import Redis

from engine.app import build_pipeline, model_config
from engine.settings import Settings
from engine.stream.pipeline import SEGMENT_CHANGE, RawRecord
from models.label_messages import LabelMessage, make_label_id
from models.learner import Learner, encode_snapshot
from models.snapshots import snapshot_key

pytestmark = pytest.mark.integration
DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MODEL = "propensity_mortgage"


def learned_a_little(settings: Settings, version: int) -> bytes:
    """The snapshot of ``version`` after the mortgage model learned 5 positive labels."""
    config = model_config(settings)
    learner = Learner(config, settings.model_period_seconds)
    due = version * settings.model_period_seconds + 10.0
    for i in range(5):
        customer = f"taught{i}"
        learner.add(
            LabelMessage(
                schema=1,
                label_id=make_label_id(customer, MODEL, due - 30 * DAY),
                customer_id=customer,
                model=MODEL,
                x=array("f", [0.0] * len(config.input_names)).tobytes(),
                y_true=1.0,
                y_pred=0.5,
                holdout=False,
                made_ts=due - 30 * DAY,
                due_ts=due,
                resolved_ts=due,
                partition=0,
            )
        )
    [(sealed, snapshot)] = learner.seal_through(version)
    assert sealed == version and snapshot["models"][MODEL]["labels_learned"] == 5
    return encode_snapshot(snapshot)


def first_event_changes(settings: Settings) -> tuple[list[dict[str, object]], dict[str, float]]:
    """The change events of a savings holder's first event, and the scores stored for them."""
    event = {
        "event_id": "e1",
        "customer_id": "saver",
        "type": "product_holding",
        "ts": round((T0 + 10 * DAY) * 1000),
        "attrs": {"product": "savings", "balance": 20_000},
    }

    async def body(client: Redis) -> tuple[list[dict[str, object]], dict[str, float]]:
        await seal_untrained_models(client, settings.key_prefix)
        pipeline = build_pipeline(settings, client, clock=lambda: 1.8e9, cache_capacity=0)
        version = pipeline.models.version_of(event["ts"] / 1000)  # type: ignore[operator]
        await client.set(snapshot_key(settings.key_prefix, version), learned_a_little(settings, version))
        result = await pipeline.process([RawRecord("events", 0, 0, b"saver", msgpack.packb(event))])
        assert result.applied == 1
        changes = [msgpack.unpackb(c.payload) for c in result.changes if c.kind == SEGMENT_CHANGE]
        record = await pipeline.store.get("saver")
        assert record is not None
        return changes, pipeline.step.working(record).scores

    return with_redis(settings, body)


def test_a_warming_up_propensity_model_never_assigns_next_best_action(isolated_settings: Settings) -> None:
    changes, scores = first_event_changes(isolated_settings)
    assert [c["family"] for c in changes if c["to"] is not None] == ["lifecycle"]
    assert not any(c["family"] == "next_best_action" for c in changes)
    assert MODEL not in scores
    assert all(MODEL not in c["scores"] for c in changes)  # type: ignore[operator]


def test_with_the_thresholds_off_the_same_model_cross_sells(isolated_settings: Settings) -> None:
    settings = isolated_settings.model_copy(
        update={"model_ready_min_labels": 0, "model_ready_require_auc": False}
    )
    changes, scores = first_event_changes(settings)
    [action] = [c for c in changes if c["family"] == "next_best_action"]
    assert action["to"] == "Cross-sell Mortgage"
    assert scores[MODEL] > 0.5
