"""BTYD summaries and fits through the population snapshots, against a real Redis.

The summaries are recounted in the test from the placements it gave; the fit of a fit day must
equal a fit of that recount, and every later day up to the next fit day reads the same fit.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import ClassVar

import pytest
from helpers import with_redis
from redis.asyncio import Redis

from engine.settings import Settings
from engine.snapshots import Histogram, PopulationSnapshots
from engine.snapshots.lifetime import LifetimeFit, fit_lifetime
from engine.stream.population_gate import CONTRIBUTED_MEMO_DAYS, PopulationGate
from features.event import SECONDS_PER_DAY

pytestmark = pytest.mark.integration

LATENESS = 3 * SECONDS_PER_DAY


def population(seed: int, partitions: int) -> dict[int, dict[str, tuple[int, int, int, int]]]:
    """(last day, orders, revenue units, first day) per customer, per partition.

    Drawn as BG/NBD says customers behave (a purchase rate per customer, and after each purchase
    a chance to drop out), so that the population identifies the model: a population in which
    nobody drops out lets the fit run along the a, b -> infinity ridge, and whether the optimiser
    then stops inside the acceptance bound depends on the scipy release.
    """
    rng = random.Random(seed)
    out: dict[int, dict[str, tuple[int, int, int, int]]] = {p: {} for p in range(partitions)}
    for i in range(400):
        first = 19_900 + rng.randrange(90)
        rate, dropout = rng.gammavariate(0.8, 1 / 12), rng.betavariate(1.0, 3.0)
        last, orders, day = first, 1, float(first)
        while True:
            if rng.random() < dropout:
                break
            day += rng.expovariate(rate)
            if day > 19_999:
                break
            last, orders = int(day), min(orders + 1, 31)
        out[i % partitions][f"c{i}"] = (last, orders, orders * rng.randrange(5, 60), first)
    return out


def test_fit_day_fit_equals_a_fit_of_the_recount_and_later_days_read_it(isolated_settings: Settings) -> None:
    fit_day = next(d for d in range(20_000, 20_007) if d % 7 == 6)

    async def body(client: Redis) -> None:
        snapshots = PopulationSnapshots(client, isolated_settings.key_prefix, partitions=2)
        await snapshots.ensure_script()
        placed = population(3, 2)
        for partition, placements in placed.items():
            await snapshots.place(partition, placements)
            # Placing twice changes nothing (absolute placements).
            await snapshots.place(partition, placements)
        everyone = [row for part in placed.values() for row in part.values()]
        recount = Histogram(
            lifetimes=dict(Counter((r[3], r[0], r[1]) for r in everyone)),
            spends=dict(Counter((r[1], r[2]) for r in everyone)),
        )
        merged_stored = Histogram.decode((await snapshots.contribute(0, [fit_day, fit_day + 1])).encode())
        assert merged_stored.lifetimes == dict(Counter((r[3], r[0], r[1]) for r in placed[0].values()))
        await snapshots.contribute(1, [fit_day, fit_day + 1])

        gate = PopulationGate(snapshots, 2, LATENESS)
        assert await gate.ensure(fit_day + 1, fit_day + 1)  # seals the fit day first
        expected = fit_lifetime(fit_day, recount)
        assert expected is not None
        moment_of = lambda version: (version + 1) * SECONDS_PER_DAY + LATENESS + 1  # noqa: E731
        on_fit_day = gate.cuts_at(moment_of(fit_day)).lifetime
        next_day = gate.cuts_at(moment_of(fit_day + 1)).lifetime
        assert on_fit_day == expected and next_day == expected
        sealed = await snapshots.sealed(fit_day)
        assert sealed is not None and LifetimeFit.decode(sealed.lifetime) == expected  # type: ignore[arg-type]
        following = await snapshots.sealed(fit_day + 1)
        assert following is not None and following.lifetime is None  # only fit days store a fit

    with_redis(isolated_settings, body)


def test_gate_contributes_each_partition_day_once(isolated_settings: Settings) -> None:
    """A held partition offers its day-crossing event again and again: the gate stores its
    contribution the first time only (first write wins in Redis, so later ones were wasted
    round trips), and still contributes the days it has not yet."""

    class Counting(PopulationSnapshots):
        calls: ClassVar[list[tuple[int, tuple[int, ...]]]] = []

        async def contribute(self, partition: int, days):  # type: ignore[no-untyped-def]
            self.calls.append((partition, tuple(days)))
            return await super().contribute(partition, days)

    async def body(client: Redis) -> None:
        snapshots = Counting(client, isolated_settings.key_prefix, 2)
        await snapshots.ensure_script()
        gate = PopulationGate(snapshots, 2, LATENESS)
        await snapshots.place(0, {"a": (10, 1, 5, 3)})
        await gate.contribute(0, (20,))
        await snapshots.place(0, {"b": (11, 2, 7, 4)})
        await gate.contribute(0, (20,))  # offered again: nothing to store
        await gate.contribute(0, (20, 21))  # only day 21 is new
        await gate.contribute(1, (20,))
        assert snapshots.calls == [(0, (20,)), (0, (21,)), (1, (20,))]
        day20 = await client.hgetall(snapshots.contributions_key(20))
        day21 = await client.hgetall(snapshots.contributions_key(21))
        # Day 20 holds partition 0's population before "b" was placed; day 21 the one after.
        assert day20.keys() == {b"0", b"1"} and day21.keys() == {b"0"}
        assert Histogram.decode(day20[b"0"]).customers == 1
        assert Histogram.decode(day21[b"0"]).customers == 2

        # The memo is bounded: a year of days later, a recent day is still remembered, and a
        # day far behind is stored again (a wasted round trip, first write still wins).
        for day in range(30, 30 + 365):
            await gate.contribute(1, (day,))
        snapshots.calls.clear()
        await gate.contribute(1, (30 + 364,))
        await gate.contribute(1, (30 + 364 - CONTRIBUTED_MEMO_DAYS + 1,))
        assert snapshots.calls == []
        await gate.contribute(1, (30,))
        assert snapshots.calls == [(1, (30,))]

    with_redis(isolated_settings, body)
