"""Where the models' durable state lives in Redis, per source partition.

==========================  ==========================================================
key                         holds
==========================  ==========================================================
``<prefix>:model:<p>``      hash: ``gen`` (owner generation), ``blob`` (signed checkpoint)
``<prefix>:due:<p>``        sorted set: customer -> event time their next label or
                            segment re-evaluation falls due (the timer index)
``<prefix>:learn:<p>``      sorted set: customer -> highest label number in their learn box
``<prefix>:wm``             hash: partition -> newest event time seen (epoch s)
==========================  ==========================================================

Learn boxes themselves live in the customer hashes (field ``x:lb<p>``), committed with the
features; the index only says where to look after a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from features.keys import customer_key, extra_field

_CLAIM_LUA = resources.files("models").joinpath("lua/claim.lua").read_text()
_SAVE_LUA = resources.files("models").joinpath("lua/save.lua").read_text()


def learn_box_extra(partition: int) -> str:
    """Name of the customer-record extra holding partition ``partition``'s learn box."""
    return f"lb{partition}"


class ModelStore:
    """Checkpoints, ownership generations, the due and learn indexes of every partition."""

    def __init__(self, client: Redis | RedisCluster, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._shas: dict[str, str] = {}

    def model_key(self, partition: int) -> str:
        """The hash of one partition's checkpoint and owner generation."""
        return f"{self._prefix}:model:{partition}"

    def due_key(self, partition: int) -> str:
        """The due-time index of one partition."""
        return f"{self._prefix}:due:{partition}"

    def learn_key(self, partition: int) -> str:
        """The learn-box index of one partition."""
        return f"{self._prefix}:learn:{partition}"

    @property
    def watermark_key(self) -> str:
        """The hash of newest event times per partition."""
        return f"{self._prefix}:wm"

    async def _script(self, source: str, key: str, *args: Any) -> Any:
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = await self._client.script_load(source)
        try:
            return await self._client.evalsha(sha, 1, key, *args)
        except NoScriptError:
            self._shas[source] = await self._client.script_load(source)
            return await self._client.evalsha(self._shas[source], 1, key, *args)

    async def claim(self, partition: int) -> tuple[int, bytes | None]:
        """Become the owner of ``partition``'s models: (new generation, saved checkpoint or None)."""
        gen, blob = await self._script(_CLAIM_LUA, self.model_key(partition))
        return int(gen), (bytes(blob) if blob else None)

    async def save(self, partition: int, generation: int, blob: bytes) -> bool:
        """Save a checkpoint; False when a newer owner claimed the partition (nothing written)."""
        return bool(await self._script(_SAVE_LUA, self.model_key(partition), str(generation), blob))

    async def checkpoint_blob(self, partition: int) -> bytes | None:
        """The saved checkpoint of ``partition`` without claiming it (for reports)."""
        blob = await self._client.hget(self.model_key(partition), "blob")
        return bytes(blob) if blob else None

    async def generation(self, partition: int) -> int:
        """The current owner generation of ``partition`` (0 when never claimed)."""
        gen = await self._client.hget(self.model_key(partition), "gen")
        return int(gen) if gen else 0

    def queue_indexes(
        self,
        pipe: Any,
        partition: int,
        due: Mapping[str, float | None],
        learn: Mapping[str, int],
    ) -> None:
        """Add index updates to a commit pipeline: due times (None: nothing due) and learn boxes.
        Scores are set, never incremented: idempotent."""
        scheduled = {cid: ts for cid, ts in due.items() if ts is not None}
        unscheduled = [cid for cid, ts in due.items() if ts is None]
        if scheduled:
            pipe.zadd(self.due_key(partition), scheduled)
        if unscheduled:
            pipe.zrem(self.due_key(partition), *unscheduled)
        if learn:
            pipe.zadd(self.learn_key(partition), dict(learn))

    def queue_newest(self, pipe: Any, newest: Mapping[int, float]) -> None:
        """Add to a pipeline: the newest event time committed per partition (one HSET for all)."""
        if newest:
            pipe.hset(self.watermark_key, mapping={str(p): repr(float(ts)) for p, ts in newest.items()})

    async def due_customers(self, partition: int, up_to: float, limit: int = 500) -> list[tuple[str, float]]:
        """Customers of ``partition`` due at or before event time ``up_to``, earliest first."""
        rows = await self._client.zrangebyscore(
            self.due_key(partition), "-inf", up_to, start=0, num=limit, withscores=True
        )
        return [(_text(member), float(score)) for member, score in rows]

    async def due_customers_of(
        self, watermarks: Mapping[int, float], limit: int = 500
    ) -> dict[int, list[tuple[str, float]]]:
        """``due_customers`` of several partitions (partition -> its watermark) in one round trip."""
        if not watermarks:
            return {}
        partitions = list(watermarks)
        async with self._client.pipeline(transaction=False) as pipe:
            for partition in partitions:
                pipe.zrangebyscore(
                    self.due_key(partition),
                    "-inf",
                    watermarks[partition],
                    start=0,
                    num=limit,
                    withscores=True,
                )
            replies = await pipe.execute()
        return {
            partition: [(_text(member), float(score)) for member, score in rows]
            for partition, rows in zip(partitions, replies, strict=True)
            if rows
        }

    async def newest_event_ts(self, partition: int) -> float | None:
        """The newest event time committed for ``partition``."""
        value = await self._client.hget(self.watermark_key, str(partition))
        return float(value) if value is not None else None

    async def learn_boxes_after(self, partition: int, after_seq: int) -> dict[str, bytes]:
        """Learn boxes of ``partition`` holding a label numbered above ``after_seq``."""
        members = await self._client.zrangebyscore(self.learn_key(partition), f"({after_seq}", "+inf")
        customers = [_text(m) for m in members]
        if not customers:
            return {}
        field = extra_field(learn_box_extra(partition))
        async with self._client.pipeline(transaction=False) as pipe:
            for customer_id in customers:
                pipe.hget(customer_key(self._prefix, customer_id), field)
            boxes = await pipe.execute()
        return {cid: bytes(box) for cid, box in zip(customers, boxes, strict=True) if box}

    async def clear_learned(self, partition: int, through_seq: int, limit: int = 5000) -> int:
        """Empty the learn boxes whose labels a saved checkpoint covers; return how many.

        Only boxes whose highest label is at or below ``through_seq`` are cleared; the owner's
        next commit of a customer drops covered entries from a box that has newer ones too.
        """
        members = await self._client.zrangebyscore(
            self.learn_key(partition), "-inf", through_seq, start=0, num=limit
        )
        customers = [_text(m) for m in members]
        if not customers:
            return 0
        field = extra_field(learn_box_extra(partition))
        async with self._client.pipeline(transaction=False) as pipe:
            for customer_id in customers:
                pipe.hdel(customer_key(self._prefix, customer_id), field)
            pipe.zrem(self.learn_key(partition), *customers)
            await pipe.execute()
        return len(customers)

    async def partitions_with_checkpoints(self, partitions: Sequence[int]) -> dict[int, bytes]:
        """The saved checkpoints of ``partitions`` (those that have one)."""
        out = {}
        for partition in partitions:
            blob = await self.checkpoint_blob(partition)
            if blob:
                out[partition] = blob
        return out


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)
