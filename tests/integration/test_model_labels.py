"""Delayed labels in the pipeline on a real Redis: matured in event time, learned exactly once.

Hand-worked stream on one partition: c1 logs in on day 0 and is never seen again; c2 only views
pages, daily from day 1 to day 40 (a page view is not activity, so it never resolves churn).
Every model predicts at a customer's first event; churn and the five propensities look 30 days
ahead, clv 90. The watermark is the newest event time minus the 3-day lateness, and a label
matures once the watermark is past its due time (strictly: an event exactly at the watermark is
still accepted and could count towards it), so:

* c1's predictions (day 0, due day 30) mature once c2's day-34 event is in: churn positive,
  propensities negative (no purchase) - 6 labels;
* c2's predictions (day 1, due day 31) mature with its day-35 event - 6 more;
* c2 predicts again on day 35 (7-day interval passed, nothing pending), due day 65: not matured;
* clv (due day 90 / 91) never matures here. In all: 12 labels, 2 of them churn positives.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from helpers import with_redis
from redis.asyncio import Redis

from engine.app import build_pipeline
from engine.settings import Settings
from engine.stream.customer_step import BOOK_EXTRA
from engine.stream.pipeline import RawRecord, SegmentPipeline
from models.inputs import to_model_input
from models.pending import PredictionBook

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
T0 = 1_767_225_600_000
CLOCK = 1.8e9
STREAM: list[dict[str, Any]] = [
    {"event_id": "c1-0", "customer_id": "c1", "type": "login", "ts": T0},
    *(
        {
            "event_id": f"c2-{d}",
            "customer_id": "c2",
            "type": "page_view",
            "ts": T0 + d * DAY_MS,
            "attrs": {"page": "/rates"},
        }
        for d in range(1, 41)
    ),
]
RECORDS = [
    RawRecord("events", 0, i, e["customer_id"].encode(), msgpack.packb(e)) for i, e in enumerate(STREAM)
]


def labels_by_model(pipeline: SegmentPipeline) -> dict[str, tuple[int, int]]:
    """(labels, positives) per model, prequential and holdout together."""
    out = {}
    for name, evaluation in pipeline.banks.get(0).evaluations.items():
        groups = (evaluation.prequential, evaluation.holdout)
        n = sum(g.n for g in groups)
        positives = sum(getattr(g, "positives", 0) for g in groups)
        out[name] = (n, positives)
    return out


async def feed(pipeline: SegmentPipeline, records: list[RawRecord]) -> list[str]:
    """One record per batch, each followed by a tick; returns the change ids emitted."""
    ids = []
    for record in records:
        for result in (await pipeline.process([record]), await pipeline.tick()):
            ids += [c.change_id for c in result.changes]
            await pipeline.confirm_sent(result.changes)
    return ids


def run(settings: Settings, body: Any) -> Any:
    return with_redis(settings, body)


def test_labels_mature_in_event_time_and_are_learned_once(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        pipeline = build_pipeline(isolated_settings, client, clock=lambda: CLOCK, cache_capacity=0)
        day_of_offset = {i: (e["ts"] - T0) // DAY_MS for i, e in enumerate(STREAM)}
        upto_33 = [r for r in RECORDS if day_of_offset[r.offset] <= 33]
        first_ids = await feed(pipeline, upto_33)
        assert pipeline.banks.get(0).labels_learned == 0  # watermark day 30: nothing is past due
        first_ids += await feed(pipeline, [r for r in RECORDS if day_of_offset[r.offset] == 34])
        assert pipeline.banks.get(0).labels_learned == 6  # c1's six 30-day predictions
        assert labels_by_model(pipeline)["churn"] == (1, 1)
        first_ids += await feed(pipeline, [r for r in RECORDS if day_of_offset[r.offset] > 34])
        counts = labels_by_model(pipeline)
        assert counts["churn"] == (2, 2) and counts["clv"] == (0, 0)
        assert all(
            counts[f"propensity_{p}"] == (2, 0)
            for p in ("mortgage", "credit_card", "savings", "current_account", "insurance")
        )
        assert pipeline.banks.get(0).labels_learned == 12
        assert first_ids  # lifecycle changes at least (new, then lapsing/churned by time)

        # Kafka redelivers everything: no label is learned again, no change is emitted again.
        again = await feed(pipeline, RECORDS)
        assert again == [] and pipeline.banks.get(0).labels_learned == 12

    run(isolated_settings, body)


def test_a_new_owner_replays_committed_labels_and_predicts_the_same(isolated_settings: Settings) -> None:
    probe = {"features": None}

    async def body(client: Redis) -> None:
        old = build_pipeline(isolated_settings, client, clock=lambda: CLOCK, cache_capacity=100)
        await feed(old, RECORDS)
        assert old.banks.get(0).labels_learned == 12
        record = await old.store.get("c2")
        assert record is not None and record.state is not None
        features = old.step.variables("c2", record.state, {}, None).features
        probe["features"] = features
        x = to_model_input(features, old.step.config.input_names)
        before = old.banks.get(0).score_all(x)

        # The old owner dies before any checkpoint: the new one replays the learn boxes.
        new = build_pipeline(isolated_settings, client, clock=lambda: CLOCK, cache_capacity=0)
        await new.banks.ensure([0])
        assert new.banks.replayed_labels == 12 and new.banks.get(0).labels_learned == 12
        assert new.banks.get(0).score_all(x) == before
        assert labels_by_model(new) == labels_by_model(old)

        # The old owner, now a zombie, cannot overwrite the new owner's checkpoint.
        assert await old.banks.checkpoint() == [] and old.banks.owned == []
        assert await new.banks.checkpoint() == [0]
        assert await client.zcard(f"{isolated_settings.key_prefix}:learn:0") == 0  # boxes cleared

        third = build_pipeline(isolated_settings, client, clock=lambda: CLOCK, cache_capacity=0)
        await third.banks.ensure([0])
        assert third.banks.replayed_labels == 0 and third.banks.get(0).labels_learned == 12
        assert third.banks.get(0).score_all(x) == before
        # ... and redelivery to the third owner learns nothing twice either.
        assert await feed(third, RECORDS) == [] and third.banks.get(0).labels_learned == 12

    run(isolated_settings, body)


def test_a_label_resolved_early_is_learned_at_its_due_time(isolated_settings: Settings) -> None:
    # c3 logs in on day 0 and again on day 5: its day-0 churn prediction is settled negative on
    # day 5, but learned (and scored) only once the watermark passes its due time, day 30, with
    # its five propensity labels; nothing is learned before (the watermark is day 30, not past
    # the due time, after c2's day-33 page view). c3 does not predict again on day 5 (the 7-day
    # interval has not passed).
    stream = [
        {"event_id": "c3-0", "customer_id": "c3", "type": "login", "ts": T0},
        {"event_id": "c3-5", "customer_id": "c3", "type": "login", "ts": T0 + 5 * DAY_MS},
        *(e for e in STREAM if e["customer_id"] == "c2"),
    ]
    records = [
        RawRecord("events", 0, i, e["customer_id"].encode(), msgpack.packb(e)) for i, e in enumerate(stream)
    ]
    day = {r.offset: (e["ts"] - T0) // DAY_MS for r, e in zip(records, stream, strict=True)}

    async def body(client: Redis) -> None:
        pipeline = build_pipeline(isolated_settings, client, clock=lambda: CLOCK, cache_capacity=0)
        await feed(pipeline, [r for r in records if day[r.offset] <= 33])
        assert pipeline.banks.get(0).labels_learned == 0
        record = await pipeline.store.get("c3")
        assert record is not None
        book = PredictionBook.decode(record.extras[BOOK_EXTRA])  # in Redis, not worker memory
        assert [(due, label.model, label.y_true) for due, label in book.held] == [
            (T0 / 1000 + 30 * 86_400, "churn", 0.0)
        ]
        await feed(pipeline, [r for r in records if day[r.offset] == 34])
        counts = labels_by_model(pipeline)
        assert counts["churn"] == (1, 0) and pipeline.banks.get(0).labels_learned == 6

    run(isolated_settings, body)
