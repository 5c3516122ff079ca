"""Delayed labels in the pipeline on a real Redis: matured in event time, sent exactly once.

Resolved labels leave through the customer's outbox, committed with the customer, for the
labels topic (the learner, ``engine.learner``, learns them; its own tests cover that); here the
pipeline's outputs stand for the topic.

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

Model versions are sealed as untrained here: every model still predicts (an untrained one
too, so that it gets its first labels), and no score reaches the rules.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from helpers import seal_untrained_models, with_redis
from redis.asyncio import Redis

from engine.app import build_pipeline
from engine.settings import Settings
from engine.stream.customer_step import BOOK_EXTRA
from engine.stream.pipeline import LABEL, PendingChange, RawRecord, SegmentPipeline
from models.label_messages import LabelMessage, decode_label
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


def labels_by_model(labels: list[LabelMessage]) -> dict[str, tuple[int, int]]:
    """(labels, positives) per model."""
    out: dict[str, tuple[int, int]] = {}
    for label in labels:
        n, positives = out.get(label.model, (0, 0))
        out[label.model] = (n + 1, positives + int(label.y_true > 0))
    return out


def labels_of(outputs: list[PendingChange]) -> list[LabelMessage]:
    """The label messages among a pipeline's outputs (what goes to the labels topic)."""
    return [decode_label(c.payload) for c in outputs if c.kind == LABEL]


async def feed(
    pipeline: SegmentPipeline, records: list[RawRecord], confirm: bool = True
) -> list[PendingChange]:
    """One record per batch, each followed by a tick; returns the outputs (changes, labels)."""
    out: list[PendingChange] = []
    for record in records:
        for result in (await pipeline.process([record]), await pipeline.tick()):
            assert not result.held  # every version reads as sealed here
            out += result.changes
            if confirm:
                await pipeline.confirm_sent(result.changes)
    return out


async def fresh_pipeline(settings: Settings, client: Redis, cache: int = 0) -> SegmentPipeline:
    await seal_untrained_models(client, settings.key_prefix)
    return build_pipeline(settings, client, clock=lambda: CLOCK, cache_capacity=cache)


def run(settings: Settings, body: Any) -> Any:
    return with_redis(settings, body)


def test_labels_mature_in_event_time_and_are_sent_once(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        pipeline = await fresh_pipeline(isolated_settings, client)
        day_of_offset = {i: (e["ts"] - T0) // DAY_MS for i, e in enumerate(STREAM)}
        outputs = await feed(pipeline, [r for r in RECORDS if day_of_offset[r.offset] <= 33])
        assert labels_of(outputs) == []  # watermark day 30: nothing is past due
        outputs += await feed(pipeline, [r for r in RECORDS if day_of_offset[r.offset] == 34])
        first = labels_of(outputs)
        assert len(first) == 6 and {label.customer_id for label in first} == {"c1"}  # c1's six
        assert labels_by_model(first)["churn"] == (1, 1)
        outputs += await feed(pipeline, [r for r in RECORDS if day_of_offset[r.offset] > 34])
        labels = labels_of(outputs)
        counts = labels_by_model(labels)
        assert counts["churn"] == (2, 2) and "clv" not in counts
        assert all(
            counts[f"propensity_{p}"] == (2, 0)
            for p in ("mortgage", "credit_card", "savings", "current_account", "insurance")
        )
        assert len(labels) == len({label.label_id for label in labels}) == 12
        assert all(label.due_ts == label.made_ts + 30 * 86_400 for label in labels)
        assert any(c.kind == "c" for c in outputs)  # lifecycle changes at least

        # Kafka redelivers everything: no label and no change is emitted again.
        assert await feed(pipeline, RECORDS) == []

    run(isolated_settings, body)


def test_a_label_committed_but_not_sent_is_sent_again_with_its_id(isolated_settings: Settings) -> None:
    async def body(client: Redis) -> None:
        old = await fresh_pipeline(isolated_settings, client, cache=100)
        outputs = await feed(old, RECORDS, confirm=False)  # the worker dies before the broker acks
        sent = {c.change_id: c.payload for c in outputs if c.kind == LABEL}
        assert len(sent) == 12

        new = await fresh_pipeline(isolated_settings, client)  # the next owner: Kafka redelivers
        again = await feed(new, RECORDS)
        resent = {c.change_id: c.payload for c in again if c.kind == LABEL}
        assert resent == sent  # same ids, same bytes: the learner drops the copies
        assert await feed(new, RECORDS) == []

    run(isolated_settings, body)


def test_a_label_resolved_early_is_sent_at_its_due_time(isolated_settings: Settings) -> None:
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
        pipeline = await fresh_pipeline(isolated_settings, client)
        assert labels_of(await feed(pipeline, [r for r in records if day[r.offset] <= 33])) == []
        record = await pipeline.store.get("c3")
        assert record is not None
        book = PredictionBook.decode(record.extras[BOOK_EXTRA])  # in Redis, not worker memory
        assert [(due, label.model, label.y_true) for due, label in book.held] == [
            (T0 / 1000 + 30 * 86_400, "churn", 0.0)
        ]
        labels = labels_of(await feed(pipeline, [r for r in records if day[r.offset] == 34]))
        assert labels_by_model(labels)["churn"] == (1, 0) and len(labels) == 6
        [churn] = [label for label in labels if label.model == "churn"]
        assert churn.resolved_ts == T0 / 1000 + 5 * 86_400 and churn.due_ts == T0 / 1000 + 30 * 86_400

    run(isolated_settings, body)
