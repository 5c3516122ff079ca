"""The read API of the feature store: typed snapshots for models, rules and ``segflow explain``."""

from __future__ import annotations

from collections.abc import Sequence

from features.catalogue import FeatureSnapshot, snapshot
from features.config import FeatureConfig
from features.redis_store import RedisFeatureStore


class FeatureReader:
    """Snapshots of customers' features from a store, shaped by one FeatureConfig."""

    def __init__(self, store: RedisFeatureStore, config: FeatureConfig) -> None:
        self._store = store
        self._config = config

    async def snapshot(self, customer_id: str, as_of: float | None = None) -> FeatureSnapshot | None:
        """One customer's features (None when the store has never seen them)."""
        return (await self.snapshots([customer_id], as_of))[customer_id]

    async def snapshots(
        self, customer_ids: Sequence[str], as_of: float | None = None
    ) -> dict[str, FeatureSnapshot | None]:
        """Several customers' features in one pipelined round trip.

        With ``as_of`` (event time, epoch seconds) every customer is seen at that moment; a
        customer whose latest event is later than ``as_of`` is seen at their latest event.
        """
        records = await self._store.load(list(customer_ids))
        out: dict[str, FeatureSnapshot | None] = {}
        for customer_id in customer_ids:
            state = records[customer_id].state
            if state is None:
                out[customer_id] = None
                continue
            at = None if as_of is None else max(as_of, state.last_ts)
            out[customer_id] = snapshot(customer_id, state, self._config, at)
        return out
