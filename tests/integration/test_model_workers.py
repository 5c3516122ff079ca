"""The population's models with real worker processes, real Kafka and real Redis.

Every worker also stands by as the learner (``SEGFLOW_LEARNER_EMBEDDED``); the one holding the
lease learns the labels topic and seals model snapshots, which every worker scores with.

* Kill a worker (SIGKILL) and start another: a sealed snapshot scores the same input the same
  (it never changes once sealed), and the new worker takes the learner's lease and goes on.
* Two workers: exactly one of them is the active learner; when it stops, the other takes over
  and seals the snapshots the later events need.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import page_token, wait_until

from engine.cli.io import produce_lines
from engine.settings import Settings
from engine.topics import ensure_topics
from engine.web_auth import page_request
from engine.worker_process import free_port, read_metric, start_worker, stop_worker
from features.catalogue import snapshot
from features.client import connect
from features.config import FeatureConfig
from features.redis_store import RedisFeatureStore
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration


T0_MS = 1_767_225_600_000
DAY_MS = 86_400_000


def models_page(port: int) -> dict[str, Any]:
    try:
        request = page_request(f"http://127.0.0.1:{port}/segflow/models", page_token())
        with urllib.request.urlopen(request, timeout=3) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def predict(port: int, version: int, features: dict[str, Any]) -> dict[str, float]:
    body = json.dumps({"version": version, "features": features}).encode()
    request = page_request(f"http://127.0.0.1:{port}/segflow/models/predict", page_token(), body)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["scores"]


def learner_owner(port: int) -> str | None:
    return (models_page(port).get("learner") or {}).get("owner")


def produce_population(
    settings: Settings, tmp_path: Path, customers: int, days: int, keep: Any = None
) -> int:
    events = list(generate_events(PopulationConfig(customers=customers, days=days, seed=17)))
    if keep is not None:
        events = [e for e in events if keep(e)]
    path = tmp_path / f"events-{len(events)}.jsonl"
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


def test_a_killed_worker_is_replaced_by_one_that_predicts_the_same(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings.model_copy(update={"web_port": free_port(), "idle_advance_seconds": 3600.0})
    total = produce_population(settings, tmp_path, customers=120, days=75)
    first = start_worker(settings, tmp_path / "first.log")
    try:
        done = wait_until(lambda: read_metric(settings, "segflow_events_applied_total") >= total, 240)
        assert done, (tmp_path / "first.log").read_text()[-2000:]
        assert wait_until(
            lambda: (models_page(settings.web_port).get("learner") or {}).get("labels_learned"), 30
        )
        page = models_page(settings.web_port)
        version = page["sealed_version"]
        features = asyncio.run(probe_features(settings, "c000007"))
        before = predict(settings.web_port, version, features)
        owner = learner_owner(settings.web_port)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        stop_worker(first)

    second = start_worker(settings, tmp_path / "second.log")
    try:
        assert wait_until(lambda: models_page(settings.web_port) != {}, 60), (
            tmp_path / "second.log"
        ).read_text()
        assert predict(settings.web_port, version, features) == before
        assert learner_owner(settings.web_port) == owner  # until the new learner seals anything
    finally:
        stop_worker(second)


def test_one_worker_learns_and_another_takes_over(isolated_settings: Settings, tmp_path: Path) -> None:
    ports = (free_port(), free_port())
    settings = isolated_settings.model_copy(update={"learner_lease_seconds": 3.0})
    half = T0_MS + 30 * DAY_MS
    total = produce_population(settings, tmp_path, customers=80, days=60, keep=lambda e: e["ts"] < half)
    workers = [
        start_worker(settings.model_copy(update={"web_port": port}), tmp_path / f"w{i}.log")
        for i, port in enumerate(ports)
    ]
    try:

        def applied() -> int:
            return sum(
                read_metric(settings.model_copy(update={"web_port": port}), "segflow_events_applied_total")
                for port in ports
            )

        assert wait_until(lambda: applied() >= total, 240), [models_page(p) for p in ports]
        assert wait_until(lambda: learner_owner(ports[0]) is not None, 30)
        owners = {learner_owner(port) for port in ports}
        assert len(owners) == 1  # both see the same, single active learner
        [owner] = owners
        active = next(i for i in range(2) if f":{workers[i].pid}:" in str(owner))
        sealed = models_page(ports[active])["sealed_version"]
        stop_worker(workers[active])
        survivor = ports[1 - active]

        later = produce_population(settings, tmp_path, customers=80, days=60, keep=lambda e: e["ts"] >= half)
        assert later > 0
        assert wait_until(lambda: learner_owner(survivor) not in (None, owner), 120), models_page(survivor)
        assert f":{workers[1 - active].pid}:" in str(learner_owner(survivor))
        assert wait_until(lambda: (models_page(survivor).get("sealed_version") or 0) > sealed + 20, 240), (
            models_page(survivor)
        )
    finally:
        for worker in workers:
            stop_worker(worker)
