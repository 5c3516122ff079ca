"""The timer index: per source partition, customer -> the event time their next moment falls due.

``<prefix>:due:<p>`` is a sorted set; the pipeline sets a customer's score with their commit
(idempotent: set, never incremented) and a tick reads the customers due by the partition's
watermark, earliest first, so that what time alone changes costs what is due, never a scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DueIndex:
    """Reads and queues updates of every partition's due index."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def key(self, partition: int) -> str:
        """The due-time index of one partition."""
        return f"{self._prefix}:due:{partition}"

    def queue(self, pipe: Any, partition: int, due: Mapping[str, float | None]) -> None:
        """Add to a commit pipeline: the customers' next due times (None: nothing due)."""
        scheduled = {cid: ts for cid, ts in due.items() if ts is not None}
        unscheduled = [cid for cid, ts in due.items() if ts is None]
        if scheduled:
            pipe.zadd(self.key(partition), scheduled)
        if unscheduled:
            pipe.zrem(self.key(partition), *unscheduled)

    async def due_by(self, watermarks: Mapping[int, float], limit: int) -> dict[int, list[tuple[str, float]]]:
        """Per partition (-> its watermark), up to ``limit`` customers due by it, earliest first."""
        if not watermarks:
            return {}
        partitions = list(watermarks)
        async with self._client.pipeline(transaction=False) as pipe:
            for partition in partitions:
                pipe.zrangebyscore(
                    self.key(partition), "-inf", watermarks[partition], start=0, num=limit, withscores=True
                )
            replies = await pipe.execute()
        return {
            partition: [(_text(member), float(score)) for member, score in rows]
            for partition, rows in zip(partitions, replies, strict=True)
        }


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)
