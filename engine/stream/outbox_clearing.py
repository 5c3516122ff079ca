"""Delivered outbox entries, removed from Redis with the next commit's round trip.

``OutboxClearing`` is part of ``SegmentPipeline`` (a mixin, for the module's size). Once the
broker acked a batch's outputs they are *deferred*: the next commit's round trip removes them
from the customers' outboxes (or ``flush_cleared`` does, when no commit comes soon), and the
batch's offsets are committed only once its ticket was reached: a crash in between re-sends
the same entries, never loses one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.stream.batch_records import PendingChange


class OutboxClearing:
    """The deferred outbox removals and their tickets (see the module doc)."""

    _store: Any
    _cache: Any
    tick_outbox: Any

    def _init_clears(self) -> None:
        self._unclear: dict[str, list[str]] = {}
        """Delivered outbox entries not yet removed from Redis (removed by the next commit)."""
        self._deferred_seq = 0
        self._cleared_seq = 0

    def defer_clear(self, changes: Sequence[PendingChange]) -> int:
        """Mark delivered entries to be removed from the outbox by the next commit's round trip.

        Returns a ticket: once ``cleared_through`` reaches it, the entries are gone from Redis.
        """
        if not changes:
            return self._cleared_seq if not self._unclear else self._deferred_seq
        for change in changes:
            self._unclear.setdefault(change.customer_id, []).append(change.change_id)
            self._cache.forget_outbox(change.customer_id, [change.change_id])
        self._deferred_seq += 1
        return self._deferred_seq

    @property
    def cleared_through(self) -> int:
        """The highest ``defer_clear`` ticket whose entries were removed from Redis."""
        return self._cleared_seq

    async def flush_cleared(self) -> None:
        """Remove every deferred outbox entry now, in one round trip (when no commit comes soon)."""
        if self._unclear:
            through = self._deferred_seq
            unmark: list[str] = []

            def also(pipe: Any) -> None:
                unmark[:] = self.tick_outbox.queue(pipe, self._unclear, {})

            await self._store.clear_outbox(self._unclear, also)
            self._unclear = {}
            self._cleared_seq = through
            self.tick_outbox.settled(unmark)

    async def confirm_sent(self, changes: Sequence[PendingChange]) -> None:
        """Forget delivered change events from the outbox now (call after the broker acked them)."""
        self.defer_clear(changes)
        await self.flush_cleared()
