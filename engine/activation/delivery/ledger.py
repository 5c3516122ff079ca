"""Which offsets may be committed: the first offset of each partition not yet finished.

Actions finish out of order (deliveries run concurrently, retries take a while), but an offset
is committed only once every record at or below it is finished (delivered, dead-lettered or
withheld), so a crash loses nothing: the records after the committed offset are read again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from aiokafka import TopicPartition


class PartitionLedger:
    """The unfinished offsets of one partition, in the order read."""

    __slots__ = ("_done", "_next", "_unfinished")

    def __init__(self) -> None:
        self._unfinished: deque[int] = deque()  # from the first unfinished offset on, in order
        self._done: set[int] = set()  # finished offsets behind the first unfinished one
        self._next: int | None = None  # one past the highest offset read

    def read(self, offset: int) -> None:
        """Record ``offset`` as read (offsets of a partition arrive in increasing order)."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} read after {self._next - 1}")
        self._unfinished.append(offset)
        self._next = offset + 1

    def finish(self, offset: int) -> None:
        """Record ``offset`` as finished."""
        self._done.add(offset)
        while self._unfinished and self._unfinished[0] in self._done:
            self._done.discard(self._unfinished.popleft())

    @property
    def unfinished(self) -> int:
        """How many offsets read are not finished."""
        return len(self._unfinished) - len(self._done)

    @property
    def committable(self) -> int | None:
        """The offset to commit: every record below it is finished (None: nothing read)."""
        if self._unfinished:
            return self._unfinished[0]
        return self._next


class Ledger:
    """A :class:`PartitionLedger` per partition, and what was committed of each."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionLedger] = {}
        self._committed: dict[TopicPartition, int] = {}

    def read(self, tp: TopicPartition, offset: int) -> None:
        """Record a record as read."""
        self._partitions.setdefault(tp, PartitionLedger()).read(offset)

    def finish(self, tp: TopicPartition, offset: int) -> None:
        """Record a record as finished (ignored for a partition dropped meanwhile)."""
        ledger = self._partitions.get(tp)
        if ledger is not None:
            ledger.finish(offset)

    @property
    def unfinished(self) -> int:
        """Records read and not finished, over every partition."""
        return sum(p.unfinished for p in self._partitions.values())

    def to_commit(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """The offsets that moved past the last commit (of ``partitions``, default all)."""
        wanted = set(self._partitions) if partitions is None else set(partitions)
        offsets = {}
        for tp in wanted & self._partitions.keys():
            offset = self._partitions[tp].committable
            if offset is not None and offset > self._committed.get(tp, -1):
                offsets[tp] = offset
        return offsets

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Record ``offsets`` as committed."""
        self._committed.update(offsets)

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget partitions (revoked: their new owner reads from the committed offset)."""
        for tp in partitions:
            self._partitions.pop(tp, None)
            self._committed.pop(tp, None)
