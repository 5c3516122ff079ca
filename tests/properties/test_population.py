"""Population statistics (RFM quintiles, cut points, TTL sweep) against brute force, on Redis.

About fifty customers' streams go through the pipeline (with redeliveries); the ranking sets
must then give, for every customer, 1 + floor(5 * #strictly lower / #ranked) per metric from
their (last purchase time, orders, revenue in cents), recomputed by the oracle; cut points are
the sorted scores at index floor(k * N / 5). The sweep removes exactly the customers whose
hash is gone among those not written for the TTL (by a fake wall clock) and costs nothing for
the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import stores
import strategies as gen
from hypothesis import HealthCheck, Phase, given, note, settings
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
# No shrinking: ~50 customers take Hypothesis's whole 5-minute shrink budget, and the failure
# message already names the customers and metrics that differ.
CHECKS = settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

Plan = gen.Plan


class Population(tuple[gen.Scenario, Plan]):
    """A scenario and its delivery plan, shown in a failure report by its size only."""

    def __repr__(self) -> str:
        scenario, plan = self
        return f"<{len(scenario.customers)} customers, {len(scenario.events)} events, {len(plan)} batches>"


@st.composite
def populations(draw: st.DrawFn) -> Population:
    scenario = draw(
        gen.scenarios(
            min_customers=45,
            max_customers=60,
            max_events=5,
            config=FeatureConfig(),
            event_types=PURCHASE_HEAVY,
            coarse=True,
        )
    )
    return Population((scenario, draw(gen.delivery_plans(scenario))))


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
    expected = {**dict.fromkeys([*customers, "never-seen"]), **brute_quintiles(ranked)}
    wrong = {
        cid: (got.get(cid), want, ranked.get(cid)) for cid, want in expected.items() if got.get(cid) != want
    }
    assert not wrong, (
        f"(quintiles, brute force, R/F/M scores) of {len(wrong)} of {len(ranked)} ranked: {wrong}"
    )
    assert set(got) == set(expected)
    assert await population.size() == len(ranked)
    n = len(ranked)
    for index, metric in enumerate(METRICS):
        ordered = sorted(scores[index] for scores in ranked.values())
        points = [ordered[(k * n) // 5] for k in range(1, 5)] if n else []
        assert await population.cut_points(metric) == points, f"{metric} of {n}: {ordered}"


@CHECKS
@given(run=populations())
def test_quintiles_and_cut_points_equal_brute_force(
    stack_settings: Settings, redis_url: str, run: Population
) -> None:
    scenario, plan = run
    settings_ = stores.example_settings(stack_settings, redis_url)
    logs = {p: scenario.records(p) for p in range(scenario.n_partitions)}
    ranked = rfm(oracle(scenario.events, scenario.config, partition_of=scenario.partition_of))
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


@dataclass(repr=False)
class SweepCase:
    scenario: gen.Scenario
    plan: Plan
    walls: list[float]  # the fake wall clock of each batch
    deleted: set[str]  # hashes deleted by hand (expired) before the sweep
    now: float
    limit: int

    def __repr__(self) -> str:
        return (
            f"SweepCase(<{len(self.scenario.customers)} customers>, walls={self.walls}, "
            f"deleted={sorted(self.deleted)}, now={self.now!r}, limit={self.limit})"
        )


@st.composite
def sweeps(draw: st.DrawFn) -> SweepCase:
    scenario, plan = draw(populations())
    steps = draw(st.lists(st.integers(0, 2 * TTL), min_size=len(plan), max_size=len(plan)))
    walls = list(itertools.accumulate(steps, initial=WALL0))[1:]
    # Any moment, or one at (or half a second either side of) a batch's time plus the TTL.
    at_edge = st.sampled_from(walls).flatmap(
        lambda w: st.sampled_from([w + TTL - 0.5, w + TTL, w + TTL + 0.5])
    )
    return SweepCase(
        scenario,
        plan,
        walls,
        deleted=draw(st.sets(st.sampled_from(scenario.customers))),
        now=draw(st.one_of(st.floats(WALL0, walls[-1] + 2 * TTL), at_edge)),
        limit=draw(st.sampled_from([1, 3, 1000])),
    )


@CHECKS
@given(case=sweeps())
def test_sweep_removes_exactly_the_expired_and_costs_nothing_for_fresh(
    stack_settings: Settings, redis_url: str, case: SweepCase
) -> None:
    scenario, plan, walls = case.scenario, case.plan, case.walls
    deleted, now, limit = case.deleted, case.now, case.limit
    settings_ = stores.example_settings(stack_settings, redis_url)
    logs = {p: scenario.records(p) for p in range(scenario.n_partitions)}
    ranked = rfm(oracle(scenario.events, scenario.config, partition_of=scenario.partition_of))
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
