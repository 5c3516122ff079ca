"""The learner in-process, for replays of a recorded log and for tests (no labels topic).

It runs the same core as the learner service (``models.learner``): labels are offered as the
pipeline returns them from its outbox, frontiers as its ticks report them, and sealed snapshots
are published to Redis under the same keys, so the pipeline reads them exactly as it reads the
service's. A replay's labels arrive in another order than through the topic; the canonical order
of learning makes the snapshots the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.app import checkpoint_key, model_config
from engine.settings import Settings
from engine.stream.batch_records import LEARNER_KINDS, PendingChange
from models.learner import Learner, encode_snapshot, sealable_version
from models.snapshots import raise_sealed, read_frontier, snapshot_key, write_frontier


class LocalLearner:
    """Learns the labels of a pipeline's outputs and seals snapshots as its frontiers allow."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings = settings
        self._client = client
        self.learner = Learner(
            model_config(settings), settings.model_period_seconds, checkpoint_key(settings)
        )

    def offer(self, outputs: Iterable[PendingChange]) -> None:
        """Take the labels and outcome messages among a batch's or tick's outputs (as if
        delivered to the labels topic)."""
        for entry in outputs:
            if entry.kind in LEARNER_KINDS:
                self.learner.offer(entry.payload)

    async def advance(self, frontiers: Mapping[int, float]) -> int | None:
        """Record ``frontiers`` (after their labels were offered); seal what they allow.

        Returns the highest sealed version (None: nothing sealed yet).
        """
        prefix = self.settings.key_prefix
        if frontiers:
            await write_frontier(self._client, prefix, frontiers)
        known = await read_frontier(self._client, prefix)
        version = sealable_version(known, self.settings.events_partitions, self.learner.period_seconds)
        if version is None or (self.learner.sealed is not None and version <= self.learner.sealed):
            return self.learner.sealed
        made = self.learner.seal_through(version)
        if made:
            async with self._client.pipeline(transaction=False) as pipe:
                for k, snapshot in made:
                    pipe.set(snapshot_key(prefix, k), encode_snapshot(snapshot))
                await pipe.execute()
        await raise_sealed(self._client, prefix, version)
        return self.learner.sealed
