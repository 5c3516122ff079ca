"""``segflow explain``: one customer's features, segments and the reasons, from Redis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.app import feature_config
from engine.codecs import decode_msgpack
from engine.pipeline import MEMBERSHIP_EXTRA
from engine.rules import lifecycle
from engine.settings import Settings
from features.catalogue import snapshot
from features.client import connect
from features.config import FeatureConfig
from features.redis_store import CustomerRecord, RedisFeatureStore


@dataclass(frozen=True, slots=True)
class Explanation:
    """What segflow knows and decided about one customer."""

    customer_id: str
    as_of: float
    state: dict[str, Any]
    features: dict[str, Any]
    segments: dict[str, str]
    reasons: dict[str, dict[str, Any]]
    applied_offsets: dict[int, int]
    pending_outbox: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "customer_id": self.customer_id,
            "as_of": _iso(self.as_of),
            "state": self.state,
            "features": self.features,
            "segments": self.segments,
            "reasons": self.reasons,
            "applied_offsets": {str(k): v for k, v in self.applied_offsets.items()},
            "pending_outbox": self.pending_outbox,
        }

    def render(self) -> str:
        """Readable text for a terminal."""
        lines = [f"customer {self.customer_id} (as of {_iso(self.as_of)}, its latest event)", "features:"]
        lines += [f"  {name:22} {value}" for name, value in self.features.items()]
        lines.append("segments:")
        for family, segment in self.segments.items():
            why = self.reasons.get(family, {}).get("text", "")
            lines.append(f"  {family:22} {segment:10} {why}")
        offsets = ", ".join(f"p{p}@{o}" for p, o in sorted(self.applied_offsets.items()))
        lines.append(f"applied offsets: {offsets}; pending outbox entries: {self.pending_outbox}")
        return "\n".join(lines)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def build_explanation(
    record: CustomerRecord, params: lifecycle.LifecycleParams, config: FeatureConfig
) -> Explanation | None:
    """Explain a stored record (pure: no I/O)."""
    if record.state is None:
        return None
    state = record.state
    features = snapshot(record.customer_id, state, config)
    membership = decode_msgpack(record.extras[MEMBERSHIP_EXTRA]) if MEMBERSHIP_EXTRA in record.extras else {}
    decision = lifecycle.evaluate(features, params)
    values: dict[str, Any] = {
        k: (round(v, 3) if isinstance(v, float) else v) for k, v in features.as_dict().items()
    }
    values["campaigns"] = features.campaigns
    return Explanation(
        customer_id=record.customer_id,
        as_of=state.last_ts,
        state=state.to_dict(),
        features=values,
        segments=membership,
        reasons={decision.family: decision.reason()},
        applied_offsets=dict(record.applied_offsets),
        pending_outbox=len(record.outbox),
    )


async def explain_customer(settings: Settings, customer_id: str) -> Explanation | None:
    """Load one customer from Redis and explain it."""
    client = connect(settings.redis_url)
    try:
        store = RedisFeatureStore(client, prefix=settings.key_prefix)
        record = await store.get(customer_id)
        quintiles = (await store.population.quintiles([customer_id]))[customer_id] if record else None
    finally:
        await client.aclose()
    if record is None:
        return None
    params = lifecycle.LifecycleParams(settings.lifecycle_new_days, settings.lifecycle_active_days)
    explanation = build_explanation(record, params, feature_config(settings))
    if explanation is not None and quintiles is not None:
        explanation.features["rfm_quintiles"] = {
            "R": quintiles.recency,
            "F": quintiles.frequency,
            "M": quintiles.monetary,
        }
    return explanation
