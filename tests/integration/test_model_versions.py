"""Scores come from the sealed snapshot the change event names, and snapshots ignore partitioning.

One simulated stream is replayed without Kafka (``engine.stream.replay`` with the in-process
learner) on the real Redis, once over 8 events partitions and once over 1:

* every change event caused by an event is re-scored independently: the customer's own events up
  to the causing one are applied to a fresh state in plain Python, the model input is read from
  the feature snapshot at the decision moment, and the snapshot of the change's
  ``model_version`` (fetched from Redis) scores it: the same value as the change reports;
* every model snapshot both runs sealed is the same bytes (so the same weights, exactly), and
  the models did learn.
"""

from __future__ import annotations

import asyncio
import calendar
import time
import uuid
from typing import Any

import msgpack
import numpy as np
import pytest

from engine.app import feature_config, model_inputs
from engine.evaluate import as_records, replay_stream
from engine.settings import Settings, namespaced
from engine.stream.batch_records import SEGMENT_CHANGE
from engine.stream.rule_scores import lifetime_names
from features.catalogue import snapshot
from features.client import connect
from features.state import CustomerState, apply_event
from models.inputs import snapshot_row
from models.population import PopulationConfig
from models.simulate import generate_events, to_event
from models.snapshots import decode_snapshot, snapshot_key

pytestmark = pytest.mark.integration
POPULATION = PopulationConfig(customers=80, days=70, seed=21)


def run(settings: Settings, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[int, bytes]]:
    """Replay ``events``; the change events emitted and every snapshot blob, by version."""
    payloads = ((e["customer_id"].encode(), msgpack.packb(e)) for e in events)
    _learner, outputs = asyncio.run(replay_stream(settings, as_records(settings, payloads)))

    async def blobs() -> dict[int, bytes]:
        client = connect(settings.redis_url)
        try:
            out = {}
            async for key in client.scan_iter(match=f"{settings.key_prefix}:msnap:*", count=1000):
                version = key.decode().rsplit(":", 1)[1]
                if version.isdigit():
                    out[int(version)] = await client.get(snapshot_key(settings.key_prefix, int(version)))
            keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
            return out
        finally:
            await client.aclose()

    changes = [msgpack.unpackb(c.payload) for c in outputs if c.kind == SEGMENT_CHANGE]
    return changes, asyncio.run(blobs())


def version_of(label: str, period_seconds: float) -> int:
    """The snapshot version of a change's ``model_version`` (the UTC start of its period)."""
    start = calendar.timegm(time.strptime(label, "%Y-%m-%dT%H:%MZ"))
    return round(start / period_seconds)


def rescored(
    settings: Settings, events: list[dict[str, Any]], change: dict[str, Any], blob: bytes
) -> dict[str, float]:
    """The change's scores recomputed from the raw events and the named snapshot alone."""
    config = feature_config(settings)
    own = [e for e in events if e["customer_id"] == change["customer_id"]]
    cause = change["cause"]["event_id"]
    state: CustomerState | None = None
    for wire in own[: [e["event_id"] for e in own].index(cause) + 1]:
        state, _ = apply_event(state, to_event(wire), config)
    assert state is not None
    features = snapshot(change["customer_id"], state, config, change["event_ts"] / 1000)
    names = model_inputs(settings)
    row = np.asarray([snapshot_row(features.raw, names)], dtype=np.float64)
    models = decode_snapshot(blob)
    scores = models.scorer().score(row)[0]
    return dict(zip(models.scorer().model_names, (float(s) for s in scores), strict=True))


def test_scores_follow_the_named_snapshot_and_snapshots_ignore_partitioning(
    isolated_settings: Settings,
) -> None:
    events = list(generate_events(POPULATION))
    tag = uuid.uuid4().hex[:8]
    # About versions, not readiness: a model is ready once it learned a label, so that change
    # events of this short stream carry scores to check.
    ready_at_once = {"model_ready_min_labels": 0, "model_ready_require_auc": False}
    eight = namespaced(isolated_settings, f"mv8-{tag}", f"mv8{tag}").model_copy(
        update={"events_partitions": 8, **ready_at_once}
    )
    one = namespaced(isolated_settings, f"mv1-{tag}", f"mv1{tag}").model_copy(
        update={"events_partitions": 1, **ready_at_once}
    )
    changes, blobs = run(eight, events)
    _, blobs_one = run(one, events)

    common = sorted(set(blobs) & set(blobs_one))
    assert len(common) > 10
    assert all(blobs[v] == blobs_one[v] for v in common), [v for v in common if blobs[v] != blobs_one[v]][:3]
    assert decode_snapshot(blobs[common[-1]]).labels_learned_total > 100  # the models did learn

    checked = 0
    btyd = set(lifetime_names(eight.clv_days))  # served from the population snapshot, not a model
    for change in changes:
        scores = {name: row["score"] for name, row in change["scores"].items() if name not in btyd}
        if "event_id" not in change["cause"] or not scores:
            continue
        version = version_of(change["model_version"], eight.model_period_seconds)
        ready = {m.name for m in decode_snapshot(blobs[version]).models.values() if m.ready}
        assert set(scores) <= ready, change  # only the named snapshot's ready models reach changes
        again = rescored(eight, events, change, blobs[version])
        assert all(again[name] == pytest.approx(value, abs=5e-7) for name, value in scores.items()), change
        checked += 1
    assert checked > 20
