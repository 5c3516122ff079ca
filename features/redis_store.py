"""The Redis feature store: one hash per customer, read and committed in pipelined batches.

A batch of events is handled in at most two round trips however large it is: ``load`` reads
every touched customer's hash (not needed for customers the writer has cached), and ``commit``
writes each customer's new state with a server-side compare-and-set on the record version
(``lua/commit.lua``: one call for the whole batch on a single server, one per customer on a
cluster, since a cluster script may only touch one slot).
The offset makes redelivery harmless (events at or below it change nothing) and the
compare-and-set makes a zombie worker's late write fail instead of overwriting newer state.

Besides features, a record carries opaque ``extras`` and ``outbox`` entries that callers commit
atomically with the state (the engine keeps segment membership and pending output there);
this package does not interpret them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, cast

import msgpack
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from features.event import PositionedEvent
from features.keys import (
    EXTRA_FIELD_PREFIX,
    OFFSET_FIELD_PREFIX,
    OUTBOX_FIELD_PREFIX,
    STATE_FIELD,
    VERSION_FIELD,
    customer_key,
    extra_field,
    offset_field,
    outbox_field,
)
from features.population import PopulationStats
from features.state import CustomerState

_COMMIT_LUA = resources.files("features").joinpath("lua/commit.lua").read_text()


@dataclass(slots=True)
class CustomerRecord:
    """Everything stored for one customer."""

    customer_id: str
    state: CustomerState | None = None
    applied_offsets: dict[int, int] = field(default_factory=dict)
    version: int | None = None
    extras: dict[str, bytes] = field(default_factory=dict)
    outbox: dict[str, bytes] = field(default_factory=dict)

    def applied_offset(self, partition: int) -> int | None:
        """The last offset of ``partition`` already applied, if any."""
        return self.applied_offsets.get(partition)

    def fresh(self, events: Iterable[PositionedEvent]) -> list[PositionedEvent]:
        """The events not yet applied: offset above this customer's applied offset."""
        fresh = []
        for positioned in events:
            applied = self.applied_offsets.get(positioned.partition)
            if applied is None or positioned.offset > applied:
                fresh.append(positioned)
        return fresh


@dataclass(frozen=True, slots=True)
class CustomerWrite:
    """The new record of one customer after a batch from one partition."""

    customer_id: str
    expected_version: int | None
    """The record version read (None: the customer was new); the commit fails if it moved."""
    offsets: dict[int, int]
    """Per source partition, the new applied offset."""
    state: CustomerState
    extras: dict[str, bytes] = field(default_factory=dict)
    outbox: dict[str, bytes] = field(default_factory=dict)
    state_bytes: bytes = field(init=False, repr=False, compare=False)
    """``state`` encoded once, for both the commit and the writer's record cache."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_bytes", encode_state(self.state))


# The state is stored positionally (no field names: ~230 bytes less per customer), led by a
# format number; a new field is appended at the end and older records decode with its default.
STATE_FORMAT = 1
_STATE_FIELDS = tuple(f.name for f in fields(CustomerState))


def encode_state(state: CustomerState) -> bytes:
    """The stored bytes of a state (deterministic: same state, same bytes)."""
    return msgpack.packb([STATE_FORMAT, *(getattr(state, name) for name in _STATE_FIELDS)], use_bin_type=True)


def decode_state(raw: bytes) -> CustomerState:
    """Inverse of ``encode_state``."""
    values = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if not isinstance(values, list) or not values or values[0] != STATE_FORMAT:
        raise ValueError(
            f"stored customer state has an unknown format ({values[:1] if values else values!r})"
        )
    if len(values) == len(_STATE_FIELDS) + 1:  # the current format: positional is the fast path
        return CustomerState(*values[1:])
    return CustomerState(**dict(zip(_STATE_FIELDS, values[1:], strict=False)))


def _commit_args(write: CustomerWrite) -> list[bytes | str | int]:
    """One customer's part of a commit call: expected version, pair count, field/value pairs."""
    pairs: list[bytes | str | int] = []
    for partition, new in sorted(write.offsets.items()):
        pairs += [offset_field(partition), str(new)]
    pairs += [STATE_FIELD, write.state_bytes]
    for name, value in write.extras.items():
        pairs += [extra_field(name), value]
    for entry_id, value in write.outbox.items():
        pairs += [outbox_field(entry_id), value]
    expected = "" if write.expected_version is None else str(write.expected_version)
    return [expected, len(pairs) // 2, *pairs]


def _parse_record(customer_id: str, raw: dict[bytes, bytes]) -> CustomerRecord:
    record = CustomerRecord(customer_id=customer_id)
    for key_bytes, value in raw.items():
        key = key_bytes.decode()
        if key == VERSION_FIELD:
            record.version = int(value)
        elif key == STATE_FIELD:
            record.state = decode_state(value)
        elif key.startswith(OFFSET_FIELD_PREFIX):
            record.applied_offsets[int(key[len(OFFSET_FIELD_PREFIX) :])] = int(value)
        elif key.startswith(EXTRA_FIELD_PREFIX):
            record.extras[key[len(EXTRA_FIELD_PREFIX) :]] = value
        elif key.startswith(OUTBOX_FIELD_PREFIX):
            record.outbox[key[len(OUTBOX_FIELD_PREFIX) :]] = value
    return record


class RedisFeatureStore:
    """Customer records in Redis, keyed ``<prefix>:c:{<customer_id>}``."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str = "sf",
        ttl_seconds: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_seconds = ttl_seconds
        self._commit_sha: str | None = None
        self._clock = clock
        self.population = PopulationStats(client, prefix)
        self.on_round_trip: Callable[[float], None] | None = None
        """Called with the seconds of each pipelined round trip of ``load``, ``commit`` and
        ``clear_outbox`` that succeeded (the worker's ``segflow_redis_call_seconds``)."""

    @property
    def prefix(self) -> str:
        """The key prefix of this store."""
        return self._prefix

    @property
    def client(self) -> Redis | RedisCluster:
        """The underlying Redis client."""
        return self._client

    def key(self, customer_id: str) -> str:
        """The Redis key of one customer."""
        return customer_key(self._prefix, customer_id)

    async def load(self, customer_ids: Sequence[str]) -> dict[str, CustomerRecord]:
        """Read the records of ``customer_ids`` in one pipelined round trip."""
        if not customer_ids:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                pipe.hgetall(self.key(customer_id))
            replies = await self._execute(pipe)
        return {cid: _parse_record(cid, raw) for cid, raw in zip(customer_ids, replies, strict=True)}

    async def _execute(self, pipe: Any) -> list[Any]:
        """Run a queued pipeline in one round trip, timed for ``on_round_trip``."""
        started = time.perf_counter()
        replies: list[Any] = await pipe.execute()
        if self.on_round_trip is not None:
            self.on_round_trip(time.perf_counter() - started)
        return replies

    async def get(self, customer_id: str) -> CustomerRecord | None:
        """One customer's record, or None when the store has never seen them."""
        # The client does not decode responses: the hash's fields and values are bytes.
        raw = cast("dict[bytes, bytes]", await self._client.hgetall(self.key(customer_id)))
        return _parse_record(customer_id, raw) if raw else None

    async def _script_sha(self, reload: bool = False) -> str:
        # SCRIPT LOAD on a cluster client reaches every primary, so EVALSHA works on any slot.
        if self._commit_sha is None or reload:
            self._commit_sha = await self._client.script_load(_COMMIT_LUA)
        return self._commit_sha

    async def commit(
        self,
        writes: Sequence[CustomerWrite],
        unchanged: dict[str, CustomerState] | None = None,
        also: Callable[[Any], None] | None = None,
        clear: dict[str, Sequence[str]] | None = None,
        reload: Callable[[], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Write every customer in one pipelined round trip (on a single server, one MULTI/EXEC
        transaction); return the ids that lost the CAS.

        The same round trip sets the population scores of the written customers and of
        ``unchanged`` ones (e.g. redelivered), so a crash between commit and ranking heals.
        ``also`` may add idempotent commands of the caller's (e.g. index updates) to it, and
        ``clear`` names delivered outbox entries to forget first (``{customer_id: [entry ids]}``),
        so that a steady stream of batches costs one round trip each. ``reload`` loads the
        scripts ``also`` runs, when Redis lost its script cache (then the round trip is redone).
        """
        if not writes and not unchanged and not clear:
            return []
        try:
            return await self._commit_pipelined(
                writes, unchanged or {}, await self._script_sha(), also, clear
            )
        except NoScriptError:  # e.g. a node restarted or failed over and lost its script cache
            sha = await self._script_sha(reload=True)
            if reload is not None:
                await reload()
            return await self._commit_pipelined(writes, unchanged or {}, sha, also, clear)

    async def _commit_pipelined(
        self,
        writes: Sequence[CustomerWrite],
        unchanged: dict[str, CustomerState],
        sha: str,
        also: Callable[[Any], None] | None,
        clear: dict[str, Sequence[str]] | None,
    ) -> list[str]:
        # EVALSHA through execute_command: redis-py's cluster pipeline refuses .evalsha() but
        # routes a raw EVALSHA by its key. On one server a single call commits the whole batch
        # (per customer one HGET and one HSET inside); on a cluster, one call per customer.
        # On one server the round trip is a MULTI/EXEC: Redis refuses a write past maxmemory only
        # before it starts, so a full Redis cannot commit the customers but not their indexes.
        cluster = isinstance(self._client, RedisCluster)
        async with self._client.pipeline(transaction=not cluster) as pipe:
            cleared = self._queue_clear(pipe, clear or {})
            per_call = 1 if cluster else max(1, len(writes))
            calls = 0
            for start in range(0, len(writes), per_call):
                chunk = writes[start : start + per_call]
                args: list[bytes | str | int] = [self._ttl_seconds]
                for write in chunk:
                    args += _commit_args(write)
                keys = [self.key(write.customer_id) for write in chunk]
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
                calls += 1
            ranked = {**unchanged, **{w.customer_id: w.state for w in writes}}
            self.population.queue_updates(pipe, ranked, self._clock(), track_seen=self._ttl_seconds > 0)
            if also is not None:
                also(pipe)
            replies = (await self._execute(pipe))[cleared : cleared + calls]
        versions = [int(version) for reply in replies for version in reply]
        return [w.customer_id for w, version in zip(writes, versions, strict=True) if version == 0]

    def _queue_clear(self, pipe: Any, sent: dict[str, Sequence[str]]) -> int:
        queued = 0
        for customer_id, entry_ids in sent.items():
            if entry_ids:
                pipe.hdel(self.key(customer_id), *(outbox_field(e) for e in entry_ids))
                queued += 1
        return queued

    async def clear_outbox(
        self, sent: dict[str, Sequence[str]], also: Callable[[Any], None] | None = None
    ) -> None:
        """Forget outbox entries once delivered: ``{customer_id: [entry ids]}``, one round trip
        (``also`` may add the caller's commands that go with the removal)."""
        if not any(sent.values()):
            return
        async with self._client.pipeline(transaction=False) as pipe:
            self._queue_clear(pipe, sent)
            if also is not None:
                also(pipe)
            await self._execute(pipe)
