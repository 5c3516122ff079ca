"""``segflow evaluate`` and a worker give the same model metrics on the same stream.

A real worker (real Kafka, real Redis, its embedded learner) and the evaluation replay (no
Kafka: ``engine.evaluate.replay_stream``) each process the same simulated stream under their own
namespace. Every sealed model snapshot carries the learner's prequential and holdout metrics at
its seal; for every version both sealed, the metrics must be identical, as must the models.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgpack
import pytest
from helpers import wait_until

from engine.cli.io import produce_lines
from engine.evaluate import as_records, replay_stream
from engine.settings import Settings, namespaced
from engine.topics import ensure_topics
from engine.worker_process import free_port, read_metric, start_worker, stop_worker
from features.client import connect
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl
from models.snapshots import decode_snapshot, snapshot_key

pytestmark = pytest.mark.integration
POPULATION = PopulationConfig(customers=150, days=75, seed=3)


async def snapshots(settings: Settings) -> tuple[int | None, dict[int, bytes]]:
    client = connect(settings.redis_url)
    try:
        sealed = await client.get(f"{settings.key_prefix}:msnap:sealed")
        keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:msnap:*", count=1000)]
        blobs = {}
        for key in keys:
            version = key.decode().rsplit(":", 1)[1]
            if version.isdigit():
                blobs[int(version)] = await client.get(snapshot_key(settings.key_prefix, int(version)))
        return (None if sealed is None else int(sealed)), blobs
    finally:
        await client.aclose()


def test_evaluate_and_the_worker_learn_the_same_models_with_the_same_metrics(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings.model_copy(update={"web_port": free_port(), "idle_advance_seconds": 3600.0})
    events = list(generate_events(POPULATION))
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce_lines(settings, path, "jsonl", "msgpack", False, settings.events_topic))
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        done = wait_until(lambda: read_metric(settings, "segflow_events_applied_total") >= len(events), 300)
        assert done, (tmp_path / "worker.log").read_text()[-2000:]
        before = -1
        while (now := asyncio.run(snapshots(settings))[0] or 0) != before:  # until sealing settles
            before = now
            wait_until(lambda: False, 3)
    finally:
        stop_worker(worker)
    worker_sealed, worker_blobs = asyncio.run(snapshots(settings))

    tag = uuid.uuid4().hex[:10]
    scratch = namespaced(settings, f"parity-{tag}", f"par{tag}")
    payloads = ((e["customer_id"].encode(), msgpack.packb(e)) for e in events)
    asyncio.run(replay_stream(scratch, as_records(scratch, payloads)))
    evaluate_sealed, evaluate_blobs = asyncio.run(snapshots(scratch))

    assert worker_sealed is not None and evaluate_sealed is not None and evaluate_sealed >= worker_sealed
    common = sorted(set(worker_blobs) & set(evaluate_blobs))
    assert common and max(common) == worker_sealed, (worker_sealed, sorted(worker_blobs)[-3:])
    for version in common:
        ours, theirs = decode_snapshot(worker_blobs[version]), decode_snapshot(evaluate_blobs[version])
        assert ours.metrics == theirs.metrics, version
        assert ours.labels_learned_total == theirs.labels_learned_total > 0 or version < max(common)
        assert worker_blobs[version] == evaluate_blobs[version], version  # the very same models
    last = decode_snapshot(worker_blobs[worker_sealed]).metrics["churn"]
    assert last["holdout"]["n"] > 0 and last["prequential"]["n"] > 0
