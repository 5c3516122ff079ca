"""A bounded, least-recently-used cache of committed customer records, held by their writer.

The worker that owns a partition is the only writer of its customers, so after a successful
commit it already knows what Redis holds and can skip reading it for the next batch. The cache
is an optimisation, never a source of truth: the commit's compare-and-set on the applied offsets
still runs against Redis, and a record that moved under us fails it and is reloaded. Records
are kept encoded, so every ``get`` returns fresh objects that a failed batch cannot corrupt.
"""

from __future__ import annotations

from collections import OrderedDict

from features.redis_store import CustomerRecord, CustomerWrite, decode_state, encode_state

_Entry = tuple[bytes, dict[int, int], dict[str, bytes], dict[str, bytes], int | None]


class RecordCache:
    """LRU of customer records after their last successful commit."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, customer_id: str) -> CustomerRecord | None:
        """A fresh copy of the cached record, or None."""
        entry = self._entries.get(customer_id)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(customer_id)
        state, offsets, extras, outbox, version = entry
        return CustomerRecord(
            customer_id, decode_state(state), dict(offsets), version, dict(extras), dict(outbox)
        )

    def put_committed(self, record: CustomerRecord, write: CustomerWrite | None) -> None:
        """Remember ``record`` as it is in Redis after ``write`` (None: nothing was written)."""
        if self._capacity <= 0:
            return
        if write is None:
            if record.state is None:
                return
            if record.customer_id in self._entries:  # unchanged since it was cached
                self._entries.move_to_end(record.customer_id)
                return
            entry = (
                encode_state(record.state),
                dict(record.applied_offsets),
                dict(record.extras),
                dict(record.outbox),
                record.version,
            )
        else:
            offsets = dict(record.applied_offsets)
            offsets.update(write.offsets)
            entry = (
                write.state_bytes,
                offsets,
                {**record.extras, **write.extras},
                {**record.outbox, **write.outbox},
                (record.version or 0) + 1,
            )
        self._entries[record.customer_id] = entry
        self._entries.move_to_end(record.customer_id)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget_outbox(self, customer_id: str, entry_ids: list[str]) -> None:
        """Drop delivered outbox entries from a cached record (mirrors ``clear_outbox``)."""
        entry = self._entries.get(customer_id)
        if entry is not None:
            for entry_id in entry_ids:
                entry[3].pop(entry_id, None)

    def discard(self, customer_id: str) -> None:
        """Forget one customer (their record moved under us)."""
        self._entries.pop(customer_id, None)

    def clear(self) -> None:
        """Forget everything (e.g. partitions were revoked)."""
        self._entries.clear()
