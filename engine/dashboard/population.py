"""One scan of the customer records: the R x F grid, segment members, and typical features.

The scan reads every customer record (SCAN, then ``BATCH`` records a round trip; nothing of
the customers is written) and keeps, per customer:

* the segment and since of every family, from the record's memberships (as last judged);
* the **R and F quintiles the rules read at the customer's last judgement**: those of the sealed
  population snapshot of day ``day(t - lateness) - 1`` for the moment t the customer was last
  judged, applied to the customer's state at t (``CustomerStep.variables``, as ``segflow
  explain`` computes them). These are the quintiles the RFM segment was decided on, so every
  cell of the grid holds exactly the segments the rules put there. Not the live rank sets of
  ``features.population`` (``rfm_rank_quintiles`` in ``segflow explain``): they rank against
  the population *now*, which no decision read, and would put customers in cells their segment
  contradicts;
* all-time revenue (the aggregates' revenue too);
* every numeric catalogue feature at one moment T for everyone (the newest event time the
  workers committed; windows and ages moved on to T, as ``segflow scores export`` does), from
  which the median of a segment's members is compared with the population's.

A Redis read of a population day that is not sealed yet leaves the quintiles ``None`` (as for
the worker). Reading a day's cuts may seal it (first write wins: the same cuts any worker would
seal).
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from engine.app import build_pipeline
from engine.exports.scores import record_batches
from engine.redis_clients import redis_client
from engine.rules.model import RuleSet
from engine.settings import Settings
from features.catalogue import snapshot
from features.state import CustomerState

QUINTILES = 5


def rfm_family(rules: RuleSet) -> str | None:
    """The first family whose rules read both ``r_score`` and ``f_score`` (None: no such family)."""
    for family in rules.families:
        names = {n for s in family.segments for e in s.expressions() for n in e.names}
        if {"r_score", "f_score"} <= names:
            return family.name
    return None


@dataclass(frozen=True, slots=True)
class HeatMap:
    """Customers and revenue per (R, F) cell; ``counts[r - 1][f - 1]``."""

    family: str
    counts: list[list[int]]
    revenue: list[list[float]]
    top_segment: list[list[str | None]]
    unranked: int
    """Customers with no quintiles at their last judgement (never bought, or no snapshot yet)."""

    @property
    def ranked(self) -> int:
        """Customers in some cell."""
        return sum(sum(row) for row in self.counts)


@dataclass(frozen=True, slots=True)
class FeatureContrast:
    """A feature's median among a segment's members against the population's."""

    name: str
    segment_median: float
    population_median: float
    effect: float
    """(segment median - population median) / the population's spread (IQR; else sd; else 1)."""
    coverage: float
    """Share of the members for whom the feature has a value."""


@dataclass
class PopulationScan:
    """What one scan of the customer records found (see the module docstring)."""

    as_of: float | None
    scanned_wall: float
    feature_names: tuple[str, ...]
    rfm: str | None
    ids: list[str] = field(default_factory=list)
    revenue: list[float] = field(default_factory=list)
    segments: dict[str, list[str | None]] = field(default_factory=dict)
    since: dict[str, list[float | None]] = field(default_factory=dict)
    rf: list[tuple[int, int]] = field(default_factory=list)
    """(R, F) per customer; 0 where unknown."""
    values: array[float] = field(default_factory=lambda: array("d"))
    """Every customer's features at ``as_of``, row after row (NaN: undefined)."""
    no_state: int = 0

    @property
    def matrix(self) -> np.ndarray:
        """Customers x features at ``as_of`` (NaN: undefined)."""
        return np.frombuffer(self.values, dtype=float).reshape(len(self.ids), len(self.feature_names))

    def add(
        self,
        customer_id: str,
        revenue: float,
        memberships: dict[str, tuple[str, float]],
        rf: tuple[int, int],
        features: list[float],
    ) -> None:
        """Record one customer."""
        self.ids.append(customer_id)
        self.revenue.append(revenue)
        for family in self.segments:
            member = memberships.get(family)
            self.segments[family].append(None if member is None else member[0])
            self.since[family].append(None if member is None else member[1])
        self.rf.append(rf)
        self.values.extend(features)

    def sizes(self) -> dict[str, dict[str, int]]:
        """Customers per family and segment, from the records' memberships."""
        return {
            family: dict(Counter(s for s in segments if s is not None).most_common())
            for family, segments in self.segments.items()
        }

    def members(self, family: str, segment: str) -> list[int]:
        """Indexes of the segment's members, by revenue (highest first), then customer id."""
        segments = self.segments.get(family, [])
        found = [i for i, s in enumerate(segments) if s == segment]
        return sorted(found, key=lambda i: (-self.revenue[i], self.ids[i]))

    def heat_map(self) -> HeatMap | None:
        """The R x F grid of the RFM family (None: no family reads both quintiles)."""
        if self.rfm is None:
            return None
        counts = [[0] * QUINTILES for _ in range(QUINTILES)]
        revenue = [[0.0] * QUINTILES for _ in range(QUINTILES)]
        tops: list[list[Counter[str]]] = [[Counter() for _ in range(QUINTILES)] for _ in range(QUINTILES)]
        unranked = 0
        for index, (r, f) in enumerate(self.rf):
            if not r or not f:
                unranked += 1
                continue
            counts[r - 1][f - 1] += 1
            revenue[r - 1][f - 1] += self.revenue[index]
            segment = self.segments[self.rfm][index]
            if segment is not None:
                tops[r - 1][f - 1][segment] += 1
        top = [[c.most_common(1)[0][0] if c else None for c in row] for row in tops]
        rounded = [[round(v, 2) for v in row] for row in revenue]
        return HeatMap(self.rfm, counts, rounded, top, unranked)

    def value(self, index: int, feature: str) -> float | None:
        """One customer's feature at ``as_of`` (None: undefined or not in the catalogue)."""
        if feature not in self.feature_names:
            return None
        value = self.values[index * len(self.feature_names) + self.feature_names.index(feature)]
        return None if math.isnan(value) else value

    def contrasts(self, family: str, segment: str) -> list[FeatureContrast]:
        """Every feature with values: members' median against the population's, most distinct first."""
        members = self.members(family, segment)
        if not members:
            return []
        matrix = self.matrix
        mine = matrix[members]
        out = []
        for column, name in enumerate(self.feature_names):
            seg = mine[:, column][~np.isnan(mine[:, column])]
            pop = matrix[:, column][~np.isnan(matrix[:, column])]
            if not len(seg) or not len(pop):
                continue
            seg_median, pop_median = float(np.median(seg)), float(np.median(pop))
            q25, q75 = np.percentile(pop, [25, 75])
            spread = float(q75 - q25) or float(np.std(pop)) or 1.0
            effect = (seg_median - pop_median) / spread
            out.append(FeatureContrast(name, seg_median, pop_median, effect, len(seg) / len(members)))
        return sorted(out, key=lambda c: (-abs(c.effect), c.name))


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


async def scan_population(settings: Settings) -> PopulationScan:
    """Read every customer record once (see the module docstring)."""
    client = redis_client(settings)
    try:
        pipeline = build_pipeline(settings, client)
        population, step = pipeline.population, pipeline.step
        population.lenient = True  # a day not sealed yet reads as no quintiles, as for the worker
        moment = await pipeline.clock.furthest_newest()
        blank = CustomerState(first_ts=0.0, last_ts=0.0)
        names = tuple(snapshot("", blank, step.config.features, 0.0).as_dict())
        scan = PopulationScan(moment, time.time(), names, rfm_family(pipeline.rules))
        for family in pipeline.rules.families:
            scan.segments[family.name] = []
            scan.since[family.name] = []
        tried: set[int] = set()
        async for records in record_batches(pipeline):
            for record in records:
                state = record.state
                if state is None:
                    scan.no_state += 1
                    continue
                work = step.working(record)
                judged = work.evaluated_at if work.evaluated_at is not None else state.last_ts
                day = population.version_of(judged)
                if day not in tried:
                    tried.add(day)
                    await population.ensure(day, day)
                quintiles = step.variables(record.customer_id, state, work.scores, judged).quintiles()
                rf = (quintiles["r_score"] or 0, quintiles["f_score"] or 0)
                at = state.last_ts if moment is None else max(moment, state.last_ts)
                values = snapshot(record.customer_id, state, step.config.features, at).as_dict()
                memberships = {
                    f: (m.segment, m.since) for f, m in work.memberships.items() if m.segment is not None
                }
                features = [_number(values.get(n)) for n in names]
                scan.add(record.customer_id, state.revenue_minor / 100, memberships, rf, features)
    finally:
        await client.aclose()
    return scan
