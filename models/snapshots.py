"""The learner's sealed model snapshots and label frontiers in Redis, and how a worker reads them.

===============================  ============================================================
key                              holds
===============================  ============================================================
``<prefix>:labels:frontier``     hash: source partition -> event time F such that every label
                                 of that partition with due_ts < F is on the labels topic
                                 (written by workers with ``write_frontier``; never lowered)
``<prefix>:msnap:<k>``           the snapshot of version k (msgpack, ``models.learner``): the
                                 models after every label with due_ts < (k+1) * period
``<prefix>:msnap:sealed``        the highest sealed version, set after its snapshot
``<prefix>:learner:report``      hash: the learner's counters, lag and model reports, each
                                 field's value as JSON text
===============================  ============================================================

Versions are contiguous from the first one with a snapshot; a version at or below the sealed
one without a snapshot came before any label was due: its models are untrained.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import msgpack
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from models.checkpoint import load_checkpoint
from models.learner import SNAPSHOT_SCHEMA
from models.outcome_messages import OutcomeTally
from models.vectorized import LinearSnapshot, SnapshotScorer, contributions

READABLE_SCHEMAS = (2, SNAPSHOT_SCHEMA)
"""Schema 2 snapshots (before outcome tallies) still read, with no outcomes."""
_FRONTIER_LUA = resources.files("models").joinpath("lua/frontier.lua").read_text()
_SEALED_LUA = resources.files("models").joinpath("lua/sealed.lua").read_text()
Client = Redis | RedisCluster


def frontier_key(prefix: str) -> str:
    """The hash of label frontiers per source partition."""
    return f"{prefix}:labels:frontier"


def snapshot_key(prefix: str, version: int) -> str:
    """The snapshot of one version."""
    return f"{prefix}:msnap:{version}"


def sealed_key(prefix: str) -> str:
    """The highest sealed version."""
    return f"{prefix}:msnap:sealed"


def report_key(prefix: str) -> str:
    """The learner's report hash."""
    return f"{prefix}:learner:report"


@dataclass(frozen=True, slots=True)
class SnapshotModel:
    """One model of a snapshot: a ``LinearSnapshot``, or the River estimator of other kinds.

    ``ready``: the learner found it ready for the rules when it sealed the snapshot
    (``models.readiness``); otherwise ``warming_up_reason`` says why not.
    """

    name: str
    task: str
    labels_learned: int
    linear: LinearSnapshot | None
    river: Any = None
    ready: bool = False
    warming_up_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedSnapshot:
    """A sealed version's models and metrics, ready to score."""

    version: int
    period_seconds: float
    input_names: tuple[str, ...]
    fingerprint: str
    labels_learned_total: int
    models: dict[str, SnapshotModel]
    metrics: dict[str, dict[str, Any]]
    outcomes: tuple[OutcomeTally, ...] = ()
    """The decision outcomes sealed through this version (``models.outcome_messages``)."""

    def scorer(self) -> SnapshotScorer:
        """A scorer of model-input rows (``input_names`` order) against every model."""
        entries = {
            m.name: (m.task, m.linear if m.linear is not None else m.river) for m in self.models.values()
        }
        return SnapshotScorer(entries, self.input_names)

    def contributions(self, model: str, row: Any, k: int = 3) -> list[tuple[str, float]] | None:
        """The top-``k`` weight x scaled input of ``row`` for a linear model (None for others)."""
        linear = self.models[model].linear
        return None if linear is None else contributions(linear, row, self.input_names, k)


def decode_snapshot(blob: bytes, key: bytes | None = None) -> DecodedSnapshot:
    """A published snapshot; ``key`` verifies the River models of kinds that are not linear.

    Raises ``ValueError`` for an unknown schema, and ``CheckpointError`` (a ``ValueError``)
    for a River model that does not verify or when no key was given for one.
    """
    data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    if not isinstance(data, dict) or data.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"not a schema-{SNAPSHOT_SCHEMA} (or 2) model snapshot")
    models = {}
    for name, entry in data["models"].items():
        linear, river = None, None
        if entry["kind"] == "linear":
            linear = LinearSnapshot.from_dict(entry["linear"])
        else:
            if key is None:
                raise ValueError(
                    f"snapshot model {name!r} is a signed River model: the checkpoint key is needed"
                )
            river = load_checkpoint(entry["blob"], key)[0][name]
        reason = entry["warming_up_reason"]
        models[name] = SnapshotModel(
            name,
            entry["task"],
            int(entry["labels_learned"]),
            linear,
            river,
            ready=bool(entry["ready"]),
            warming_up_reason=None if reason is None else str(reason),
        )
    return DecodedSnapshot(
        version=int(data["version"]),
        period_seconds=float(data["period_seconds"]),
        input_names=tuple(data["input_names"]),
        fingerprint=str(data["fingerprint"]),
        labels_learned_total=int(data["labels_learned_total"]),
        models=models,
        metrics=dict(data["metrics"]),
        outcomes=tuple(OutcomeTally.from_wire(row) for row in data.get("outcomes", ())),
    )


async def write_frontier(client: Client, prefix: str, frontiers: Mapping[int, float]) -> int:
    """Raise the label frontiers of source partitions (partition -> event time); never lowers one.

    Call it only after every label of the partition due before the value was acked by the
    labels topic. Returns how many partitions' frontiers moved. Raises ``ValueError`` for NaN.
    """
    if not frontiers:
        return 0
    args: list[str] = []
    for partition, ts in frontiers.items():
        if math.isnan(ts) or ts == -math.inf:
            raise ValueError(f"frontier of partition {partition} must be a number, got {ts!r}")
        args += [str(int(partition)), repr(float(ts))]
    script = client.register_script(_FRONTIER_LUA)
    return int(await script(keys=[frontier_key(prefix)], args=args))


async def read_frontier(client: Client, prefix: str) -> dict[int, float]:
    """Every source partition's label frontier (unreadable fields are left out)."""
    out = {}
    for field, value in (await client.hgetall(frontier_key(prefix))).items():
        try:
            out[int(field)] = float(value)
        except ValueError:
            continue
    return out


async def raise_sealed(client: Client, prefix: str, version: int) -> int:
    """Set the sealed version to ``version`` unless it is higher already; the one in force."""
    script = client.register_script(_SEALED_LUA)
    return int(await script(keys=[sealed_key(prefix)], args=[str(int(version))]))


class ModelSnapshotStore:
    """What a worker reads of the learner: the sealed version, snapshots (cached) and the report."""

    def __init__(self, client: Client, prefix: str, key: bytes | None = None, cache_size: int = 8) -> None:
        """``key`` (``engine.app.checkpoint_key``) is needed only for models that are not linear."""
        self._client = client
        self._prefix = prefix
        self._key = key
        self._cache: OrderedDict[int, DecodedSnapshot] = OrderedDict()
        self._cache_size = max(1, cache_size)

    async def sealed_version(self) -> int | None:
        """The highest sealed version, or None before the learner sealed any."""
        value = await self._client.get(sealed_key(self._prefix))
        return int(value) if value is not None else None

    async def load(self, version: int) -> DecodedSnapshot | None:
        """The snapshot of ``version``; None when there is none (not sealed yet, or untrained).

        A sealed snapshot never changes, so decoded ones are kept (the most recent
        ``cache_size``).
        """
        cached = self._cache.get(version)
        if cached is not None:
            self._cache.move_to_end(version)
            return cached
        # The client does not decode responses: a stored value is bytes.
        blob = cast("bytes | None", await self._client.get(snapshot_key(self._prefix, version)))
        if blob is None:
            return None
        snapshot = decode_snapshot(bytes(blob), self._key)
        self._cache[version] = snapshot
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return snapshot

    async def report(self) -> dict[str, Any]:
        """The learner's report (empty before its first seal); see ``engine.learner.service``."""
        raw = await self._client.hgetall(report_key(self._prefix))
        return {_text(field): json.loads(value) for field, value in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
