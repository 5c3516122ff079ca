"""A customer who goes silent moves through the RFM map by event time alone (real Redis).

Population, one partition (the watermark W is the newest event time N minus 3 days):
* 25 "cyclers" c00..c24 buy on a 25-day cycle at 00:01 (c_p on days p, p+25, ...), so one of
  them buys every day and, at N, their recencies are exactly {0, 1, ..., 24} days. Five of them
  (c00..c04) also bought 100 small orders on day 0: they are the heaviest buyers.
* "silent" bought 50 orders of 1000 EUR on day 0, then once more on day 40 at 12:00, then never.

Hand-worked quintiles (26 ranked customers; the cuts are the scores at ranks
ceil(k * 26 / 5) - 1 = 5, 10, 15, 20 from the bottom, i.e. the oldest):
* F: 20 cyclers have fewer orders than silent's 51 (at most 18 by day 412), the 5 heavies more:
  f = 1 + floor(5 * 20 / 26) = 4 throughout. M: nobody spent more: m = 5.
* R: a moment t reads the sealed snapshot of day D = day(t - 3 days) - 1, the population as it
  was just before the first purchase of day D + 4 (00:01), when the watermark passed D's end. Its
  R cut at rank k is the last-purchase day d_k, as a recency at the start of day D + 4 of
  (D + 4) - (d_k + 1) days (a day counts at its end). The moment R next drops is computed with the
  snapshot in force when silent was last judged, and the drop is judged with the one in force then:
  - judged at the day-40 purchase (snapshot of day 36: silent's last purchase is still day 0,
    cyclers bought on days 15..39): the rank-20 cut is day 34, recency 40 - 35 = 5 days, so
    silent is judged again at recency 5.0: snapshot of day 41 (cyclers 20..44, silent and c15 on
    day 40): the rank-20 cut is day 40, recency 4 < 5: R 4 (Champions -> Loyal Customers);
  - the rank-15 cut there (day 35, recency 9) brings the next judgement at recency 9.0: snapshot
    of day 45 (cyclers 24..48): rank-15 cut day 39, recency 9: R 3, still Loyal; its rank-10 cut
    (day 34, recency 14) brings the next at recency 14.0: snapshot of day 50 (cyclers 29..53):
    rank-10 cut day 39, recency 14: R 2 (-> At Risk: r <= 2, f in 3..4).
  Then the absolute thresholds of the default rules: Hibernating once recency > 180 days, Lost
  once > 365 (1 ms past each).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import msgpack
import pytest
from helpers import seal_untrained_models, with_redis
from redis.asyncio import Redis

from engine.app import build_pipeline
from engine.settings import Settings
from engine.stream.customer_step import MEMBERSHIP_EXTRA
from engine.stream.pipeline import RawRecord, SegmentPipeline

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
T0 = 1_767_225_600_000
LAST_BUY_MS = T0 + 40 * DAY_MS + DAY_MS // 2
END_DAY = 412


def purchase(eid: str, customer: str, ts: int, amount: float) -> dict[str, Any]:
    attrs = {"amount": amount, "currency": "EUR", "product": "savings"}
    return {"event_id": eid, "customer_id": customer, "type": "purchase", "ts": ts, "attrs": attrs}


def stream_by_day() -> dict[int, list[dict[str, Any]]]:
    days: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for i in range(50):
        days[0].append(purchase(f"s-bulk-{i}", "silent", T0 + i * 1000, 1000.0))
    for heavy in range(5):
        for i in range(100):
            days[0].append(purchase(f"h{heavy}-{i}", f"c{heavy:02d}", T0 + i * 1000 + 1, 1.0))
    for day in range(END_DAY + 1):
        phase = day % 25
        days[day].append(purchase(f"c{phase:02d}-d{day}", f"c{phase:02d}", T0 + day * DAY_MS + 60_000, 10.0))
    days[40].append(purchase("s-last", "silent", LAST_BUY_MS, 1000.0))
    return days


async def feed(pipeline: SegmentPipeline, batches: list[list[RawRecord]]) -> list[dict[str, Any]]:
    changes = []
    for batch in batches:
        for result in (await pipeline.process(batch), await pipeline.tick()):
            changes += [msgpack.unpackb(c.payload) for c in result.changes if c.kind == "c"]
            await pipeline.confirm_sent(result.changes)
    return changes


def test_silent_customer_slides_to_lost_one_change_at_a_time(isolated_settings: Settings) -> None:
    settings = isolated_settings
    offset = 0
    batches = []
    for _day, events in sorted(stream_by_day().items()):
        batch = []
        for event in sorted(events, key=lambda e: e["ts"]):
            batch.append(RawRecord("events", 0, offset, event["customer_id"].encode(), msgpack.packb(event)))
            offset += 1
        batches.append(batch)

    async def body(client: Redis) -> None:
        await seal_untrained_models(client, settings.key_prefix)
        pipeline = build_pipeline(settings, client, clock=lambda: 1.8e9, cache_capacity=0)
        changes = await feed(pipeline, batches)
        rfm = [c for c in changes if c["customer_id"] == "silent" and c["family"] == "rfm"]
        after = [c for c in rfm if c["event_ts"] >= LAST_BUY_MS]
        moves = [(c["from"], c["to"]) for c in after]
        assert moves == [
            ("At Risk", "Champions"),  # day 40: 40 days silent (R 1) before this purchase
            ("Champions", "Loyal Customers"),
            ("Loyal Customers", "At Risk"),
            ("At Risk", "Hibernating"),
            ("Hibernating", "Lost"),
        ], moves
        champion, loyal, at_risk, hibernating, lost = after
        assert champion["cause"]["event_id"] == "s-last"
        assert all("tick" in c["cause"] for c in (loyal, at_risk, hibernating, lost))
        recency = [(c["event_ts"] - LAST_BUY_MS) / DAY_MS for c in (loyal, at_risk, hibernating, lost)]
        assert recency[0] == pytest.approx(5.0, abs=1e-6)
        assert recency[1] == pytest.approx(14.0, abs=1e-6)
        assert hibernating["event_ts"] == LAST_BUY_MS + 180 * DAY_MS + 1  # 1 ms past the threshold
        assert lost["event_ts"] == LAST_BUY_MS + 365 * DAY_MS + 1
        assert len({c["change_id"] for c in changes}) == len(changes)
        assert at_risk["reason"]["text"].startswith("rfm=At Risk because r_score=2 <= 2")

        # Redelivery of every batch: no change emitted again, under any id.
        assert await feed(pipeline, batches) == []

        # Segment sizes and revenue, kept incrementally, equal a count over the stored memberships.
        customers = ["silent", *(f"c{p:02d}" for p in range(25))]
        records = await pipeline.store.load(customers)
        expected: dict[str, Counter[str]] = defaultdict(Counter)
        revenue: dict[str, Counter[str]] = defaultdict(Counter)
        for record in records.values():
            assert record.state is not None
            for family, (segment, _since) in msgpack.unpackb(record.extras[MEMBERSHIP_EXTRA]).items():
                expected[family][segment] += 1
                revenue[family][segment] += record.state.revenue_minor
        sizes = await pipeline.aggregates.sizes(pipeline.rules)
        for family, segments in sizes.items():
            assert {s: row["customers"] for s, row in segments.items() if row["customers"]} == dict(
                expected[family]
            ), family
            assert {s: row["revenue"] for s, row in segments.items() if row["customers"]} == {
                s: cents / 100 for s, cents in revenue[family].items()
            }

    with_redis(settings, body)
