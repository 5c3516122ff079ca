"""The pipeline against real Redis (single server and Cluster) versus the brute-force oracle.

Random batch boundaries, redelivery of earlier batches and suffixes (the same partition and
offset again), two partitions, a writer-side record cache on or off: whatever the delivery, each
customer's stored state must give the oracle's snapshot, every event must be applied (or found
too late) exactly once, and replaying any suffix of the log must leave every hash byte-identical.
"""

from __future__ import annotations

from typing import Any

import pytest
import stores
import strategies as gen
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from oracle import differences, oracle

from engine.settings import Settings
from features.catalogue import snapshot
from features.population import METRICS
from features.reader import FeatureReader
from features.redis_store import RedisFeatureStore

pytestmark = pytest.mark.integration
Run = tuple[gen.Scenario, gen.Plan, gen.Plan, int]


@st.composite
def runs(draw: st.DrawFn) -> Run:
    """A scenario, its delivery plan, a replay plan (from any earlier offset to the end), a read time."""
    scenario = draw(gen.scenarios(max_events=20))
    plan = draw(gen.delivery_plans(scenario))
    read_at = draw(st.integers(gen.T0_MS, gen.T0_MS + 500 * gen.DAY_MS))
    return scenario, plan, draw(gen.replay_plans(scenario)), read_at


def expected_population(expected: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for cid, customer in expected.items():
        scores = customer.rfm_scores
        if scores is not None:
            out["recency"][cid] = scores[0] / 1000
            out["frequency"][cid] = float(scores[1])
            out["monetary"][cid] = float(scores[2])
    return out


@pytest.mark.parametrize("cache_capacity", [0, 2], ids=["no-cache", "cache-2"])
@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(run=runs())
def test_pipeline_state_in_redis_equals_oracle(
    stack_settings: Settings,
    redis_url: str,
    cache_capacity: int,
    run: Run,
) -> None:
    scenario, plan, replay, read_at = run
    config = scenario.config
    settings_ = stores.example_settings(stack_settings, redis_url)
    logs = {p: scenario.records(p) for p in range(scenario.n_partitions)}
    expected = oracle(scenario.events, config, partition_of=scenario.partition_of)
    accepted = sum(len(c.accepted) for c in expected.values())
    late = sum(len(c.late) for c in expected.values())
    note(f"plan={plan} replay={replay}")

    async def body(store: RedisFeatureStore) -> None:
        pipeline = stores.make_pipeline(settings_, store, config, cache_capacity)
        results = await stores.deliver(pipeline, logs, plan)
        assert not [d for r in results for d in r.dead_letters]
        # Every event applied or found too late exactly once, however often it was delivered.
        assert sum(r.applied for r in results) == accepted
        assert sum(r.too_late for r in results) == late
        assert sum(r.duplicates for r in results) == gen.delivered(plan) - accepted - late

        records = await store.load(scenario.customers)
        for cid in scenario.customers:
            record = records[cid]
            assert record.state is not None
            got = await store.get(cid)
            assert got is not None and got.state == record.state
            snap = snapshot(cid, record.state, config)
            want = expected[cid]
            assert not differences(snap, want.features), cid
            assert (snap.holdings, snap.campaigns) == (want.holdings, want.campaigns)
            partition = scenario.partition_of[cid]
            offsets = [o for o, e in enumerate(scenario.log(partition)) if e["customer_id"] == cid]
            assert record.applied_offsets == {partition: max(offsets)}
            # Too-late events are dead-lettered through the outbox (never confirmed here).
            position = {e["event_id"]: o for o, e in enumerate(scenario.log(partition))}
            late_ids = {f"late:{partition}:{position[e['event_id']]}" for e in want.late}
            assert {k for k in record.outbox if k.startswith("late:")} == late_ids

        # The read API: every customer at one moment (or at their newest event if that is later).
        reader = FeatureReader(store, config)
        snaps = await reader.snapshots([*scenario.customers, "never-seen"], as_of=read_at / 1000)
        assert snaps.pop("never-seen") is None
        later = oracle(
            scenario.events,
            config,
            as_of_ms={c: max(read_at, expected[c].as_of_ms) for c in scenario.customers},
            partition_of=scenario.partition_of,
        )
        for cid, snap in snaps.items():
            assert snap is not None
            assert not differences(snap, later[cid].features), cid

        population = await stores.dump_population(store, settings_.key_prefix)
        assert {m: {k.decode(): s for k, s in population[m]} for m in METRICS} == expected_population(
            expected
        )

        # Replaying any suffix changes no byte, neither on this worker (warm cache) nor a new one.
        before = await stores.dump(store, scenario.customers)
        for worker in (pipeline, stores.make_pipeline(settings_, store, config, cache_capacity)):
            again = await stores.deliver(worker, logs, replay)
            assert sum(r.applied + r.too_late for r in again) == 0
            assert await stores.dump(store, scenario.customers) == before
            assert await stores.dump_population(store, settings_.key_prefix) == population

    stores.with_store(settings_, scenario.customers, body)
