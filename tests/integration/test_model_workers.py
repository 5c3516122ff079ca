"""Model ownership with real worker processes, real Kafka and real Redis.

* Kill a worker (SIGKILL, no checkpoint since it started) and start another: the restored models
  (checkpoint + learn-box replay) give the same predictions for the same input as before.
* Two workers in one group: every partition's models are owned by exactly one of them, and the
  owner holds the partition's latest generation in Redis; when one stops, the other owns all.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from engine.cli.io import produce_lines
from engine.settings import Settings
from engine.topics import ensure_topics
from engine.worker_process import free_port, read_metric, start_worker, stop_worker
from features.catalogue import snapshot
from features.client import connect
from features.config import FeatureConfig
from features.redis_store import RedisFeatureStore
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl
from models.store import ModelStore

pytestmark = pytest.mark.integration


def models_page(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/segflow/models", timeout=3) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def predict(port: int, partition: int, features: dict[str, Any]) -> dict[str, float]:
    body = json.dumps({"partition": partition, "features": features}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/segflow/models/predict", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["scores"]


def produce_population(settings: Settings, tmp_path: Path, customers: int, days: int) -> int:
    events = list(generate_events(PopulationConfig(customers=customers, days=days, seed=17)))
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce_lines(settings, path, "jsonl", "msgpack", False, settings.events_topic))
    return len(events)


async def probe_features(settings: Settings, customer_id: str) -> dict[str, Any]:
    client = connect(settings.redis_url)
    try:
        record = await RedisFeatureStore(client, prefix=settings.key_prefix).get(customer_id)
    finally:
        await client.aclose()
    assert record is not None and record.state is not None
    return snapshot(customer_id, record.state, FeatureConfig()).as_dict()


async def generations(settings: Settings, partitions: int) -> dict[int, int]:
    client = connect(settings.redis_url)
    try:
        store = ModelStore(client, settings.key_prefix)  # type: ignore[arg-type]
        return {p: await store.generation(p) for p in range(partitions)}
    finally:
        await client.aclose()


def test_a_killed_worker_is_replaced_by_one_that_predicts_the_same(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings.model_copy(
        update={
            "web_port": free_port(),
            "checkpoint_interval_seconds": 3600.0,
            "idle_advance_seconds": 3600.0,
        }
    )
    total = produce_population(settings, tmp_path, customers=120, days=75)
    partitions = list(range(settings.events_partitions))
    first = start_worker(settings, tmp_path / "first.log")
    try:
        done = wait_until(lambda: read_metric(settings, "segflow_events_applied_total") >= total, 180)
        assert done, (tmp_path / "first.log").read_text()[-2000:]
        assert wait_until(lambda: models_page(settings.web_port).get("owned_partitions") == partitions, 30)
        time.sleep(2.0)  # let the last ticks finish
        learned = models_page(settings.web_port)["labels_learned"]
        assert sum(learned.values()) > 0, "no label matured: the test would prove nothing"
        features = asyncio.run(probe_features(settings, "c000007"))
        before = {p: predict(settings.web_port, p, features) for p in partitions}
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        stop_worker(first)

    second = start_worker(settings, tmp_path / "second.log")
    try:
        owned = wait_until(lambda: models_page(settings.web_port).get("owned_partitions") == partitions, 90)
        assert owned, (tmp_path / "second.log").read_text()[-2000:]
        status = models_page(settings.web_port)
        assert status["replayed_labels"] == sum(learned.values())  # nothing was checkpointed before
        assert status["labels_learned"] == learned
        after = {p: predict(settings.web_port, p, features) for p in partitions}
        assert after == before
    finally:
        stop_worker(second)


def test_two_workers_never_own_the_same_models(isolated_settings: Settings, tmp_path: Path) -> None:
    ports = (free_port(), free_port())
    settings = isolated_settings
    total = produce_population(settings, tmp_path, customers=80, days=40)
    workers = [
        start_worker(settings.model_copy(update={"web_port": port}), tmp_path / f"w{i}.log")
        for i, port in enumerate(ports)
    ]
    all_partitions = set(range(settings.events_partitions))
    try:

        def split_between_both() -> bool:
            owned = [set(models_page(port).get("owned_partitions", [])) for port in ports]
            return all(owned) and owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == all_partitions

        def applied() -> int:
            return sum(
                read_metric(settings.model_copy(update={"web_port": port}), "segflow_events_applied_total")
                for port in ports
            )

        assert wait_until(lambda: applied() >= total, 180)
        assert wait_until(split_between_both, 60), [models_page(p) for p in ports]
        pages = [models_page(port) for port in ports]
        stored = asyncio.run(generations(settings, settings.events_partitions))
        for page in pages:  # the owner holds the latest generation: a former owner's save is refused
            for partition, generation in page["generations"].items():
                assert stored[int(partition)] == generation

        stop_worker(workers[1])
        assert wait_until(
            lambda: set(models_page(ports[0]).get("owned_partitions", [])) == all_partitions, 60
        )
        assert models_page(ports[1]) == {}
    finally:
        for worker in workers:
            stop_worker(worker)
