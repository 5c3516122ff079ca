"""A brute-force recomputation of the feature catalogue from raw wire events.

Written independently of ``features.state`` and ``features.windows``: no buckets, no running
state, no pruning. The oracle replays the arrival order only to find out which events were too
late (older than the newest event seen so far for the customer by more than the allowed
lateness); every feature is then recomputed from scratch from the accepted events with plain
loops, in integer milliseconds and exact arithmetic (``Fraction``/``Decimal``) wherever the
definition allows it.

Only ``FeatureConfig`` is read from the package, as the parameters of the definitions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from features.config import FeatureConfig

DAY_MS = 86_400_000
SEVERITY = {"low": 1, "medium": 2, "high": 3, "critical": 4}
OUTCOME_RANK = {"delivered": 1, "opened": 2, "clicked": 3, "converted": 4, "unsubscribed": 5}
OUTCOME = {rank: outcome for outcome, rank in OUTCOME_RANK.items()}

Value = int | float | None


def day(ts_ms: int) -> int:
    """The UTC day index of an epoch-milliseconds time."""
    return ts_ms // DAY_MS


def cents(amount: Any) -> int:
    """The decimal amount as written, in cents, rounded half-even."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def days_between(later_ms: int, earlier_ms: int | None) -> float | None:
    if earlier_ms is None:
        return None
    return float(Fraction(max(0, later_ms - earlier_ms), DAY_MS))


def in_window(ts_ms: int, as_of_ms: int, days: int) -> bool:
    """True when the event's UTC day is one of the ``days`` days ending with as_of's day."""
    return day(as_of_ms) - days + 1 <= day(ts_ms) <= day(as_of_ms)


def lateness_ms(config: FeatureConfig) -> Fraction:
    return Fraction(config.allowed_lateness_seconds) * 1000


@dataclass
class CustomerOracle:
    """What the oracle says about one customer."""

    customer_id: str
    accepted: list[dict[str, Any]]
    late: list[dict[str, Any]]
    as_of_ms: int
    features: dict[str, Value]
    holdings: dict[str, float] = field(default_factory=dict)
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    external_scores: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def purchases(self) -> list[dict[str, Any]]:
        return [e for e in self.accepted if e["type"] == "purchase"]

    @property
    def rfm_scores(self) -> tuple[int, int, int] | None:
        """(last purchase ms, orders, revenue cents); None without purchases."""
        buys = self.purchases
        if not buys:
            return None
        return (
            max(e["ts"] for e in buys),
            len(buys),
            sum(cents(e["attrs"]["amount"]) for e in buys),
        )


def split_late(
    events: Iterable[Mapping[str, Any]],
    config: FeatureConfig,
    partition_of: Mapping[str, int] | None = None,
) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per customer, (accepted, too late) events, by replaying the arrival order.

    With ``partition_of`` (the pipeline's rule), a known customer's event is also too late when
    it is older than its partition's watermark: the newest time of every earlier event of the
    partition (accepted or not) minus the lateness.
    """
    allowed = lateness_ms(config)
    newest: dict[str, int] = {}
    partition_newest: dict[int, int] = {}
    out: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for event in events:
        cid = event["customer_id"]
        accepted, late = out.setdefault(cid, ([], []))
        ts = event["ts"]
        watermark = None
        if partition_of is not None:
            partition = partition_of[cid]
            if partition in partition_newest:
                watermark = partition_newest[partition] - allowed
            partition_newest[partition] = max(partition_newest.get(partition, ts), ts)
        if cid in newest and (ts < newest[cid] - allowed or (watermark is not None and ts < watermark)):
            late.append(dict(event))
            continue
        accepted.append(dict(event))
        newest[cid] = max(newest.get(cid, ts), ts)
    return out


def oracle(
    events: Iterable[Mapping[str, Any]],
    config: FeatureConfig,
    as_of_ms: Mapping[str, int] | None = None,
    partition_of: Mapping[str, int] | None = None,
) -> dict[str, CustomerOracle]:
    """Every customer's catalogue features from raw wire events in arrival order.

    ``events`` are schema v1 envelopes with ``ts`` in epoch milliseconds. ``as_of_ms`` may give
    a later moment per customer; by default it is the customer's newest accepted event.
    ``partition_of`` applies the pipeline's partition-watermark lateness too (``split_late``).
    """
    out = {}
    for cid, (accepted, late) in split_late(events, config, partition_of).items():
        at = max(e["ts"] for e in accepted)
        if as_of_ms is not None and cid in as_of_ms:
            if as_of_ms[cid] < at:
                raise ValueError("as_of is earlier than the customer's newest accepted event")
            at = as_of_ms[cid]
        out[cid] = _customer(cid, accepted, late, at, config)
    return out


def _of(accepted: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in accepted if e["type"] == event_type]


def _customer(
    cid: str, accepted: list[dict[str, Any]], late: list[dict[str, Any]], at: int, config: FeatureConfig
) -> CustomerOracle:
    values: dict[str, Value] = {}

    # --- RFM -------------------------------------------------------------------------------
    buys = _of(accepted, "purchase")
    total_cents = sum(cents(e["attrs"]["amount"]) for e in buys)
    values["recency_days"] = days_between(at, max((e["ts"] for e in buys), default=None))
    values["frequency"] = len(buys)
    values["monetary"] = float(Fraction(total_cents, 100))
    values["avg_order_value"] = float(Fraction(total_cents, 100 * len(buys))) if buys else None
    values["tenure_days"] = days_between(at, min(e["ts"] for e in accepted))
    for days in config.purchase_windows_days:
        window = [e for e in buys if in_window(e["ts"], at, days)]
        window_cents = sum(cents(e["attrs"]["amount"]) for e in window)
        values[f"orders_{days}d"] = len(window)
        values[f"revenue_{days}d"] = float(Fraction(window_cents, 100))
        values[f"avg_order_value_{days}d"] = (
            float(Fraction(window_cents, 100 * len(window))) if window else None
        )

    # --- engagement ------------------------------------------------------------------------
    logins = _of(accepted, "login")
    for days in config.login_windows_days:
        values[f"logins_{days}d"] = sum(1 for e in logins if in_window(e["ts"], at, days))
    activity = config.activity_window_days
    values["days_since_last_login"] = days_between(at, max((e["ts"] for e in logins), default=None))
    active = [e["ts"] for e in accepted if e["type"] in ("login", "purchase")]
    values["days_since_last_activity"] = days_between(at, max(active, default=None))
    values[f"sessions_{activity}d"] = sum(
        1 for e in _of(accepted, "session") if in_window(e["ts"], at, activity)
    )
    half_life_ms = config.engagement_half_life_days * DAY_MS
    values["engagement_score"] = math.fsum(
        config.engagement_weights.get(e["type"], 0.0) * 2.0 ** (-(at - e["ts"]) / half_life_ms)
        for e in accepted
    )

    # --- adoption --------------------------------------------------------------------------
    first_use: dict[str, int] = {}
    for e in _of(accepted, "feature_used"):
        name = str(e["attrs"]["feature"])
        first_use[name] = min(first_use.get(name, e["ts"]), e["ts"])
    # Key features are always tracked; of the others, the max_tracked_features used first
    # (ties by name) are.
    others = sorted((ts, name) for name, ts in first_use.items() if name not in config.key_features)
    for _ts, name in others[config.max_tracked_features :]:
        del first_use[name]
    values["distinct_features_used"] = len(first_use)
    used_keys = [name for name in config.key_features if name in first_use]
    values["key_feature_adoption"] = len(used_keys) / len(config.key_features) if config.key_features else 0.0
    for name in config.key_features:
        values[f"days_since_first_use_{name}"] = days_between(at, first_use.get(name))

    # --- service ---------------------------------------------------------------------------
    tickets: dict[str, list[dict[str, Any]]] = {}
    for e in _of(accepted, "support_ticket"):
        tickets.setdefault(str(e["attrs"]["ticket_id"]), []).append(e)
    open_severities = []
    for status_events in tickets.values():
        latest_ts = max(e["ts"] for e in status_events)
        at_latest = [e for e in status_events if e["ts"] == latest_ts]
        if any(e["attrs"]["status"] == "closed" for e in at_latest):
            continue  # the latest status is a close (a close at the same time as an opening wins)
        open_severities.append(max(SEVERITY[e["attrs"]["severity"]] for e in at_latest))
    values["open_tickets"] = len(open_severities)
    values[f"tickets_{activity}d"] = sum(
        1
        for e in _of(accepted, "support_ticket")
        if e["attrs"]["status"] == "opened" and in_window(e["ts"], at, activity)
    )
    values["worst_open_severity"] = max(open_severities, default=0)
    values[f"call_center_{activity}d"] = sum(
        1 for e in _of(accepted, "call_center") if in_window(e["ts"], at, activity)
    )

    # --- holdings --------------------------------------------------------------------------
    latest_report: dict[str, tuple[int, float]] = {}
    for e in _of(accepted, "product_holding"):
        product = str(e["attrs"]["product"])
        report = (e["ts"], float(e["attrs"]["balance"]))
        if product not in latest_report or report > latest_report[product]:
            latest_report[product] = report
    balances = {product: report[1] for product, report in latest_report.items()}
    values["products_held"] = len(balances)
    values["total_balance"] = math.fsum(balances.values())  # the exactly rounded sum
    for product in config.products:
        values[f"balance_{product}"] = balances.get(product)

    values["late_events_dropped"] = len(late)

    # --- campaigns (not numeric features, but part of the snapshot) ---------------------------
    latest_response: dict[str, tuple[int, int, str]] = {}
    for e in _of(accepted, "campaign_response"):
        name = str(e["attrs"]["campaign"])
        response = (e["ts"], OUTCOME_RANK[str(e["attrs"]["outcome"])], str(e["attrs"]["variant"]))
        if name not in latest_response or response > latest_response[name]:
            latest_response[name] = response  # latest by time, then outcome rank, then variant
    # Only the max_tracked_campaigns most recent campaigns are kept (ties by name).
    kept = sorted(latest_response, key=lambda name: (latest_response[name][0], name))
    kept = kept[max(0, len(kept) - config.max_tracked_campaigns) :] if config.max_tracked_campaigns else []
    campaigns = {
        name: {
            "variant": latest_response[name][2],
            "outcome": OUTCOME[latest_response[name][1]],
            "ts": latest_response[name][0] / 1000,
        }
        for name in kept
    }
    # --- external scores (score events: state, not features) ----------------------------------
    latest_score: dict[str, tuple[int, int, str, float]] = {}
    for e in _of(accepted, "score"):
        name = str(e["attrs"]["model"])
        as_of_ms = e["attrs"].get("as_of", e["ts"])
        score = (as_of_ms, e["ts"], str(e["attrs"]["version"]), float(e["attrs"]["value"]))
        if name not in latest_score or score > latest_score[name]:
            latest_score[name] = score  # latest by as_of, then ts, then version, then value
    ranked = sorted(latest_score, key=lambda name: (latest_score[name][:2], name))
    kept_scores = ranked[max(0, len(ranked) - config.max_external_scores) :]
    external = {
        name: [
            latest_score[name][3],
            latest_score[name][2],
            latest_score[name][0] / 1000,
            latest_score[name][1] / 1000,
        ]
        for name in kept_scores
    }
    return CustomerOracle(cid, accepted, late, at, values, balances, campaigns, external)


# --- comparison ------------------------------------------------------------------------------

# Features compared with math.isclose(rel_tol=1e-9, abs_tol=1e-9): the decayed engagement sum, day
# fractions and average order values (a ratio the store rounds twice, cents / 100 / orders).
# Everything else (counts, cent sums, balances, their exact sum) must be exactly equal.
APPROXIMATE = ("engagement_score", "recency_days", "tenure_days", "days_since", "avg_order_value")


def is_approximate(name: str) -> bool:
    return any(name.startswith(prefix) for prefix in APPROXIMATE)


def close(a: Value, b: Value) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def differences(actual: Mapping[str, Value], expected: Mapping[str, Value]) -> dict[str, tuple[Value, Value]]:
    """Features whose values differ: ``{name: (actual, expected)}`` (types matter for None)."""
    diffs: dict[str, tuple[Value, Value]] = {}
    for name in sorted(set(actual) | set(expected)):
        if name not in actual or name not in expected:
            diffs[name] = (actual.get(name, "<missing>"), expected.get(name, "<missing>"))  # type: ignore[assignment]
            continue
        a, b = actual[name], expected[name]
        same = close(a, b) if is_approximate(name) else (a == b and (a is None) == (b is None))
        if not same:
            diffs[name] = (a, b)
    return diffs
