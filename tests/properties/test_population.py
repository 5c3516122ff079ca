"""Population statistics (RFM quintiles, cut points, TTL sweep) against brute force, on Redis.

About fifty customers' streams go through the pipeline (with redeliveries); the ranking sets
must then give, for every customer, 1 + floor(5 * #strictly lower / #ranked) per metric from
their (last purchase time, orders, revenue in cents), recomputed by the oracle; cut points are
the sorted scores at index floor(k * N / 5). The sweep removes exactly the customers whose
hash is gone among those not written for the TTL (by a fake wall clock) and costs nothing for
the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stores
import strategies as gen
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from oracle import oracle

from engine.settings import Settings
from features.config import FeatureConfig
from features.population import METRICS, SEEN, PopulationStats, RfmQuintiles, population_key
from features.redis_store import RedisFeatureStore

pytestmark = pytest.mark.integration

PURCHASE_HEAVY = ("purchase", "purchase", "purchase", "purchase", "login", "page_view", "product_holding")
TTL = 3_600
WALL0 = 1_900_000_000.0
CHECKS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

Plan = gen.Plan


@st.composite
def populations(draw: st.DrawFn) -> tuple[gen.Scenario, Plan]:
    scenario = draw(
        gen.scenarios(
            min_customers=45,
            max_customers=60,
            max_events=5,
            config=FeatureConfig(),
            event_types=PURCHASE_HEAVY,
        )
    )
    return scenario, draw(gen.delivery_plans(scenario))


def brute_quintiles(scores: dict[str, tuple[float, ...]]) -> dict[str, RfmQuintiles]:
    """The documented rule, per metric: 1 + floor(5 * #strictly lower / #ranked)."""
    n = len(scores)
    out = {}
    for cid, own in scores.items():
        q = [1 + (5 * sum(1 for other in scores.values() if other[m] < own[m])) // n for m in range(3)]
        out[cid] = RfmQuintiles(*q)
    return out


def rfm(expected: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """Ranked customers' (recency score, frequency, monetary) as the store scores them."""
    out = {}
    for cid, customer in expected.items():
        scores = customer.rfm_scores
        if scores is not None:
            out[cid] = (scores[0] / 1000, float(scores[1]), float(scores[2]))
    return out


async def assert_population(
    population: PopulationStats, customers: list[str], ranked: dict[str, tuple[float, float, float]]
) -> None:
    got = await population.quintiles([*customers, "never-seen"])
    expected = brute_quintiles(ranked)
    assert got == {**dict.fromkeys([*customers, "never-seen"]), **expected}
    assert await population.size() == len(ranked)
    n = len(ranked)
    for index, metric in enumerate(METRICS):
        ordered = sorted(scores[index] for scores in ranked.values())
        assert await population.cut_points(metric) == (
            [ordered[(k * n) // 5] for k in range(1, 5)] if n else []
        )


@CHECKS
@given(run=populations())
def test_quintiles_and_cut_points_equal_brute_force(
    stack_settings: Settings, redis_url: str, run: tuple[gen.Scenario, Plan]
) -> None:
    scenario, plan = run
    settings_ = stores.example_settings(stack_settings, redis_url)
    logs = {p: scenario.records(p) for p in range(scenario.n_partitions)}
    ranked = rfm(oracle(scenario.events, scenario.config))
    note(f"{len(ranked)} of {len(scenario.customers)} customers ranked")

    async def body(store: RedisFeatureStore) -> None:
        pipeline = stores.make_pipeline(settings_, store, scenario.config)
        await stores.deliver(pipeline, logs, plan)
        await assert_population(store.population, scenario.customers, ranked)

    stores.with_store(settings_, scenario.customers, body)


# --- the TTL sweep ------------------------------------------------------------------------------


class Counting:
    """A client proxy that records the commands sent, directly or in pipelines."""

    def __init__(self, client: Any, calls: list[str] | None = None) -> None:
        self._client = client
        self.calls: list[str] = [] if calls is None else calls

    def pipeline(self, *args: Any, **kwargs: Any) -> CountingPipeline:
        self.calls.append("PIPELINE")
        return CountingPipeline(self._client.pipeline(*args, **kwargs), self.calls)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name.upper())
            return attr(*args, **kwargs)

        return call


class CountingPipeline:
    def __init__(self, pipe: Any, calls: list[str]) -> None:
        self._pipe = pipe
        self._calls = calls

    async def __aenter__(self) -> CountingPipeline:
        await self._pipe.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._pipe.__aexit__(*exc)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._pipe.execute(*args, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        attr = getattr(self._pipe, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name.upper())
            return attr(*args, **kwargs)

        return call


def write_times(
    scenario: gen.Scenario, plan: Plan, walls: list[float]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per customer, the wall time of the last batch that wrote them and that contained them."""
    applied: dict[str, int] = {}
    written: dict[str, float] = {}
    seen: dict[str, float] = {}
    for batch, wall in zip(plan, walls, strict=True):
        for partition, start, end in batch:
            for offset, event in enumerate(scenario.log(partition)[start:end], start):
                cid = event["customer_id"]
                seen[cid] = wall
                if offset > applied.get(cid, -1):
                    applied[cid] = offset
                    written[cid] = wall
    return written, seen


@st.composite
def sweeps(draw: st.DrawFn) -> dict[str, Any]:
    scenario, plan = draw(populations())
    steps = draw(st.lists(st.integers(0, 2 * TTL), min_size=len(plan), max_size=len(plan)))
    walls = []
    wall = WALL0
    for step in steps:
        wall += step
        walls.append(wall)
    return {
        "scenario": scenario,
        "plan": plan,
        "walls": walls,
        "deleted": draw(st.sets(st.sampled_from(scenario.customers))),
        # Any moment, or one at (or half a second either side of) a batch's time plus the TTL.
        "now": draw(
            st.one_of(
                st.floats(WALL0, walls[-1] + 2 * TTL),
                st.sampled_from(walls).flatmap(
                    lambda w: st.sampled_from([w + TTL - 0.5, w + TTL, w + TTL + 0.5])
                ),
            )
        ),
        "limit": draw(st.sampled_from([1, 3, 1000])),
    }


@CHECKS
@given(case=sweeps())
def test_sweep_removes_exactly_the_expired_and_costs_nothing_for_fresh(
    stack_settings: Settings, redis_url: str, case: dict[str, Any]
) -> None:
    scenario: gen.Scenario = case["scenario"]
    plan: Plan = case["plan"]
    walls: list[float] = case["walls"]
    deleted: set[str] = case["deleted"]
    now: float = case["now"]
    limit: int = case["limit"]
    settings_ = stores.example_settings(stack_settings, redis_url)
    logs = {p: scenario.records(p) for p in range(scenario.n_partitions)}
    ranked = rfm(oracle(scenario.events, scenario.config))
    written, appeared = write_times(scenario, plan, walls)
    clock = [WALL0]

    def tick(index: int) -> None:
        clock[0] = walls[index]

    async def body(store: RedisFeatureStore) -> None:
        pipeline = stores.make_pipeline(settings_, store, scenario.config)
        await stores.deliver(pipeline, logs, plan, before_batch=tick)
        client = store.client
        seen_key = population_key(settings_.key_prefix, SEEN)
        seen = {k.decode(): s for k, s in await client.zrange(seen_key, 0, -1, withscores=True)}
        # The seen time is the fake wall clock of a batch that wrote the customer, or a later one
        # that redelivered their events (the write time bounds it from below).
        assert set(seen) == set(scenario.customers)
        for cid in scenario.customers:
            assert written[cid] <= seen[cid] <= appeared[cid]

        for cid in scenario.customers:  # every write sets the hash's expiry
            assert 0 < await client.ttl(store.key(cid)) <= TTL
        for cid in deleted:  # what EXPIRE would have done
            await client.delete(store.key(cid))
        stale = {cid for cid, wall in seen.items() if wall <= now - TTL}
        gone = stale & deleted
        note(f"stale={sorted(stale)} deleted={sorted(deleted)} now={now}")

        counting = Counting(client)
        population = PopulationStats(counting, settings_.key_prefix)
        removed = checked = 0
        for _sweep in range(len(stale) // limit + 2):
            counting.calls.clear()
            n = await population.sweep_expired(now, TTL, limit=limit)
            removed += n
            exists = counting.calls.count("EXISTS")
            checked += exists
            if exists == 0:  # nothing stale is left: one read, no pipeline
                assert counting.calls == ["ZRANGEBYSCORE"] and n == 0
                break
            assert exists <= limit
        else:
            pytest.fail("sweep_expired did not finish")
        assert removed == len(gone)
        assert checked == len(stale)  # each stale customer looked at once, fresh ones never

        after = {k.decode(): s for k, s in await client.zrange(seen_key, 0, -1, withscores=True)}
        survivors = set(scenario.customers) - gone
        assert after == {cid: (now if cid in stale else seen[cid]) for cid in survivors}
        await assert_population(
            population, scenario.customers, {c: s for c, s in ranked.items() if c in survivors}
        )

    stores.with_store(settings_, scenario.customers, body, ttl_seconds=TTL, clock=lambda: clock[0])
