"""Which customers hold outbox entries that a tick made, so a partition's next owner sends them.

An event's outbox entries are safe without this: until they are delivered, the event's offset
is not committed, so whoever owns the partition next fetches the event again and the customer's
outbox is offered with it. A tick has no offset: if its worker dies after the tick's commit and
before the broker acknowledged the output, nothing would bring that customer back. So a tick's
commit also adds the customers it left entries for to ``<prefix>:tick-outbox:<p>``, and the
round trip that removes those entries once delivered removes them from the set. A partition's
owner reads the set with its first tick (``TimeDriven.tick``) and offers their entries again.

On one server the set update shares the commit's MULTI/EXEC. A Redis Cluster cannot make that
round trip atomic (the customers and the set live in different slots), so there the customers are
added first, in a round trip of their own (``before_commit``): a worker that dies between the two
leaves a customer in the set without entries, which the next owner finds and removes, never
entries without their customer in the set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster


class TickOutboxIndex:
    """The per-partition sets of customers with tick-made outbox entries (see the module doc)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._atomic_commit = not isinstance(client, RedisCluster)
        """Whether a commit round trip is one transaction (one server; not a cluster)."""
        self._marked: dict[str, int] = {}
        """Customer -> partition: in its partition's set (or may be), entries not yet cleared."""
        self._stale: dict[int, set[str]] = {}
        """In a set without entries left (found by ``recover``): removed with the next round trip."""
        self.recovered: set[int] = set()
        """Partitions whose set this owner has read since it got them."""

    def key(self, partition: int) -> str:
        """The set of one partition's customers with tick-made outbox entries."""
        return f"{self._prefix}:tick-outbox:{partition}"

    def queue(self, pipe: Any, cleared: Iterable[str], added: Mapping[str, int]) -> list[str]:
        """Queue on a round trip that clears ``cleared`` customers' delivered entries (and commits
        the tick that left entries for ``added``: customer -> partition) their set updates.

        Returns the customers to forget once that round trip succeeded (``settled``).
        """
        unmark = [c for c in cleared if c in self._marked and c not in added]
        removed = {p: customers - added.keys() for p, customers in self._stale.items()}
        for customer_id in unmark:
            removed.setdefault(self._marked[customer_id], set()).add(customer_id)
        for partition, customers in removed.items():
            if customers:
                pipe.srem(self.key(partition), *sorted(customers))
        if self._atomic_commit:  # else ``before_commit`` added them already
            self._queue_adds(pipe, added)
        return unmark

    async def before_commit(self, added: Mapping[str, int]) -> None:
        """Before the round trip that commits a tick leaving entries for ``added`` (customer ->
        partition): on a cluster, whose commit is not atomic, add them to their sets now, in a
        round trip of their own (see the module doc). On one server ``queue`` does it."""
        if self._atomic_commit or not added:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            self._queue_adds(pipe, added)
            await pipe.execute()

    def _queue_adds(self, pipe: Any, added: Mapping[str, int]) -> None:
        for partition, members in _by_partition(added).items():
            pipe.sadd(self.key(partition), *members)
        # Marked before the round trip's reply: a lost reply may still have added them.
        self._marked.update(added)

    def settled(self, unmark: Sequence[str]) -> None:
        """The round trip of ``queue`` succeeded: its removals are done."""
        for customer_id in unmark:
            self._marked.pop(customer_id, None)
        self._stale = {}

    async def recover(self, partitions: Sequence[int]) -> dict[int, list[str]]:
        """Per partition not read yet, the customers in its set (one round trip); marks them read."""
        unread = [p for p in partitions if p not in self.recovered]
        if not unread:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for partition in unread:
                pipe.smembers(self.key(partition))
            replies = await pipe.execute()
        self.recovered.update(unread)
        return {
            partition: sorted(_text(member) for member in members)
            for partition, members in zip(unread, replies, strict=True)
            if members
        }

    def found(self, partition: int, customer_id: str, has_entries: bool) -> None:
        """A recovered customer: marked while it has entries, else removed from the set soon."""
        if has_entries:
            self._marked[customer_id] = partition
        else:
            self._stale.setdefault(partition, set()).add(customer_id)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions were revoked: read their sets again if they come back."""
        self.recovered.difference_update(partitions)


def _by_partition(customers: Mapping[str, int]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for customer_id, partition in sorted(customers.items()):
        grouped.setdefault(partition, []).append(customer_id)
    return grouped


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)
