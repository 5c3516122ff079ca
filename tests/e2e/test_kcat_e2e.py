"""End to end on the real broker and Redis, driven by kcat (a Kafka client none of us wrote).

kcat produces JSON events (schema v1 accepts JSON on the wire) to the events topic of a real
`segflow worker` process, then reads the segment changes and dead letters back. The expected
transitions are worked out by hand from the input below, not by the code under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import msgpack
import pytest

from engine.settings import Settings
from engine.topics import ensure_topics
from engine.worker_process import free_port, settings_env, start_worker, stop_worker

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def ev(eid: str, customer: str, kind: str, day: float, **attrs: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": eid,
        "customer_id": customer,
        "type": kind,
        "ts": T0 + int(day * DAY_MS),
    }
    if kind == "purchase":
        attrs = {"currency": "EUR", "product": "savings", **attrs}
    if attrs:
        event["attrs"] = attrs
    return event


# Thresholds: new = tenure < 30 days and < 2 orders; active = last purchase <= 30 days ago.
EVENTS = [
    ev("a1", "alice", "login", 0),  # alice: -> new
    ev("b1", "bob", "purchase", 0, amount=10),  # bob: -> new
    ev("a2", "alice", "purchase", 1, amount=20),  # alice: 1 order, still new
    ev("c1", "carol", "login", 0),  # carol: -> new
    ev("a3", "alice", "purchase", 2, amount=5),  # alice: 2 orders -> active
    ev("d1", "dave", "purchase", 0, amount=7.5),  # dave: -> new
    ev("b2", "bob", "login", 40),  # bob: tenure 40, recency 40 -> lapsed
    ev("c2", "carol", "page_view", 35, page="/home"),  # carol: tenure 35, never bought -> lapsed
    ev("d2", "dave", "purchase", 10, amount=7.5),  # dave: 2 orders, recency 0 -> active
    ev("b3", "bob", "purchase", 41, amount=3),  # bob: recency 0 -> active
    ev("a4", "alice", "login", 70),  # alice: recency 68 -> lapsed
    ev("a5", "alice", "purchase", 60, amount=1),  # 10 days behind day 70: too late, DLQ only
]
EXPECTED = {
    "alice": [(None, "new"), ("new", "active"), ("active", "lapsed")],
    "bob": [(None, "new"), ("new", "lapsed"), ("lapsed", "active")],
    "carol": [(None, "new"), ("new", "lapsed")],
    "dave": [(None, "new"), ("new", "active")],
}
MALFORMED = [
    ("alice", "{this is not json"),
    ("erin", json.dumps({"event_id": "m2", "type": "login", "ts": T0})),  # no customer_id
    ("erin", json.dumps(ev("m3", "erin", "purchase", 1, amount="ten"))),  # wrong type
]


def kcat_produce(settings: Settings, lines: list[tuple[str, str]]) -> None:
    body = "".join(f"{key}\t{value}\n" for key, value in lines)
    subprocess.run(
        # Idempotence keeps each partition in send order even when a just-created topic makes
        # the first sends fail and retry (without it a CI run saw alice's day-70 login land
        # before her day-2 purchase, which then was too late).
        [
            "kcat",
            "-P",
            "-X",
            "enable.idempotence=true",
            "-b",
            settings.kafka_bootstrap,
            "-t",
            settings.events_topic,
            "-K",
            "\t",
        ],
        input=body.encode(),
        check=True,
        timeout=60,
    )


def kcat_read(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """All records of ``topic``; kcat frames each payload as '<size>:<bytes>' (binary-safe)."""
    out = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            settings.kafka_bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%S:%s",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    records, position = [], 0
    while position < len(out):
        colon = out.index(b":", position)
        size = int(out[position:colon])
        records.append(msgpack.unpackb(out[colon + 1 : colon + 1 + size]))
        position = colon + 1 + size
    return records


def test_kcat_events_in_segment_changes_and_dead_letters_out(isolated_settings: Settings) -> None:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed (apt-get install kcat); .ci/run installs it")
    settings = isolated_settings.model_copy(update={"web_port": free_port()})
    asyncio.run(ensure_topics(settings))
    worker = start_worker(settings, settings.stack_dir / "test-logs" / f"{settings.app_id}.log")
    try:
        lines = [(e["customer_id"], json.dumps(e)) for e in EVENTS[:3]] + MALFORMED
        lines += [(e["customer_id"], json.dumps(e)) for e in EVENTS[3:]]
        kcat_produce(settings, lines)
        want = sum(len(v) for v in EXPECTED.values())
        deadline = time.monotonic() + 120
        changes: list[dict[str, Any]] = []
        letters: list[dict[str, Any]] = []
        while time.monotonic() < deadline and (len(changes) < want or len(letters) < len(MALFORMED) + 1):
            assert worker.poll() is None, "worker exited"
            time.sleep(1)
            changes = kcat_read(settings, settings.changes_topic)
            letters = kcat_read(settings, settings.dlq_topic)
        explained = json.loads(
            subprocess.run(
                [sys.executable, "-m", "engine", "explain", "alice", "--json"],
                env={**os.environ, **settings_env(settings)},
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout
        )
    finally:
        stop_worker(worker)

    got: dict[str, list[tuple[Any, Any]]] = {}
    for change in changes:
        got.setdefault(change["customer_id"], []).append((change["from"], change["to"]))
        assert change["v"] == 1 and change["family"] == "lifecycle"
        assert change["reason"]["text"].startswith(f"lifecycle={change['to']} because")
    assert got == EXPECTED
    assert len({c["change_id"] for c in changes}) == len(changes)

    # `segflow explain` shows what the store holds, worked out by hand from alice's events:
    # purchases of 20 and 5 on days 1 and 2, last event a login on day 70.
    features = explained["features"]
    assert explained["segments"] == {"lifecycle": "lapsed"}
    assert features["frequency"] == 2 and features["monetary"] == 25.0
    assert features["recency_days"] == 68.0 and features["tenure_days"] == 70.0
    assert features["logins_30d"] == 1 and features["orders_90d"] == 2
    assert features["late_events_dropped"] == 1

    reasons = sorted(letter["reason"] for letter in letters)
    assert len(reasons) == 4
    assert any(r.startswith("too late: 10.000 days behind") for r in reasons)
    assert any(r.startswith("bad JSON") for r in reasons)
    assert any("missing customer_id" in r for r in reasons)
    assert any("attrs.amount of purchase must be a number" in r for r in reasons)
    assert {letter["raw"] for letter in letters} == {value.encode() for _, value in MALFORMED} | {
        json.dumps(EVENTS[-1]).encode()
    }
