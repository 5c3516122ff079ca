"""The batch pipeline against a real Redis: exactly-once state, outbox re-sends, fencing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import msgpack
import pytest
from helpers import seal_untrained_models, with_redis
from redis.asyncio import Redis

from engine.app import build_pipeline
from engine.exports.scores import ExportCounts, export_rows
from engine.settings import Settings
from engine.stream.pipeline import DEAD_LETTER, SEGMENT_CHANGE, RawRecord, SegmentPipeline
from features.redis_store import CustomerWrite, RedisFeatureStore
from features.state import CustomerState

pytestmark = pytest.mark.integration
T = TypeVar("T")
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def purchase(event_id: str, customer: str, day: float, amount: float) -> dict[str, Any]:
    attrs = {"amount": amount, "currency": "EUR", "product": "savings"}
    return {
        "event_id": event_id,
        "customer_id": customer,
        "type": "purchase",
        "ts": T0 + int(day * DAY_MS),
        "attrs": attrs,
    }


def login(event_id: str, customer: str, day: float) -> dict[str, Any]:
    return {"event_id": event_id, "customer_id": customer, "type": "login", "ts": T0 + int(day * DAY_MS)}


def records_of(events: list[Any], partition: int = 0, first_offset: int = 0) -> list[RawRecord]:
    out = []
    for index, event in enumerate(events):
        value = event if isinstance(event, bytes) else msgpack.packb(event)
        key = event["customer_id"].encode() if isinstance(event, dict) and "customer_id" in event else None
        out.append(RawRecord("events", partition, first_offset + index, key, value))
    return out


def run(settings: Settings, body: Callable[[SegmentPipeline, RedisFeatureStore], Awaitable[T]]) -> T:
    async def with_pipeline(client: Redis) -> T:
        await seal_untrained_models(client, settings.key_prefix)
        pipeline = build_pipeline(settings, client, clock=lambda: 1.8e9, cache_capacity=0)
        return await body(pipeline, pipeline.store)

    return with_redis(settings, with_pipeline)


async def dump(store: RedisFeatureStore, customers: list[str]) -> dict[str, dict[bytes, bytes]]:
    return {c: await store.client.hgetall(store.key(c)) for c in customers}


STREAM = [
    login("a1", "alice", 0),
    purchase("a2", "alice", 1, 20.10),
    purchase("b1", "bob", 1, 5.00),
    purchase("a3", "alice", 2, 9.95),
    login("b2", "bob", 40),
    purchase("b3", "bob", 41, 12.34),
    login("a4", "alice", 70),
]


def test_state_matches_recomputation_from_raw_events(isolated_settings: Settings) -> None:
    async def body(pipeline: SegmentPipeline, store: RedisFeatureStore) -> None:
        result = await pipeline.process(records_of(STREAM))
        assert result.applied == len(STREAM) and result.duplicates == 0 and not result.dead_letters
        for customer in ("alice", "bob"):
            own = [e for e in STREAM if e["customer_id"] == customer]
            buys = [e for e in own if e["type"] == "purchase"]
            revenue = sum(Decimal(str(e["attrs"]["amount"])) for e in buys)
            record = await store.get(customer)
            assert record is not None and record.state is not None
            assert record.state.orders == len(buys)
            assert record.state.revenue_minor == int(revenue * 100)
            assert record.state.first_ts * 1000 == min(e["ts"] for e in own)
            assert record.state.last_ts * 1000 == max(e["ts"] for e in own)
            assert record.state.last_purchase_ts * 1000 == max(e["ts"] for e in buys)
            assert record.applied_offset(0) == max(
                i for i, e in enumerate(STREAM) if e["customer_id"] == customer
            )

    run(isolated_settings, body)


def test_transitions_are_emitted_once_per_change_in_order(isolated_settings: Settings) -> None:
    # Hand-worked from the default lifecycle rules (new: tenure < 30 days; active: <= 14 days since
    # the last activity; lapsing: <= 30; churned: > 30). No tick is run: before each event the
    # customer is moved on to its time, so the moments time alone changes them are judged anyway.
    # alice: new at d0; at d30 (+1 ms) her tenure reaches 30 with 28 days since her d2 purchase:
    # lapsing; at d32 (+1 ms) 30 days have passed: churned; active again at her d70 login.
    # bob: new at d1; at d31 (+1 ms) tenure 30 and 30 days (+1 ms) since d1: churned; active at d40.
    async def body(pipeline: SegmentPipeline, store: RedisFeatureStore) -> list[tuple[str, Any, Any]]:
        result = await pipeline.process(records_of(STREAM))
        return [(c.customer_id, *_from_to(c.payload)) for c in result.changes if c.kind == SEGMENT_CHANGE]

    changes = [c for c in run(isolated_settings, body) if c[1] == "lifecycle"]
    assert [c for c in changes if c[0] == "alice"] == [
        ("alice", "lifecycle", None, "new"),
        ("alice", "lifecycle", "new", "lapsing"),
        ("alice", "lifecycle", "lapsing", "churned"),
        ("alice", "lifecycle", "churned", "active"),
    ]
    assert [c for c in changes if c[0] == "bob"] == [
        ("bob", "lifecycle", None, "new"),
        ("bob", "lifecycle", "new", "churned"),
        ("bob", "lifecycle", "churned", "active"),
    ]


def _from_to(payload: bytes) -> tuple[Any, Any, Any]:
    change = msgpack.unpackb(payload)
    return change["family"], change["from"], change["to"]


def test_redelivery_changes_nothing_and_replays_are_byte_identical(isolated_settings: Settings) -> None:
    async def body(pipeline: SegmentPipeline, store: RedisFeatureStore) -> None:
        records = records_of(STREAM)
        first = await pipeline.process(records)
        await pipeline.confirm_sent(first.changes)
        before = await dump(store, ["alice", "bob"])
        for start in (0, 3, 6):  # whole batch, a suffix, the last event
            again = await pipeline.process(records[start:])
            assert again.applied == 0
            assert again.duplicates == len(records) - start
            assert again.changes == []
            assert await dump(store, ["alice", "bob"]) == before

    run(isolated_settings, body)


def test_unsent_changes_are_resent_with_the_same_id_until_confirmed(isolated_settings: Settings) -> None:
    async def body(pipeline: SegmentPipeline, store: RedisFeatureStore) -> None:
        records = records_of(STREAM)
        first = await pipeline.process(records)  # crash here: committed, never delivered
        second = await pipeline.process(records)  # redelivery after restart
        assert second.applied == 0
        assert sorted((c.change_id, c.payload) for c in second.changes) == sorted(
            (c.change_id, c.payload) for c in first.changes
        )
        await pipeline.confirm_sent(second.changes)
        third = await pipeline.process(records)
        assert third.changes == []
        record = await store.get("alice")
        assert record is not None and record.outbox == {}

    run(isolated_settings, body)


def test_bad_events_are_dead_lettered_and_the_rest_processed(isolated_settings: Settings) -> None:
    bad_type = dict(login("x1", "carol", 3), type="teleport")
    no_customer = {"event_id": "x2", "type": "login", "ts": T0}
    wrong_amount = purchase("x3", "carol", 4, 1.0)
    wrong_amount["attrs"]["amount"] = "ten"
    stream = [
        login("c1", "carol", 0),
        b"\xc1\x00garbage",
        bad_type,
        no_customer,
        wrong_amount,
        purchase("c2", "carol", 5, 3.0),
    ]

    async def body(pipeline: SegmentPipeline, store: RedisFeatureStore) -> None:
        result = await pipeline.process(records_of(stream))
        reasons = {d.offset: d.reason for d in result.dead_letters}
        assert sorted(reasons) == [1, 2, 3, 4]
        assert "msgpack" in reasons[1]
        assert "unknown type" in reasons[2]
        assert "missing customer_id" in reasons[3]
        assert "attrs.amount" in reasons[4]
        assert result.dead_letters[0].raw == b"\xc1\x00garbage"
        record = await store.get("carol")
        assert record is not None and record.state is not None
        assert record.state.orders == 1 and record.applied_offset(0) == 5

    run(isolated_settings, body)


def test_commit_fails_when_another_writer_advanced_the_offset(isolated_settings: Settings) -> None:
    state = CustomerState(first_ts=1.8e9, last_ts=1.8e9, events=1)

    async def body(pipeline: SegmentPipeline, store: RedisFeatureStore) -> None:
        assert await store.commit([CustomerWrite("zed", None, {0: 10}, state)]) == []
        before = await dump(store, ["zed"])
        # A zombie that read before version 1 was written (or read a stale one) must not overwrite.
        assert await store.commit([CustomerWrite("zed", None, {0: 12}, state)]) == ["zed"]
        assert await store.commit([CustomerWrite("zed", 7, {0: 12}, state)]) == ["zed"]
        assert await dump(store, ["zed"]) == before
        assert await store.commit([CustomerWrite("zed", 1, {0: 12}, state)]) == []
        record = await store.get("zed")
        assert record is not None and record.version == 2 and record.applied_offset(0) == 12

    run(isolated_settings, body)


def test_a_stale_writer_cache_cannot_overwrite_a_newer_owner(isolated_settings: Settings) -> None:
    # Worker A caches alice after batch 1; worker B (the new owner) applies batch 2; when A,
    # now a zombie, applies batch 3 from its stale cache, the version CAS fails, A reloads,
    # and the stored state still reflects every event exactly once.
    events = [purchase(f"p{i}", "alice", i, 10.0 + i) for i in range(9)]
    records = records_of(events)

    async def body(pipeline_b: SegmentPipeline, store: RedisFeatureStore) -> None:
        pipeline_a = build_pipeline(isolated_settings, store.client, cache_capacity=10)
        await pipeline_a.process(records[:3])
        await pipeline_b.process(records[3:6])
        result = await pipeline_a.process(records[6:])
        assert result.applied == 3
        record = await store.get("alice")
        assert record is not None and record.state is not None
        assert record.state.orders == 9
        assert record.state.revenue_minor == sum(1000 + 100 * i for i in range(9))
        # One commit per event: each one's watermark passes the end of a day, where the partition's
        # population is recorded for that day's snapshot, so a batch commits in chunks there.
        assert record.version == 9 and record.applied_offset(0) == 8
        again = await pipeline_a.process(records)  # A's cache is fresh again: all duplicates
        assert again.applied == 0 and again.duplicates == 9

    run(isolated_settings, body)


def test_too_late_events_are_dead_lettered_once_through_the_outbox(isolated_settings: Settings) -> None:
    # Allowed lateness is 3 days: after alice's day-10 login, a day-6 purchase is too late.
    stream = [login("a1", "alice", 10), purchase("a2", "alice", 6, 99.0), login("a3", "alice", 11)]
    records = records_of(stream)

    async def body(pipeline: SegmentPipeline, store: RedisFeatureStore) -> None:
        result = await pipeline.process(records)
        assert (result.applied, result.too_late, result.duplicates) == (2, 1, 0)
        letters = [c for c in result.changes if c.kind == DEAD_LETTER]
        assert len(letters) == 1
        letter = msgpack.unpackb(letters[0].payload)
        assert letter["reason"].startswith("too late: 4.000 days behind")
        assert (letter["partition"], letter["offset"], letter["raw"]) == (0, 1, records[1].value)
        record = await store.get("alice")
        assert record is not None and record.state is not None
        assert record.state.orders == 0 and record.state.late_dropped == 1
        again = await pipeline.process(records)  # not yet confirmed: the same letter again
        assert [c.change_id for c in again.changes if c.kind == DEAD_LETTER] == [letters[0].change_id]
        await pipeline.confirm_sent(again.changes)
        assert (await pipeline.process(records)).changes == []

    run(isolated_settings, body)


def score(
    event_id: str, customer: str, day: float, value: float, version: str, as_of_day: float
) -> dict[str, Any]:
    attrs = {"model": "rf_churn", "value": value, "version": version, "as_of": T0 + int(as_of_day * DAY_MS)}
    return {
        "event_id": event_id,
        "customer_id": customer,
        "type": "score",
        "ts": T0 + int(day * DAY_MS),
        "attrs": attrs,
    }


EXTERNAL_RULES = """
version: "external-1"
families:
  - name: churn_risk
    segments:
      - name: at_risk
        when: "score_rf_churn >= 0.8"
"""


def test_a_score_event_changes_a_segment_and_the_change_carries_its_version(
    isolated_settings: Settings, tmp_path: Any
) -> None:
    # carol logs in on day 0 (no score: score_rf_churn is None, so not at_risk); a batch job's 0.5
    # computed day 0.5 arrives on day 1 (0.5 < 0.8: still nothing); its 0.83 computed day 1.9
    # arrives on day 2: at_risk, the change carrying version rf-2026-01-02 and as_of day 1.9; a
    # stale 0.1 computed day 1 arrives on day 3 and is kept out (older as_of): she stays at_risk;
    # a score for the engine's own "churn" is dead-lettered.
    rules = tmp_path / "rules.yaml"
    rules.write_text(EXTERNAL_RULES)
    settings = isolated_settings.model_copy(update={"rules_file": rules, "external_scores": "rf_churn"})
    stream = [
        login("c1", "carol", 0),
        score("c2", "carol", 1, 0.5, "rf-2026-01-01", 0.5),
        score("c3", "carol", 2, 0.83, "rf-2026-01-02", 1.9),
        score("c4", "carol", 3, 0.1, "rf-2026-01-01", 1),
        {**score("c5", "carol", 3, 0.9, "x", 3), "attrs": {"model": "churn", "value": 0.9, "version": "x"}},
    ]

    async def body(pipeline: SegmentPipeline, store: RedisFeatureStore) -> None:
        result = await pipeline.process(records_of(stream))
        assert result.applied == 4 and result.duplicates == 0
        assert [d.offset for d in result.dead_letters] == [4]
        assert "attrs.model of score 'churn' is an engine score name" in result.dead_letters[0].reason
        changes = [msgpack.unpackb(c.payload) for c in result.changes if c.kind == SEGMENT_CHANGE]
        assert [(c["family"], c["from"], c["to"], c["cause"]["offset"]) for c in changes] == [
            ("churn_risk", None, "at_risk", 2)
        ]
        assert changes[0]["rules_version"] == "external-1"
        assert changes[0]["event_ts"] == T0 + 2 * DAY_MS
        assert changes[0]["scores"]["rf_churn"] == {
            "score": 0.83,
            "version": "rf-2026-01-02",
            "as_of": T0 + int(1.9 * DAY_MS),
            "source": "external",
        }
        record = await store.get("carol")
        assert record is not None and record.state is not None
        assert record.state.external_scores == {
            "rf_churn": [0.83, "rf-2026-01-02", (T0 + int(1.9 * DAY_MS)) / 1000, (T0 + 2 * DAY_MS) / 1000]
        }
        assert record.state.last_login_ts == T0 / 1000  # the score events are not her activity
        await pipeline.confirm_sent(result.changes)
        again = await pipeline.process(records_of(stream))  # redelivered: nothing changes twice
        assert again.applied == 0 and not [c for c in again.changes if c.kind == SEGMENT_CHANGE]
        assert (await store.get("carol")).state == record.state  # type: ignore[union-attr]
        # segflow scores export reads the same record back from Redis, as of day 4.
        counts, plan = ExportCounts(), []
        rows = [r async for r in export_rows(settings, (T0 + 4 * DAY_MS) / 1000, None, plan.append, counts)]
        [row] = [dict(zip(plan[0].columns, r, strict=True)) for r in rows]
        assert (row["customer_id"], row["score_rf_churn"], row["frequency"]) == ("carol", 0.83, 0)
        assert row["segment_churn_risk"] == "at_risk" and counts.written == 1

    run(settings, body)
