"""What the rules read about a customer, and when time alone could change what they decide.

* ``PopulationCuts``: the RFM quintile cut points from the feature store's population sorted
  sets. F and M quintiles compare the customer's orders and revenue with the cuts. The R cuts
  (times of last purchase) are turned into *recency in days* at the moment they were read, so a
  customer who stops buying slides down the R quintiles as their own recency grows, at moments
  that can be computed, while the population's recency distribution holds still. At the moment
  of a refresh this equals the exact rank quintile; it is refreshed every few seconds.
* ``RuleVariables``: the flat namespace the rules see: catalogue features, ``score_<model>``
  and ``r_score``/``f_score``/``m_score``.
* ``TimeModel.crossing``: for the rules' ``next_due``, the earliest event time at which a
  variable may cross a threshold with no new event for the customer: ages grow one per day,
  windowed counts change when their oldest bucket leaves the window, the engagement score
  decays, scores are recomputed every ``rescore_days``; everything else changes only by events.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

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

    @classmethod
    def from_cuts(cls, cuts: Mapping[str, list[float]], read_at: float) -> PopulationCuts:
        """From ``PopulationStats.quintile_cuts`` read when the newest event time was ``read_at``."""
        recency = tuple(max(0.0, (read_at - ts) / SECONDS_PER_DAY) for ts in cuts.get("recency", []))
        return cls(recency, tuple(cuts.get("frequency", [])), tuple(cuts.get("monetary", [])))

    def r_score(self, recency_days: float | None) -> int | None:
        """R quintile (5 = bought most recently); None without a purchase or a population."""
        if recency_days is None or not self.recency_days:
            return None
        return 1 + sum(1 for cut in self.recency_days if recency_days < cut)

    def f_score(self, orders: int) -> int | None:
        """F quintile of an order count (None for a customer who never bought)."""
        if orders <= 0 or not self.frequency:
            return None
        return 1 + sum(1 for cut in self.frequency if orders > cut)

    def m_score(self, revenue_minor: int, orders: int) -> int | None:
        """M quintile of revenue in minor units (None for a customer who never bought)."""
        if orders <= 0 or not self.monetary_minor:
            return None
        return 1 + sum(1 for cut in self.monetary_minor if revenue_minor > cut)

    def next_r_drop(self, recency_days: float | None) -> float | None:
        """Days from now until recency reaches the next cut (R drops by one), if any."""
        if recency_days is None:
            return None
        ahead = [cut - recency_days for cut in self.recency_days if cut > recency_days]
        return min(ahead, default=None)


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


AGE_FEATURES = frozenset({"recency_days", "tenure_days", "days_since_last_login", "days_since_last_activity"})


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
        if name.startswith(SCORE_PREFIX):
            return at + self.rescore_seconds
        if name == "r_score":
            days = self.variables.cuts.next_r_drop(self.variables.features["recency_days"])  # type: ignore[arg-type]
            return None if days is None else at + days * SECONDS_PER_DAY + JUST_AFTER
        if name in QUINTILE_NAMES:
            return None
        value = self.variables.features[name]
        if value is None:
            return None
        if name in AGE_FEATURES or name.startswith("days_since_first_use_"):
            if threshold is None:
                return at + SECONDS_PER_DAY
            ahead = float(threshold) - float(value)
            return at + ahead * SECONDS_PER_DAY + JUST_AFTER if ahead >= 0 else None
        if name == "engagement_score":
            return self._engagement_crossing(float(value), threshold)
        window = _window_of(name, self.variables.state)
        if window is not None:
            buckets, days = window
            return _next_bucket_expiry(buckets, windows.day_of(at), days)
        return None

    def _engagement_crossing(self, value: float, threshold: float | None) -> float | None:
        if value <= 0.0:
            return None
        half_life = self.config.engagement_half_life_days * SECONDS_PER_DAY
        if threshold is None:
            return self.as_of + SECONDS_PER_DAY
        if not 0.0 < threshold < value:
            return None
        return self.as_of + half_life * math.log2(value / threshold) + JUST_AFTER


def _window_of(name: str, state: CustomerState) -> tuple[dict[int, object], int] | None:
    """The day buckets and window length behind a windowed feature name, if it is one."""
    stem, _, suffix = name.rpartition("_")
    if not suffix.endswith("d") or not suffix[:-1].isdigit():
        return None
    days = int(suffix[:-1])
    if stem in ("orders", "revenue", "avg_order_value"):
        return state.purchase_days, days  # type: ignore[return-value]
    buckets = {
        "logins": state.login_days,
        "sessions": state.session_days,
        "tickets": state.ticket_open_days,
        "call_center": state.call_days,
    }.get(stem)
    return None if buckets is None else (buckets, days)  # type: ignore[return-value]


def _next_bucket_expiry(buckets: Mapping[int, object], today: int, days: int) -> float | None:
    """When the oldest bucket inside a ``days`` window ending ``today`` leaves it (epoch s)."""
    inside = [day for day in buckets if today - days + 1 <= day <= today]
    if not inside:
        return None
    return (min(inside) + days) * SECONDS_PER_DAY
