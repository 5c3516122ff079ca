"""``segflow demo``: the whole product on the local stack, from nothing to segment changes.

Each run uses its own namespace (topics, consumer group, Redis key prefix) so it can be run
again and again and always shows a fresh population going through its lifecycle.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from engine.cli.io import format_change, produce_lines, read_changes
from engine.dashboard import serve
from engine.explain import explain_customer
from engine.settings import Settings, namespaced
from engine.topics import ensure_topics
from engine.worker_process import read_metric, start_worker, stop_worker, wait_for_metric
from models.simulate import sample_stream, write_jsonl

MALFORMED_LINES = [
    b'{"event_id": "bad-1", "type": "login", "ts": 1767225600000}',
    b'{"event_id": "bad-2", "customer_id": "c-bad", "type": "purchase", "ts": 1767225600000,'
    b' "attrs": {"amount": "lots", "currency": "EUR", "product": "savings"}}',
    b"this line is not an event at all",
]


def demo_settings(base: Settings, run_id: str) -> Settings:
    """Settings of one demo run: its own topics, group and key prefix."""
    return namespaced(base, f"segflow-demo-{run_id}", f"demo{run_id}")


async def collect(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` so far, decoded."""
    found: list[dict[str, Any]] = []
    await read_changes(settings, topic, True, None, 3.0, found.append)
    return found


def run_demo(
    base: Settings,
    echo: Callable[[str], None],
    customers: int,
    days: int,
    seed: int,
    dashboard_seconds: float | None,
    dashboard_port: int,
) -> int:
    """Replay a simulated population through a real worker and show what it decided."""
    run_id = time.strftime("%Y%m%d%H%M%S")
    settings = demo_settings(base, run_id)
    work = settings.stack_dir / "demo" / run_id
    events_path = work / "events.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    events = list(sample_stream(customers=customers, days=days, seed=seed))
    write_jsonl(events, events_path)
    with events_path.open("ab") as handle:
        handle.write(b"\n".join(MALFORMED_LINES) + b"\n")
    echo(f"[demo] {len(events)} events of {customers} simulated customers over {days} days -> {events_path}")
    echo(f"[demo] plus {len(MALFORMED_LINES)} malformed events, which must land in the dead-letter topic")
    asyncio.run(ensure_topics(settings))
    worker = start_worker(settings, work / "worker.log")
    echo(f"[demo] worker pid {worker.pid}, log {work / 'worker.log'}")
    try:
        sent = asyncio.run(
            produce_lines(settings, events_path, "jsonl", "msgpack", True, settings.events_topic)
        )
        echo(f"[demo] produced {sent} records to {settings.events_topic}")
        applied = wait_for_metric(settings, "segflow_events_applied_total", len(events), timeout=180)
        dead = read_metric(settings, "segflow_events_dead_lettered_total")
        echo(f"[demo] worker applied {applied} events, dead-lettered {dead}")
        changes = asyncio.run(collect(settings, settings.changes_topic))
        letters = asyncio.run(collect(settings, settings.dlq_topic))
        _summarise(echo, changes, letters)
        if changes:
            customer = Counter(c["customer_id"] for c in changes).most_common(1)[0][0]
            report = asyncio.run(explain_customer(settings, customer))
            if report is not None:
                echo(f"\n[demo] segflow explain {customer}\n{report.render()}")
        _explore_hint(echo, settings)
        if dashboard_seconds is None or dashboard_seconds > 0:
            how_long = "until Ctrl-C" if dashboard_seconds is None else f"for {dashboard_seconds:g}s"
            echo(f"\n[demo] dashboard: http://127.0.0.1:{dashboard_port}/ ({how_long})")
            try:
                asyncio.run(serve(settings, dashboard_port, dashboard_seconds))
            except KeyboardInterrupt:
                echo("[demo] dashboard stopped")
        return 0 if applied >= len(events) and dead == len(MALFORMED_LINES) else 1
    finally:
        stop_worker(worker)


def _summarise(
    echo: Callable[[str], None], changes: list[dict[str, Any]], letters: list[dict[str, Any]]
) -> None:
    echo(f"\n[demo] {len(changes)} segment changes; the first 12:")
    for change in changes[:12]:
        echo("  " + format_change(change))
    transitions = Counter(f"{c['from'] or '(none)'} -> {c['to']}" for c in changes)
    echo("[demo] transitions: " + ", ".join(f"{t}: {n}" for t, n in transitions.most_common()))
    latest: dict[str, str] = {}
    for change in sorted(changes, key=lambda c: c["event_ts"]):
        latest[change["customer_id"]] = change["to"]
    echo("[demo] lifecycle segment sizes now: " + json.dumps(dict(Counter(latest.values()).most_common())))
    echo(f"[demo] dead letters ({len(letters)}):")
    for letter in letters:
        raw = letter["raw"] if isinstance(letter["raw"], bytes) else b""
        echo(f"  offset {letter['partition']}:{letter['offset']}  {letter['reason']}  raw={raw[:40]!r}")


def _explore_hint(echo: Callable[[str], None], settings: Settings) -> None:
    env = f"SEGFLOW_CHANGES_TOPIC={settings.changes_topic} SEGFLOW_KEY_PREFIX={settings.key_prefix}"
    echo(f"\n[demo] explore this run:  {env} segflow tail --from-beginning --idle-timeout 3")
    echo(f"[demo]                    {env} segflow explain <customer_id>")
