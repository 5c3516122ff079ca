"""Actions through the real pipeline and Redis: cool-down, quiet hours released by the due index,
outcomes credited or closed by event time, and nothing again on redelivery.

One partition; the watermark is the newest event time minus the allowed lateness (3 days).
Customer "c" buys at day 0 12:00 (30 EUR), day 1 13:00 (30 EUR) and day 2 22:30 (UTC); a
segment holds who bought in the last day, so each purchase is an entry (the exit in between is
by time alone). Customer "z" logs in every day at 09:00 and moves the watermark on. The action
has a 2-day cool-down, 3-day attribution and quiet hours 21:00-08:00 UTC. By hand:

* day 0 12:00: sent (send_ts = the entry);
* day 1 13:00: 1 day 1 h after the last decision: withheld, cool-down; this purchase falls in the
  day-0 send's window [day 0 12:00, day 3 12:00): that decision converted, revenue 30;
* day 2 22:30: 2 days 10.5 h after the last decision, but in quiet hours: held until day 3 08:00,
  when its window opens; it lasts until day 6 08:00 with no purchase: not converted then;
* the release is due at day 3 08:00, which the watermark first passes with z's login of day 6
  (day 6 09:00 - 3 days): it is emitted in the day-6 batch, not before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers import seal_untrained_models, with_redis
from redis.asyncio import Redis

from engine.app import build_pipeline
from engine.settings import Settings
from engine.stream.batch_records import ACTION, OUTCOME
from engine.stream.pipeline import RawRecord, SegmentPipeline

pytestmark = pytest.mark.integration
DAY_MS, HOUR_MS = 86_400_000, 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
RULES = """\
version: "actions-test-1"
families:
  - name: buying
    segments:
      - name: recent_buyer
        when: "recency_days <= 1"
        on_enter: [nudge]
activation:
  quiet_hours: {start: "21:00", end: "08:00"}
  actions:
    - name: nudge
      channel: email
      cooldown_days: 2
      attribution_days: 3
"""


def at(day: int, hour: float) -> int:
    return T0 + day * DAY_MS + round(hour * HOUR_MS)


def batches() -> list[list[RawRecord]]:
    by_day: dict[int, list[dict[str, Any]]] = {day: [] for day in range(11)}
    for day, hour in ((0, 12), (1, 13), (2, 22.5)):
        attrs = {"amount": 30.0, "currency": "EUR", "product": "savings"}
        by_day[day].append(
            {
                "event_id": f"c{day}",
                "customer_id": "c",
                "type": "purchase",
                "ts": at(day, hour),
                "attrs": attrs,
            }
        )
    for day in range(11):
        by_day[day].append({"event_id": f"z{day}", "customer_id": "z", "type": "login", "ts": at(day, 9)})
    offset, found = 0, []
    for day in range(11):
        batch = []
        for event in sorted(by_day[day], key=lambda e: e["ts"]):
            batch.append(RawRecord("events", 0, offset, event["customer_id"].encode(), msgpack.packb(event)))
            offset += 1
        found.append(batch)
    return found


async def feed(
    pipeline: SegmentPipeline, fed: list[list[RawRecord]]
) -> list[tuple[int, str, dict[str, Any]]]:
    """(batch index, kind, payload) of every action decision and outcome the batches and ticks emit."""
    emitted = []
    for index, batch in enumerate(fed):
        for result in (await pipeline.process(batch), await pipeline.tick()):
            emitted += [
                (index, c.kind, msgpack.unpackb(c.payload))
                for c in result.changes
                if c.kind in (ACTION, OUTCOME)
            ]
            await pipeline.confirm_sent(result.changes)
    return emitted


def test_cooldown_quiet_hours_and_outcomes_through_the_pipeline(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = isolated_settings.model_copy(update={"rules_file": rules, "events_partitions": 1})
    assert settings.allowed_lateness_days == 3.0

    async def body(client: Redis) -> None:
        await seal_untrained_models(client, settings.key_prefix)
        pipeline = build_pipeline(settings, client, clock=lambda: 1.8e9, cache_capacity=0)
        fed = batches()
        emitted = await feed(pipeline, fed)
        actions = [(i, p) for i, kind, p in emitted if kind == ACTION]
        assert [(p["decision"], p["event_ts"], p["send_ts"]) for _, p in actions] == [
            ("send", at(0, 12), at(0, 12)),
            ("cooldown", at(1, 13), at(1, 13)),
            ("send", at(2, 22.5), at(3, 8)),
        ]
        assert actions[2][0] == 6  # released in the batch whose watermark first passes day 3 08:00
        outcomes = {p["outcome_id"]: (i, p) for i, kind, p in emitted if kind == OUTCOME}
        first, held = actions[0][1], actions[2][1]
        assert set(outcomes) == {first["action_id"], held["action_id"]}  # none for the cool-down
        credited = outcomes[first["action_id"]][1]
        assert (credited["converted"], credited["revenue"], credited["outcome_ts"]) == (True, 30.0, at(1, 13))
        assert credited["window"] == [at(0, 12), at(3, 12)]
        closed_batch, closed = outcomes[held["action_id"]]
        assert (closed["converted"], closed["outcome_ts"], closed["window"]) == (
            False,
            at(6, 8),
            [at(3, 8), at(6, 8)],
        )
        assert closed_batch == 9  # day 9 09:00 - 3 days passes day 6 08:00 first
        # Redelivery of every batch: no decision and no outcome again, under any id.
        assert await feed(pipeline, fed) == []

    with_redis(settings, body)
