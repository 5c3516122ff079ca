"""What the rules read about a customer, and when time alone could change what they decide.

* ``PopulationCuts``: the RFM quintile cut points of one sealed population snapshot (the
  population at the end of one UTC day, ``engine.snapshots``). F and M quintiles compare the
  customer's orders and revenue with the cuts. The R cuts (days of last purchase) are turned into
  *recency in days* at the end of the snapshot's day, so a customer who stops buying slides down
  the R quintiles as their own recency grows, at moments that can be computed, while the
  population's recency distribution holds still until the next day's snapshot applies.
* ``RuleVariables``: the flat namespace the rules see: catalogue features, ``score_<model>``
  and ``r_score``/``f_score``/``m_score``.
* ``TimeModel.crossing``: for the rules' ``next_due``, the earliest event time at which a
  variable may cross a threshold with no new event for the customer: ages grow one per day,
  windowed counts change when their oldest bucket leaves the window, the engagement score
  decays, scores are recomputed every ``rescore_days``; everything else changes only by events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from engine.snapshots.lifetime import LifetimeFit
from features import windows
from features.catalogue import FeatureSnapshot
from features.config import FeatureConfig
from features.event import SECONDS_PER_DAY
from features.state import CustomerState

SCORE_PREFIX = "score_"
QUINTILE_NAMES = ("r_score", "f_score", "m_score")
# One millisecond past a crossing: "recency_days > 30" is false at exactly 30 days, true after.
JUST_AFTER = 0.001


@dataclass(frozen=True, slots=True)
class PopulationCuts:
    """Quintile cut points: recency in days (as of ``read_at``), orders, revenue in cents."""

    recency_days: tuple[float, ...] = ()
    frequency: tuple[float, ...] = ()
    monetary_minor: tuple[float, ...] = ()
    version: int | None = None
    """The UTC day index of the sealed snapshot these cuts come from (None: none sealed)."""
    lifetime: LifetimeFit | None = None
    """The population's BTYD fit this snapshot reads (``engine.snapshots.lifetime``), if any."""

    @property
    def version_label(self) -> str | None:
        """The snapshot's day as ``YYYY-MM-DD`` (None: no snapshot)."""
        if self.version is None:
            return None
        return time.strftime("%Y-%m-%d", time.gmtime(self.version * SECONDS_PER_DAY))

    @classmethod
    def from_sealed(
        cls,
        day: int,
        recency_day: Sequence[int],
        frequency: Sequence[int],
        monetary_units: Sequence[int],
        lateness_seconds: float,
        lifetime: LifetimeFit | None = None,
    ) -> PopulationCuts:
        """From a sealed snapshot of day ``day``: cuts on the day of last purchase, order counts
        and revenue in whole major units (so the M quintile is exact to one unit).

        A partition's population is recorded when its newest event reaches the end of ``day``
        plus the lateness, so the R cuts are recencies as of that moment: a purchase on a later
        day than a cut ranks above it, one on the cut's day or before does not.
        """
        reference = (day + 1) * SECONDS_PER_DAY + lateness_seconds
        # A hair above the boundary: the first instant of the day after a cut ranks above it.
        return cls(
            tuple((reference - (cut + 1) * SECONDS_PER_DAY) / SECONDS_PER_DAY + 1e-9 for cut in recency_day),
            tuple(float(cut) for cut in frequency),
            tuple(float(cut * 100 + 99) for cut in monetary_units),
            day,
            lifetime,
        )

    @classmethod
    def from_cuts(cls, cuts: Mapping[str, list[float]], read_at: float) -> PopulationCuts:
        """From ``PopulationStats.quintile_cuts`` read when the newest event time was ``read_at``."""
        recency = tuple(max(0.0, (read_at - ts) / SECONDS_PER_DAY) for ts in cuts.get("recency", []))
        return cls(recency, tuple(cuts.get("frequency", [])), tuple(cuts.get("monetary", [])))

    # Plain loops: a generator per quintile cost more than the rest of the lookup.
    def r_score(self, recency_days: float | None) -> int | None:
        """R quintile (5 = bought most recently); None without a purchase or a population."""
        if recency_days is None or not self.recency_days:
            return None
        score = 1
        for cut in self.recency_days:
            if recency_days < cut:
                score += 1
        return score

    def f_score(self, orders: int) -> int | None:
        """F quintile of an order count (None for a customer who never bought)."""
        if orders <= 0 or not self.frequency:
            return None
        score = 1
        for cut in self.frequency:
            if orders > cut:
                score += 1
        return score

    def m_score(self, revenue_minor: int, orders: int) -> int | None:
        """M quintile of revenue in minor units (None for a customer who never bought)."""
        if orders <= 0 or not self.monetary_minor:
            return None
        score = 1
        for cut in self.monetary_minor:
            if revenue_minor > cut:
                score += 1
        return score

    def next_r_drop(self, recency_days: float | None) -> float | None:
        """Days from now until recency reaches the next cut (R drops by one), if any."""
        if recency_days is None:
            return None
        nearest = None
        for cut in self.recency_days:
            if cut > recency_days and (nearest is None or cut - recency_days < nearest):
                nearest = cut - recency_days
        return nearest


@dataclass(slots=True)
class RuleVariables(Mapping[str, object]):
    """The rules' namespace for one customer at one moment (features, scores, quintiles)."""

    features: FeatureSnapshot
    scores: Mapping[str, float]
    cuts: PopulationCuts
    state: CustomerState
    _quintiles: dict[str, int | None] | None = field(default=None)

    def quintiles(self) -> dict[str, int | None]:
        """r_score, f_score, m_score (computed once)."""
        if self._quintiles is None:
            state = self.state
            self._quintiles = {
                "r_score": self.cuts.r_score(self.features["recency_days"]),  # type: ignore[arg-type]
                "f_score": self.cuts.f_score(state.orders),
                "m_score": self.cuts.m_score(state.revenue_minor, state.orders),
            }
        return self._quintiles

    def values_of(self, names: frozenset[str]) -> dict[str, object]:
        """A dict in which ``get(name)`` is ``self.get(name)`` for every name in ``names``.

        The rules read their variables from it once per event. It holds every feature (copying
        the snapshot's dict is cheaper than picking the dozen the rules read), then the scores
        and quintiles in ``names``, computed only when named.
        """
        scores, quintiles = _plan(names)
        # A fresh copy that only this dict holds: widening its value type is safe.
        values = cast("dict[str, object]", self.features.as_dict())
        score = self.scores.get
        for variable, model in scores:
            values[variable] = score(model)
        if quintiles:
            try:
                known = self.quintiles()
            except KeyError:  # no recency feature: the quintiles read as None, as with get()
                known = {}
            for name in quintiles:
                values[name] = known.get(name)
        return values

    def __getitem__(self, name: str) -> object:
        if name.startswith(SCORE_PREFIX):
            return self.scores.get(name[len(SCORE_PREFIX) :])
        if name in QUINTILE_NAMES:
            return self.quintiles()[name]
        return self.features[name]

    def __iter__(self) -> Iterator[str]:
        yield from self.features
        yield from (SCORE_PREFIX + name for name in self.scores)
        yield from QUINTILE_NAMES

    def __len__(self) -> int:
        return len(self.features) + len(self.scores) + len(QUINTILE_NAMES)


_Plan = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]
_PLANS: dict[frozenset[str], _Plan] = {}
MAX_PLANS = 64  # one per rule set in force; a reload adds one


def _plan(names: frozenset[str]) -> _Plan:
    """The ``(variable, model)`` scores and the quintiles among ``names``; the rest are features."""
    plan = _PLANS.get(names)
    if plan is None:
        ordered = sorted(names)
        scores = tuple((n, n[len(SCORE_PREFIX) :]) for n in ordered if n.startswith(SCORE_PREFIX))
        quintiles = tuple(n for n in ordered if n in QUINTILE_NAMES)
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[names] = (scores, quintiles)
    return plan


AGE_FEATURES = frozenset({"recency_days", "tenure_days", "days_since_last_login", "days_since_last_activity"})
_SCORE, _R_SCORE, _QUINTILE, _AGE, _ENGAGEMENT, _WINDOW, _OTHER = range(7)
_WINDOW_BUCKETS = {
    "orders": "purchase_days",
    "revenue": "purchase_days",
    "avg_order_value": "purchase_days",
    "logins": "login_days",
    "sessions": "session_days",
    "tickets": "ticket_open_days",
    "call_center": "call_days",
}
_KINDS: dict[str, tuple[int, str, int]] = {}


def _kind(name: str) -> tuple[int, str, int]:
    """How ``name`` moves with time alone: (kind, state field of its day buckets, window days)."""
    kind = _KINDS.get(name)
    if kind is None:
        kind = (_OTHER, "", 0)
        stem, _, suffix = name.rpartition("_")
        if name.startswith(SCORE_PREFIX):
            kind = (_SCORE, "", 0)
        elif name == "r_score":
            kind = (_R_SCORE, "", 0)
        elif name in QUINTILE_NAMES:
            kind = (_QUINTILE, "", 0)
        elif name in AGE_FEATURES or name.startswith("days_since_first_use_"):
            kind = (_AGE, "", 0)
        elif name == "engagement_score":
            kind = (_ENGAGEMENT, "", 0)
        elif suffix.endswith("d") and suffix[:-1].isdigit() and stem in _WINDOW_BUCKETS:
            kind = (_WINDOW, _WINDOW_BUCKETS[stem], int(suffix[:-1]))
        if len(_KINDS) < 4096:  # names come from validated rules: a few dozen
            _KINDS[name] = kind
    return kind


CrossingPoints = tuple[tuple[str, tuple[float | None, ...]], ...]


@dataclass(frozen=True, slots=True)
class _CrossingPlan:
    """A rule set's crossing points sorted by how their variables move with time."""

    points: CrossingPoints  # kept so that the id it is cached under stays theirs
    features: tuple[str, ...]  # every name read from the snapshot
    scores: bool
    r_score: bool
    ages: CrossingPoints
    engagement: CrossingPoints
    windows: tuple[tuple[str, str, int], ...]


_CROSSING_PLANS: dict[int, _CrossingPlan] = {}


def _crossing_plan(points: CrossingPoints) -> _CrossingPlan:
    plan = _CROSSING_PLANS.get(id(points))
    if plan is not None and plan.points is points:
        return plan
    kinds = [(name, thresholds, _kind(name)) for name, thresholds in points]
    plan = _CrossingPlan(
        points,
        features=tuple(n for n, _, (kind, _, _) in kinds if kind not in (_SCORE, _R_SCORE, _QUINTILE)),
        scores=any(kind == _SCORE for _, _, (kind, _, _) in kinds),
        r_score=any(kind == _R_SCORE for _, _, (kind, _, _) in kinds),
        ages=tuple((n, t) for n, t, (kind, _, _) in kinds if kind == _AGE),
        engagement=tuple((n, t) for n, t, (kind, _, _) in kinds if kind == _ENGAGEMENT),
        windows=tuple((n, buckets, days) for n, _, (kind, buckets, days) in kinds if kind == _WINDOW),
    )
    if len(_CROSSING_PLANS) >= MAX_PLANS:
        _CROSSING_PLANS.clear()
    _CROSSING_PLANS[id(points)] = plan
    return plan


@dataclass(frozen=True, slots=True)
class TimeModel:
    """How a customer's variables evolve with event time alone (no new event of theirs)."""

    variables: RuleVariables
    config: FeatureConfig
    as_of: float
    rescore_seconds: float

    def crossing(self, name: str, threshold: float | None) -> float | None:
        """Earliest event time > as_of at which ``name`` may cross ``threshold`` (None: never)."""
        at = self.as_of
        kind, buckets, days = _KINDS.get(name) or _kind(name)
        if kind == _SCORE:
            return at + self.rescore_seconds
        if kind == _R_SCORE:
            return self._r_drop(self.variables.features["recency_days"])  # type: ignore[arg-type]
        if kind == _QUINTILE:
            return None
        value = self.variables.features[name]
        if value is None or kind == _OTHER:
            return None
        if kind == _AGE:
            return _age_crossings(at, value, (threshold,))[0]  # type: ignore[arg-type]
        if kind == _ENGAGEMENT:
            return self._engagement_crossing(float(value), threshold)  # type: ignore[arg-type]
        bucket_days = getattr(self.variables.state, buckets)
        return _next_bucket_expiry(bucket_days, windows.day_of(at), days)

    def earliest(self, points: CrossingPoints, after: float) -> float | None:
        """The earliest ``crossing(name, t)`` later than ``after`` over ``points`` (name, thresholds).

        The same as asking :meth:`crossing` point by point, in one call: each variable is read
        once, and only ages and the engagement score are asked per threshold.
        """
        plan = _crossing_plan(points)
        at = self.as_of
        variables = self.variables
        features = variables.features
        values = features.as_dict()  # one copy: cheaper than the snapshot's __getitem__ per name
        for name in plan.features:
            if name not in values:
                features[name]  # raises the snapshot's KeyError, as crossing() does
        dues: list[float | None] = []
        if plan.scores:
            dues.append(at + self.rescore_seconds)
        if plan.r_score:
            dues.append(self._r_drop(values["recency_days"]))  # type: ignore[arg-type]
        for name, thresholds in plan.ages:
            value = values[name]
            if value is not None:
                dues += _age_crossings(at, value, thresholds)  # type: ignore[arg-type]
        for name, thresholds in plan.engagement:
            value = values[name]
            if value is not None:
                for threshold in thresholds:
                    dues.append(self._engagement_crossing(float(value), threshold))  # type: ignore[arg-type]
        if plan.windows:
            today = windows.day_of(at)
            for name, buckets, days in plan.windows:
                if values[name] is not None:
                    dues.append(_next_bucket_expiry(getattr(variables.state, buckets), today, days))
        best: float | None = None
        for due in dues:
            if due is not None and due > after and (best is None or due < best):
                best = due
        return best

    def _r_drop(self, recency_days: float | None) -> float | None:
        days_ahead = self.variables.cuts.next_r_drop(recency_days)
        return None if days_ahead is None else self.as_of + days_ahead * SECONDS_PER_DAY + JUST_AFTER

    def _engagement_crossing(self, value: float, threshold: float | None) -> float | None:
        if value <= 0.0:
            return None
        half_life = self.config.engagement_half_life_days * SECONDS_PER_DAY
        if threshold is None:
            return self.as_of + SECONDS_PER_DAY
        if not 0.0 < threshold < value:
            return None
        return self.as_of + half_life * math.log2(value / threshold) + JUST_AFTER


def _age_crossings(at: float, value: float, thresholds: Iterable[float | None]) -> list[float | None]:
    """When an age of ``value`` days at ``at`` (growing one a day) passes each threshold."""
    dues: list[float | None] = []
    for threshold in thresholds:
        if threshold is None:
            dues.append(at + SECONDS_PER_DAY)
            continue
        ahead = float(threshold) - float(value)
        dues.append(at + ahead * SECONDS_PER_DAY + JUST_AFTER if ahead >= 0 else None)
    return dues


def _next_bucket_expiry(buckets: Mapping[int, object], today: int, days: int) -> float | None:
    """When the oldest bucket inside a ``days`` window ending ``today`` leaves it (epoch s)."""
    first, oldest = today - days + 1, None
    for day in buckets:
        if first <= day <= today and (oldest is None or day < oldest):
            oldest = day
    return None if oldest is None else (oldest + days) * SECONDS_PER_DAY
