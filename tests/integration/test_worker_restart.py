"""A worker stopped mid-stream (SIGTERM under load, or SIGKILL) loses and doubles nothing.

Real Kafka, real Redis, real worker processes: the first worker is stopped while it is busy,
a second one (same consumer group) takes over from the committed offsets, Kafka redelivers
what was not acked, and every customer's stored state must equal a recomputation from the
raw events in plain Python.
"""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import wait_until

from engine.cli.io import produce_lines
from engine.settings import Settings
from engine.topics import ensure_topics
from engine.worker_process import free_port, read_metric, start_worker, stop_worker
from features.client import connect
from features.redis_store import RedisFeatureStore
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration


def expected_totals(events: list[dict]) -> dict[str, tuple[int, int, int]]:
    """(events, orders, revenue in cents) per customer, straight from the raw events."""
    totals: dict[str, list[int]] = {}
    for event in events:
        row = totals.setdefault(event["customer_id"], [0, 0, 0])
        row[0] += 1
        if event["type"] == "purchase":
            row[1] += 1
            row[2] += int(Decimal(repr(float(event["attrs"]["amount"]))) * 100)
    return {cid: (a, b, c) for cid, (a, b, c) in totals.items()}


async def stored_totals(settings: Settings, customers: list[str]) -> dict[str, tuple[int, int, int]]:
    client = connect(settings.redis_url)
    try:
        records = await RedisFeatureStore(client, prefix=settings.key_prefix).load(customers)
    finally:
        await client.aclose()
    out = {}
    for cid, record in records.items():
        state = record.state
        out[cid] = (0, 0, 0) if state is None else (state.events, state.orders, state.revenue_minor)
    return out


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopping_a_busy_worker_loses_and_doubles_nothing(
    isolated_settings: Settings, tmp_path: Path, stop: signal.Signals
) -> None:
    settings = isolated_settings.model_copy(update={"web_port": free_port(), "batch_max_events": 200})
    events = list(generate_events(PopulationConfig(customers=150, days=30, seed=21)))
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce_lines(settings, path, "jsonl", "msgpack", False, settings.events_topic))

    first = start_worker(settings, tmp_path / "first.log")
    try:
        busy = wait_until(lambda: read_metric(settings, "segflow_events_applied_total") >= 1000, 90)
        assert busy, "the first worker never got going"
        first.send_signal(stop)
        # A stalled shutdown is cut short after the worker's grace period (15 s).
        assert wait_until(lambda: first.poll() is not None, 40), "the worker did not exit"
    finally:
        stop_worker(first)

    second_settings = settings.model_copy(update={"web_port": free_port()})
    second = start_worker(second_settings, tmp_path / "second.log")
    try:
        expected = expected_totals(events)
        customers = sorted(expected)

        def caught_up() -> bool:
            return asyncio.run(stored_totals(settings, customers)) == expected

        assert wait_until(caught_up, 120), "state differs from the recomputation after the restart"
        # The second worker really took over (it applied what the first had not).
        assert read_metric(second_settings, "segflow_events_applied_total") > 0
    finally:
        stop_worker(second)
