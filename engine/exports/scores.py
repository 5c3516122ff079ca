"""``segflow scores export``: every customer's features, scores and segments as of event time T.

Customers are read in pipelined batches (``BATCH`` records a round trip, found by ``SCAN``).
For each customer whose latest event is at or before T:

* the catalogue's features at T (windows and ages move on to T, as a tick would see them);
* every model's score at T from the sealed model snapshot a decision at T reads (the same
  version the worker would use), blank while the model is warming up; one matrix product a batch;
* the BTYD scores at T from the population snapshot of T (``engine.stream.rule_scores``);
* the latest ``score`` event of each external model of ``SEGFLOW_EXTERNAL_SCORES``;
* the customer's segment in every family as last judged (memberships move only when the worker
  judges them; a customer judged after T is not exported, see below).

A customer with an event after T is skipped and counted (their state already includes it:
features as of an earlier moment cannot be recovered from it). T defaults to the newest event
time the workers committed. Nothing else is written to Redis.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.app import build_pipeline
from engine.redis_clients import redis_client
from engine.settings import Settings, split_list
from engine.stream.lifetime_inputs import model_row, reads_lifetime
from engine.stream.pipeline import SegmentPipeline
from engine.stream.rule_scores import lifetime_names, lifetime_scores
from features.catalogue import snapshot
from features.redis_store import CustomerRecord

BATCH = 1000


@dataclass(slots=True)
class ExportCounts:
    """What the export read and wrote."""

    read: int = 0
    written: int = 0
    after_as_of: int = 0
    """Customers with an event after T (not exported)."""
    other_segment: int = 0
    """Customers outside ``--segment`` (not exported)."""
    no_state: int = 0
    warming_up: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """The columns of an export and the moment it is taken at."""

    as_of: float
    features: tuple[str, ...]
    models: tuple[str, ...]
    lifetime: tuple[str, ...]
    families: tuple[str, ...]
    external: tuple[str, ...] = ()
    """``SEGFLOW_EXTERNAL_SCORES``: the customer's latest ``score`` event of each, if any."""

    @property
    def columns(self) -> list[str]:
        """The header, in order."""
        return [
            "customer_id",
            *self.features,
            *(f"score_{m}" for m in self.models),
            *(f"score_{n}" for n in self.lifetime),
            *(f"score_{n}" for n in self.external),
            *(f"segment_{f}" for f in self.families),
        ]


async def export_rows(
    settings: Settings,
    as_of: float | None,
    segment: tuple[str, str] | None,
    on_plan: Callable[[ExportPlan], None],
    counts: ExportCounts,
    progress: Callable[[int], None] | None = None,
) -> AsyncIterator[list[Any]]:
    """Yield one row per exported customer (``on_plan`` gets the columns first; ``counts`` fills)."""
    client = redis_client(settings)
    try:
        pipeline = build_pipeline(settings, client)
        moment = as_of if as_of is not None else await pipeline.clock.furthest_newest()
        if moment is None:
            raise ValueError("nothing to export: no worker has committed an event yet (give --as-of)")
        families = tuple(f.name for f in pipeline.rules.families)
        if segment is not None and segment[0] not in families:
            raise ValueError(f"unknown family {segment[0]!r}; known: {', '.join(families)}")
        version = pipeline.models.version_of(moment)
        if not await pipeline.models.ensure(version, version):
            at = datetime.fromtimestamp(moment, tz=UTC).isoformat()
            raise ValueError(
                f"the model snapshot a decision at {at} reads is not sealed yet; give an earlier --as-of"
            )
        models = pipeline.models.loaded(version)
        day = pipeline.population.version_of(moment)
        if not await pipeline.population.ensure(day, day):
            pipeline.population.lenient = True  # not sealed: no quintiles, no BTYD, as for the worker
        fit = pipeline.population.cuts_at(moment).lifetime
        step = pipeline.step
        horizon = step.config.lifetime_horizon_days
        plan: ExportPlan | None = None
        input_names = step.config.input_names
        async for records in record_batches(pipeline):
            counts.read += len(records)
            kept: list[tuple[CustomerRecord, dict[str, str | None]]] = []
            for record in records:
                state = record.state
                if state is None:
                    counts.no_state += 1
                    continue
                if state.last_ts > moment:
                    counts.after_as_of += 1
                    continue
                segments = step.placements(record)
                if segment is not None and segments.get(segment[0]) != segment[1]:
                    counts.other_segment += 1
                    continue
                kept.append((record, segments))
            if not kept:
                continue
            snaps = [
                snapshot(r.customer_id, r.state, step.config.features, moment)  # type: ignore[arg-type]
                for r, _ in kept
            ]
            lifetimes = [lifetime_scores(fit, r.state, moment, horizon) for r, _ in kept]  # type: ignore[arg-type]
            inputs = lifetimes if reads_lifetime(input_names) else [None] * len(kept)
            scored = models.score_rows(
                [model_row(s.raw, input_names, i, horizon) for s, i in zip(snaps, inputs, strict=True)]
            )
            if plan is None:
                names = tuple(models.names)
                external = tuple(n for n in split_list(settings.external_scores) if n not in names)
                plan = ExportPlan(moment, tuple(snaps[0]), names, lifetime_names(horizon), families, external)
                on_plan(plan)
            for (record, segments), features, scores, btyd in zip(
                kept, snaps, scored, lifetimes, strict=True
            ):
                yield [
                    record.customer_id,
                    *(_plain(features.get(name)) for name in plan.features),
                    *(scores[m] if m in models.ready else None for m in plan.models),
                    *(btyd.get(n) for n in plan.lifetime),
                    *(_external(record, n) for n in plan.external),
                    *(segments.get(f) for f in plan.families),
                ]
                counts.written += 1
            if progress is not None:
                progress(len(records))
        counts.warming_up = sorted(set(models.names) - set(models.ready))
    finally:
        await client.aclose()


async def record_batches(pipeline: SegmentPipeline) -> AsyncIterator[list[CustomerRecord]]:
    """Every customer record, ``BATCH`` at a time (SCAN, then one pipelined read)."""
    store = pipeline.store
    pattern = f"{store.prefix}:c:*"
    ids: list[str] = []
    async for key in store.client.scan_iter(match=pattern, count=BATCH):
        text = key.decode() if isinstance(key, bytes) else key
        ids.append(text[text.index("{") + 1 : text.rindex("}")])
        if len(ids) >= BATCH:
            yield list((await store.load(ids)).values())
            ids = []
    if ids:
        yield list((await store.load(ids)).values())


def _external(record: CustomerRecord, name: str) -> float | None:
    entry = record.state.external_scores.get(name) if record.state is not None else None
    return None if entry is None else float(entry[0])


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
