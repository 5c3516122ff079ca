"""The model banks a worker owns right now, claimed, restored, checkpointed and released.

A bank is claimed when its partition is first needed (a batch holds its events, or the worker
was assigned it): the claim takes a new owner generation, restores the saved checkpoint and
replays the learn-box labels numbered above what the checkpoint reflects, so a label committed
before a crash is learned exactly once. Checkpoints are saved every ``checkpoint_seconds`` and
when a partition is released (rebalance, shutdown); a save whose generation is no longer the
latest is refused by Redis, and the bank is dropped: another worker owns the partition now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from models.bank import BankConfig, ModelBank
from models.pending import decode_learn_box
from models.store import ModelStore

log = logging.getLogger(__name__)


class ModelBanks:
    """Per owned partition: its bank, owner generation and event-time progress."""

    def __init__(
        self,
        store: ModelStore,
        config: BankConfig,
        key: bytes,
        checkpoint_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self._key = key
        self._checkpoint_seconds = checkpoint_seconds
        self._clock = clock
        self.banks: dict[int, ModelBank] = {}
        self.generations: dict[int, int] = {}
        self.newest_ts: dict[int, float] = {}
        self.last_event_wall: dict[int, float] = {}
        self._last_checkpoint_wall = clock()
        self.replayed_labels = 0
        self.lost_ownership = 0

    @property
    def owned(self) -> list[int]:
        """The partitions whose models this worker owns."""
        return sorted(self.banks)

    def get(self, partition: int) -> ModelBank:
        """The bank of an owned partition (``ensure`` it first)."""
        return self.banks[partition]

    async def ensure(self, partitions: Iterable[int]) -> None:
        """Claim and restore the banks of ``partitions`` not owned yet."""
        for partition in sorted(set(partitions) - self.banks.keys()):
            generation, blob = await self.store.claim(partition)
            bank = ModelBank.restore(partition, self.config, blob, self._key)
            boxes = await self.store.learn_boxes_after(partition, bank.checkpointed_through)
            entries = [entry for box in boxes.values() for entry in decode_learn_box(box)]
            replayed = bank.learn_all(entries)
            self.replayed_labels += replayed
            newest = await self.store.newest_event_ts(partition)
            self.banks[partition] = bank
            self.generations[partition] = generation
            if newest is not None:
                self.newest_ts[partition] = newest
            self.last_event_wall[partition] = self._clock()
            log.info(
                "partition %d: models claimed (generation %d, %d labels in checkpoint, %d replayed)",
                partition,
                generation,
                bank.checkpointed_through,
                replayed,
            )

    def saw_events(self, partition: int, newest_ts: float) -> None:
        """Record that a batch of ``partition`` reached event time ``newest_ts``."""
        self.newest_ts[partition] = max(newest_ts, self.newest_ts.get(partition, newest_ts))
        self.last_event_wall[partition] = self._clock()

    def watermark(self, partition: int, lateness_seconds: float, idle_seconds: float) -> float | None:
        """Event time up to which nothing of ``partition`` can still arrive in time.

        The newest event time minus the allowed lateness; once the partition has been idle for
        ``idle_seconds`` of wall-clock time, event time advances with the wall clock beyond
        that, so a quiet partition's labels and timers do not freeze.
        """
        newest = self.newest_ts.get(partition)
        if newest is None:
            return None
        idle = self._clock() - self.last_event_wall.get(partition, self._clock())
        return newest - lateness_seconds + max(0.0, idle - idle_seconds)

    def checkpoint_due(self) -> bool:
        """True when the periodic checkpoint interval has passed."""
        return self._clock() - self._last_checkpoint_wall >= self._checkpoint_seconds

    async def checkpoint(self, partitions: Iterable[int] | None = None) -> list[int]:
        """Save the banks of ``partitions`` (default: all owned); return those saved.

        A bank whose save is refused (a newer owner exists) is dropped.
        """
        saved = []
        for partition in sorted(self.banks if partitions is None else set(partitions) & self.banks.keys()):
            bank = self.banks[partition]
            through = bank.learned_through
            if await self.store.save(partition, self.generations[partition], bank.dump(self._key)):
                bank.checkpointed_through = through
                await self.store.clear_learned(partition, through)
                saved.append(partition)
            else:
                log.warning("partition %d: a newer owner claimed the models; dropping ours", partition)
                self.lost_ownership += 1
                self._drop(partition)
        if partitions is None:
            self._last_checkpoint_wall = self._clock()
        return saved

    async def release(self, partitions: Iterable[int]) -> None:
        """Checkpoint, then forget, the banks of ``partitions`` (they are being revoked)."""
        wanted = set(partitions) & self.banks.keys()
        await self.checkpoint(wanted)
        for partition in wanted:
            self._drop(partition)

    def _drop(self, partition: int) -> None:
        self.banks.pop(partition, None)
        self.generations.pop(partition, None)
        self.newest_ts.pop(partition, None)
        self.last_event_wall.pop(partition, None)
