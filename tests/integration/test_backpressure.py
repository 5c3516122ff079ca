"""While Redis is down the worker waits with bounded memory, then resumes by itself (#14).

A backlog of ~60k events (~6 MB of msgpack on the topic) waits behind a worker when the stack's
Redis is stopped with the stack's own script, for 20 s. Meanwhile the worker's resident memory is
sampled: it must stay within half the backlog's raw size of what it was when Redis stopped (the
batch in flight is retried; the consumer is not polled, so aiokafka holds at most one prefetched
fetch of 64 KiB per partition). Fetching on would cost more than the raw bytes: every record
becomes Python objects (holding this backlog as records took ~18 MB of RSS, measured once).
``/segflow/ready`` answers 503 with a redis reason during the outage and 200 after it, without
a restart. Then the worker catches up by itself: the group's committed offsets reach the end of
every partition and every customer's stored event count equals their events in the produced
stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import msgpack
import psutil
import pytest
from determinism_runs import produce, read_store, remove
from helpers import all_committed, group_progress, ready, wait_until

from engine.settings import Settings
from engine.stack import redis as redis_server
from engine.worker_process import free_port, read_metrics, start_worker, stop_worker
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration

POPULATION = PopulationConfig(customers=1500, days=20, seed=3)
OUTAGE_SECONDS = 20.0
FETCH_PARTITION_BYTES = 1 << 16
CATCH_UP_TIMEOUT = 300.0
APPLIED = "segflow_events_applied_total"


def test_a_redis_outage_holds_memory_and_readiness_then_the_worker_resumes(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings.model_copy(
        update={
            "web_port": free_port(),
            "idle_advance_seconds": 3600.0,
            "fetch_partition_bytes": FETCH_PARTITION_BYTES,
        }
    )
    events = list(generate_events(POPULATION))
    produced = Counter(e["customer_id"] for e in events)
    sizes = [len(msgpack.packb(e)) for e in events]
    write_jsonl(events, tmp_path / "events.jsonl")
    stopped = False
    try:
        assert asyncio.run(produce(settings, tmp_path / "events.jsonl")) == len(events)
        worker = start_worker(settings, tmp_path / "worker.log")
        try:
            assert wait_until(
                lambda: read_metrics(settings.web_port, settings.web_secret).get(APPLIED, 0) >= 3000, 120
            ), (tmp_path / "worker.log").read_text()[-2000:]
            redis_server.down(settings)
            stopped = True
            applied = read_metrics(settings.web_port, settings.web_secret).get(APPLIED, 0)
            backlog_bytes = sum(sizes) * (len(events) - applied) // len(events)
            assert backlog_bytes > 10 * FETCH_PARTITION_BYTES * settings.events_partitions, backlog_bytes
            process = psutil.Process(worker.pid)
            at_stop = process.memory_info().rss
            peak, answers, counted = at_stop, [], set()
            until = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < until:
                peak = max(peak, process.memory_info().rss)
                answers.append(ready(settings))
                counted.add(read_metrics(settings.web_port, settings.web_secret).get(APPLIED, 0))
                time.sleep(0.5)
            grew = peak - at_stop
            assert grew < backlog_bytes // 2, (grew, backlog_bytes)
            # Nothing was processed meanwhile (but the batch that was finishing when Redis stopped).
            assert len(counted) <= 2, sorted(counted)
            down = [body for status, body in answers if status == 503]
            assert down and any(r.startswith("redis: ") for r in down[-1]["reasons"]), answers[-1]

            redis_server.up(settings)
            stopped = False
            assert wait_until(lambda: ready(settings)[0] == 200, 60), ready(settings)
            assert wait_until(
                lambda: all_committed(asyncio.run(group_progress(settings))), CATCH_UP_TIMEOUT, 1
            ), asyncio.run(group_progress(settings))
            retries = read_metrics(settings.web_port, settings.web_secret).get(
                "segflow_batch_retries_total", 0
            )
            assert retries > 0
        finally:
            if stopped:
                redis_server.up(settings)
            assert stop_worker(worker) == 0
        after = asyncio.run(read_store(settings, sorted(produced)))
        stored = {cid: s.events + s.late_dropped for cid, s in after.states.items() if s is not None}
        assert stored == dict(produced)
    finally:
        asyncio.run(remove(settings))
