"""The declared feature catalogue and the typed snapshot of one customer's features.

Every numeric feature the store offers is declared here with its group, kind and meaning;
``segflow features`` prints the table. The catalogue is shaped by ``FeatureConfig`` (window
lengths, key features, products), so it is extended by configuration, not by code. A snapshot
refuses names that are not in the catalogue, so a misspelled feature is an error, not a None.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from features import windows
from features.config import FeatureConfig
from features.event import SECONDS_PER_DAY
from features.state import OUTCOME_BY_RANK, CustomerState, ticket_is_open

FeatureValue = float | int | None


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One declared feature."""

    name: str
    group: str
    kind: str  # "int", "float", or "float?" (None when undefined, e.g. no purchase yet)
    description: str


def catalogue(config: FeatureConfig) -> list[FeatureSpec]:
    """The standard catalogue for ``config``, in a stable order."""
    specs = [
        FeatureSpec("recency_days", "rfm", "float?", "days since the last purchase"),
        FeatureSpec("frequency", "rfm", "int", "orders, all time"),
        FeatureSpec("monetary", "rfm", "float", "revenue, all time (major units)"),
        FeatureSpec("avg_order_value", "rfm", "float?", "revenue / orders, all time"),
        FeatureSpec("tenure_days", "rfm", "float", "days since the first event"),
    ]
    for days in config.purchase_windows_days:
        specs += [
            FeatureSpec(f"orders_{days}d", "rfm", "int", f"orders in the last {days} days"),
            FeatureSpec(f"revenue_{days}d", "rfm", "float", f"revenue in the last {days} days"),
            FeatureSpec(
                f"avg_order_value_{days}d", "rfm", "float?", f"average order value, last {days} days"
            ),
        ]
    specs += [
        FeatureSpec(f"logins_{days}d", "engagement", "int", f"logins in the last {days} days")
        for days in config.login_windows_days
    ]
    window = config.activity_window_days
    specs += [
        FeatureSpec("days_since_last_login", "engagement", "float?", "days since the last login"),
        FeatureSpec(
            "days_since_last_activity", "engagement", "float?", "days since the last login or purchase"
        ),
        FeatureSpec(f"sessions_{window}d", "engagement", "int", f"sessions in the last {window} days"),
        FeatureSpec(
            "engagement_score",
            "engagement",
            "float",
            f"sum of event weights decayed with a {config.engagement_half_life_days:g}-day half-life",
        ),
        FeatureSpec("distinct_features_used", "adoption", "int", "distinct product features used"),
        FeatureSpec("key_feature_adoption", "adoption", "float", "fraction of the key features used"),
    ]
    specs += [
        FeatureSpec(f"days_since_first_use_{name}", "adoption", "float?", f"days since {name} was first used")
        for name in config.key_features
    ]
    specs += [
        FeatureSpec("open_tickets", "service", "int", "support tickets open now"),
        FeatureSpec(f"tickets_{window}d", "service", "int", f"tickets opened in the last {window} days"),
        FeatureSpec("worst_open_severity", "service", "int", "0 none, 1 low, 2 medium, 3 high, 4 critical"),
        FeatureSpec(f"call_center_{window}d", "service", "int", f"call-centre contacts, last {window} days"),
        FeatureSpec("products_held", "holdings", "int", "products with a reported holding"),
        FeatureSpec("total_balance", "holdings", "float", "sum of the latest reported balances"),
    ]
    specs += [
        FeatureSpec(f"balance_{product}", "holdings", "float?", f"latest reported {product} balance")
        for product in config.products
    ]
    specs.append(FeatureSpec("late_events_dropped", "quality", "int", "events dropped as too late"))
    return specs


class FeatureSnapshot(Mapping[str, FeatureValue]):
    """A customer's features at one moment: a read-only mapping that rejects unknown names."""

    __slots__ = ("_values", "as_of", "campaigns", "customer_id", "holdings")

    def __init__(
        self,
        customer_id: str,
        as_of: float,
        values: dict[str, FeatureValue],
        holdings: dict[str, float],
        campaigns: dict[str, dict[str, Any]],
    ) -> None:
        self.customer_id = customer_id
        self.as_of = as_of
        self._values = values
        self.holdings = holdings
        self.campaigns = campaigns

    def __getitem__(self, name: str) -> FeatureValue:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"unknown feature {name!r}; see `segflow features` for the catalogue") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def raw(self) -> dict[str, FeatureValue]:
        """The numeric features themselves (catalogue order), without a copy: do not mutate."""
        return self._values

    def as_dict(self) -> dict[str, FeatureValue]:
        """The numeric features as a plain dict (catalogue order)."""
        return dict(self._values)


def _days(later: float, earlier: float | None) -> float | None:
    return None if earlier is None else max(0.0, later - earlier) / SECONDS_PER_DAY


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


@dataclass(frozen=True, slots=True)
class _Names:
    """The configuration-dependent feature names, built once per configuration."""

    purchase: tuple[tuple[str, str, str], ...]
    logins: tuple[str, ...]
    sessions: str
    tickets: str
    calls: str
    first_use: tuple[str, ...]
    balances: tuple[str, ...]


def _names(config: FeatureConfig) -> _Names:
    return _names_of(
        config.purchase_windows_days,
        config.login_windows_days,
        config.activity_window_days,
        config.key_features,
        config.products,
    )


@functools.lru_cache(maxsize=32)
def _names_of(
    purchase_windows: tuple[int, ...],
    login_windows: tuple[int, ...],
    window: int,
    key_features: tuple[str, ...],
    products: tuple[str, ...],
) -> _Names:
    return _Names(
        purchase=tuple((f"orders_{d}d", f"revenue_{d}d", f"avg_order_value_{d}d") for d in purchase_windows),
        logins=tuple(f"logins_{d}d" for d in login_windows),
        sessions=f"sessions_{window}d",
        tickets=f"tickets_{window}d",
        calls=f"call_center_{window}d",
        first_use=tuple(f"days_since_first_use_{name}" for name in key_features),
        balances=tuple(f"balance_{product}" for product in products),
    )


def snapshot(
    customer_id: str, state: CustomerState, config: FeatureConfig, as_of: float | None = None
) -> FeatureSnapshot:
    """Every catalogue feature of ``state`` at ``as_of`` (default: the customer's latest event).

    ``as_of`` must not be earlier than the latest event (windows only look back from there).
    """
    at = state.last_ts if as_of is None else as_of
    if at < state.last_ts:
        raise ValueError("as_of is earlier than the customer's latest event")
    today = windows.day_of(at)
    names = _names(config)
    values: dict[str, FeatureValue] = {
        "recency_days": _days(at, state.last_purchase_ts),
        "frequency": state.orders,
        "monetary": state.revenue_minor / 100,
        "avg_order_value": state.revenue_minor / 100 / state.orders if state.orders else None,
        "tenure_days": _days(at, state.first_ts) or 0.0,
    }
    purchases = windows.window_pair_sums_of(state.purchase_days, today, config.purchase_windows_days)
    for (orders, cents), (orders_name, revenue_name, average_name) in zip(
        purchases, names.purchase, strict=True
    ):
        values[orders_name] = orders
        values[revenue_name] = cents / 100
        values[average_name] = cents / 100 / orders if orders else None
    logins = windows.window_sums(state.login_days, today, config.login_windows_days)
    for login_name, count in zip(names.logins, logins, strict=True):
        values[login_name] = count
    window = config.activity_window_days
    engagement = 0.0
    if state.engagement_ts is not None:
        half_life = config.engagement_half_life_days * SECONDS_PER_DAY
        engagement = state.engagement * 2.0 ** (-(at - state.engagement_ts) / half_life)
    used = state.feature_first_use
    last_login = state.last_login_ts
    values["days_since_last_login"] = _days(at, last_login)
    values["days_since_last_activity"] = _days(at, _latest(last_login, state.last_purchase_ts))
    values[names.sessions] = windows.window_sum(state.session_days, today, window)
    values["engagement_score"] = engagement
    values["distinct_features_used"] = len(used)
    values["key_feature_adoption"] = (
        sum(1 for name in config.key_features if name in used) / len(config.key_features)
        if config.key_features
        else 0.0
    )
    for name, first_use_name in zip(config.key_features, names.first_use, strict=True):
        values[first_use_name] = _days(at, used.get(name))
    open_severities = [entry[0] for entry in state.tickets.values() if ticket_is_open(entry)]
    balances = {product: reported[0] for product, reported in state.holdings.items()}
    values["open_tickets"] = len(open_severities)
    values[names.tickets] = windows.window_sum(state.ticket_open_days, today, window)
    values["worst_open_severity"] = max(open_severities, default=0)
    values[names.calls] = windows.window_sum(state.call_days, today, window)
    values["products_held"] = len(balances)
    values["total_balance"] = math.fsum(balances.values())  # exact, so order-independent
    for product, balance_name in zip(config.products, names.balances, strict=True):
        values[balance_name] = balances.get(product)
    values["late_events_dropped"] = state.late_dropped
    campaigns = {
        name: {"variant": variant, "outcome": OUTCOME_BY_RANK[rank], "ts": ts}
        for name, (variant, rank, ts) in state.campaigns.items()
    }
    return FeatureSnapshot(customer_id, at, values, balances, campaigns)
