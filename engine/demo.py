"""``segflow demo``: the whole product on the local stack, from nothing to segment changes.

Each run uses its own namespace (topics, consumer group, Redis key prefix) so it can be run
again and again and always shows a fresh population going through its lifecycle.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.activation.demo_experiment import demo_rules_text, simulated_lift
from engine.activation.lift_table import lift_table
from engine.app import load_rule_set
from engine.app import rules_path as rules_file_of
from engine.cli.io import format_change, produce_lines, read_to_end
from engine.cli.lift_cmd import experiments_of, read_outcomes, render
from engine.codecs import decode_msgpack
from engine.dashboard import serve
from engine.explain import explain_customer
from engine.profiles import write_profile, written_by_demo
from engine.reports import segment_sizes
from engine.settings import LOCAL_PROFILE, Settings, namespaced
from engine.stack import prometheus
from engine.topics import ensure_topics
from engine.worker_process import models_status_of, read_metric, start_worker, stop_worker, wait_for_metric
from models.simulate import sample_stream, write_jsonl

MALFORMED_LINES = [
    b'{"event_id": "bad-1", "type": "login", "ts": 1767225600000}',
    b'{"event_id": "bad-2", "customer_id": "c-bad", "type": "purchase", "ts": 1767225600000,'
    b' "attrs": {"amount": "lots", "currency": "EUR", "product": "savings"}}',
    b"this line is not an event at all",
]


def demo_settings(base: Settings, run_id: str) -> Settings:
    """Settings of one demo run: its own topics, group and key prefix."""
    settings = namespaced(base, f"segflow-demo-{run_id}", f"demo{run_id}")
    # The simulator's logins carry the channel (app or web): the fairness report groups by it.
    return settings.model_copy(update={"group_attribute": "channel"})


async def collect(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` so far, decoded."""
    found: list[dict[str, Any]] = []
    await read_to_end(settings, topic, on_record=lambda record: found.append(decode_msgpack(record.value)))
    return found


def run_demo(
    base: Settings,
    echo: Callable[[str], None],
    customers: int,
    days: int,
    seed: int,
    dashboard_seconds: float | None,
    dashboard_port: int,
    profile: Path | None = None,
) -> int:
    """Replay a simulated population through a real worker and show what it decided.

    With ``profile``, the run's settings are left there (unless a person wrote that file: then
    beside the run's files) for the commands that follow. Ctrl-C stops the worker and returns 130.
    """
    run_id = time.strftime("%Y%m%d%H%M%S")
    settings = demo_settings(base, run_id)
    work = settings.stack_dir / "demo" / run_id
    events_path = work / "events.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    demo_rules = demo_rules_text(rules_file_of(settings).read_text())
    if demo_rules is not None:
        (work / "rules.yaml").write_text(demo_rules)
        settings = settings.model_copy(update={"rules_file": work / "rules.yaml"})
    events = list(sample_stream(customers=customers, days=days, seed=seed))
    write_jsonl(events, events_path)
    with events_path.open("ab") as handle:
        handle.write(b"\n".join(MALFORMED_LINES) + b"\n")
    echo(f"[demo] {len(events)} events of {customers} simulated customers over {days} days -> {events_path}")
    echo(f"[demo] plus {len(MALFORMED_LINES)} malformed events, which must land in the dead-letter topic")
    if demo_rules is not None:
        echo(f"[demo] rules: the shipped ones, win-back also on 'lapsing': {work / 'rules.yaml'}")
    asyncio.run(ensure_topics(settings))
    written = _leave_profile(echo, settings, run_id, profile, work)
    # The worker has a session of its own, so Ctrl-C reaches only the demo, which then stops
    # the worker once; SIGTERM and SIGHUP (terminal closed) stop the demo the same way.
    handlers = {s: signal.signal(s, signal.default_int_handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    worker = start_worker(settings, work / "worker.log", own_session=True)
    echo(f"[demo] worker pid {worker.pid}, log {work / 'worker.log'}")
    try:
        sent = asyncio.run(
            produce_lines(settings, events_path, "jsonl", "msgpack", True, settings.events_topic)
        )
        echo(f"[demo] produced {sent} records to {settings.events_topic}")
        applied = wait_for_metric(settings, "segflow_events_applied_total", len(events), 120, worker)
        if worker.poll() is not None:  # its port may answer for another process: trust nothing
            echo(f"[demo] the worker exited with code {worker.returncode}; see {work / 'worker.log'}")
            return 1
        dead = read_metric(settings, "segflow_events_dead_lettered_total")
        echo(f"[demo] worker applied {applied} events, dead-lettered {dead}")
        if applied < len(events):
            echo(f"[demo] the worker applied {applied} of {len(events)} events and then none for 120 s")
        time.sleep(3.0)  # the worker's 1 s timer moves customers on by event time (ticks)
        changes = asyncio.run(collect(settings, settings.changes_topic))
        letters = asyncio.run(collect(settings, settings.dlq_topic))
        _summarise(echo, changes, letters)
        _segments_and_models(echo, settings)
        _activation(echo, settings)
        if changes:
            customer = Counter(c["customer_id"] for c in changes).most_common(1)[0][0]
            report = asyncio.run(explain_customer(settings, customer))
            if report is not None:
                echo(f"\n[demo] segflow explain {customer}\n{report.render()}")
        _explore_hint(echo, settings, written)
        if dashboard_seconds is None or dashboard_seconds > 0:
            how_long = "until Ctrl-C" if dashboard_seconds is None else f"for {dashboard_seconds:g}s"
            echo(f"\n[demo] dashboard: http://127.0.0.1:{dashboard_port}/ ({how_long})")
            try:
                asyncio.run(serve(settings, dashboard_port, dashboard_seconds))
            except KeyboardInterrupt:
                echo("[demo] dashboard stopped")
        return 0 if applied >= len(events) and dead == len(MALFORMED_LINES) else 1
    except KeyboardInterrupt:
        echo("\n[demo] interrupted")
        return 130
    finally:
        _stop(echo, worker)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _stop(echo: Callable[[str], None], worker: subprocess.Popen[bytes]) -> None:
    """Stop the demo's worker; a second Ctrl-C cannot cut this short (it would leave it running)."""
    ignored = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in ignored}
    try:
        echo(f"[demo] stopping the worker (pid {worker.pid})")
        stop_worker(worker)
        echo("[demo] worker stopped; the stack keeps running (segflow stack down stops it)")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _leave_profile(
    echo: Callable[[str], None], settings: Settings, run_id: str, profile: Path | None, work: Path
) -> Path | None:
    """Write the run's profile to ``profile`` (or beside the run's files, when a person wrote
    ``profile``); a copy always goes to the run's directory. Returns where the CLI should read it."""
    if profile is None:
        return None
    about = f"the demo run {run_id} ({settings.app_id})"
    write_profile(settings, work / "segflow.env", about)
    if profile.exists() and not written_by_demo(profile):
        echo(f"[demo] {profile} is not the demo's: left alone; this run's profile is {work / 'segflow.env'}")
        return work / "segflow.env"
    write_profile(settings, profile, about)
    echo(f"[demo] wrote {profile}: segflow commands run in {profile.parent} now read this run")
    return profile


def _summarise(
    echo: Callable[[str], None], changes: list[dict[str, Any]], letters: list[dict[str, Any]]
) -> None:
    echo(f"\n[demo] {len(changes)} segment changes; the first 12:")
    for change in changes[:12]:
        echo("  " + format_change(change))
    ticks = sum(1 for c in changes if "tick" in c.get("cause", {}))
    echo(f"[demo] {ticks} of them caused by event time alone (no event of the customer)")
    for family in dict.fromkeys(c["family"] for c in changes):
        transitions = Counter(
            f"{c['from'] or '(none)'} -> {c['to']}" for c in changes if c["family"] == family
        )
        top = ", ".join(f"{t}: {n}" for t, n in transitions.most_common(8))
        echo(f"[demo] {family} transitions: {top}")
    echo(f"[demo] dead letters ({len(letters)}):")
    for letter in letters:
        raw = letter["raw"] if isinstance(letter["raw"], bytes) else b""
        echo(f"  offset {letter['partition']}:{letter['offset']}  {letter['reason']}  raw={raw[:40]!r}")


def _segments_and_models(echo: Callable[[str], None], settings: Settings) -> None:
    report = asyncio.run(segment_sizes(settings))
    echo(f"\n[demo] segment sizes and revenue (segflow segments; rules {report['rules_version']}):")
    for family, rows in report["families"].items():
        shown = {s: f"{r['customers']} ({r['revenue']:,.0f} EUR)" for s, r in rows.items() if r["customers"]}
        echo(f"  {family}: " + json.dumps(shown))
    status = models_status_of(settings)
    learner = status.get("learner") or {}
    if learner:
        echo(
            f"[demo] the population's models (segflow models): snapshot version {status['sealed_version']}, "
            f"{learner.get('labels_learned', 0)} labels learned of {learner.get('labels_consumed', 0)}"
        )
        for name, model in (learner.get("reports") or {}).items():
            pre, hold = model["prequential"], model["holdout"]
            metric = "roc_auc" if model["task"] == "classification" else "mae"
            echo(
                f"  {name:28} labels {pre['n'] + hold['n']:>6}  prequential {metric} {_fmt(pre.get(metric))}"
                f"  holdout {_fmt(hold.get(metric))}  {(status.get('models') or {}).get(name, '')}"
            )


def _activation(echo: Callable[[str], None], settings: Settings) -> None:
    """The run's action decisions and measured lift, then the shipped experiment on known truth."""
    actions = asyncio.run(collect(settings, settings.actions_topic))
    decided = Counter(f"{a['action']} {a['decision']}" for a in actions)
    echo(f"\n[demo] {len(actions)} action decisions (segflow tail --topic {settings.actions_topic}):")
    for what, count in sorted(decided.items()):
        echo(f"  {what}: {count}")
    specs, bandits = experiments_of(settings)
    table = lift_table(asyncio.run(read_outcomes(settings)), specs, bandits=bandits)
    echo("[demo] lift measured on this run's outcomes (segflow lift):")
    echo("  " + render(table).replace("\n", "\n  "))
    simulated = simulated_lift(load_rule_set(settings))
    if simulated is not None:
        name, lines = simulated
        echo(f"[demo] experiment {name} on simulated responses with known truth (20,000 decisions):")
        for line in lines:
            echo("  " + line)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _explore_hint(echo: Callable[[str], None], settings: Settings, profile: Path | None) -> None:
    if profile is None:
        env = f"SEGFLOW_CHANGES_TOPIC={settings.changes_topic} SEGFLOW_KEY_PREFIX={settings.key_prefix} "
    elif profile.name == LOCAL_PROFILE and profile.parent == Path.cwd():
        env = ""
    else:
        env = f"SEGFLOW_PROFILE={profile} "
    echo(f"\n[demo] explore this run:  {env}segflow tail --from-beginning --idle-timeout 3")
    echo(f"[demo]                    {env}segflow explain <customer_id>")
    echo(f"[demo]                    {env}segflow segments;  segflow models;  segflow lift")
    if prometheus.running(settings):
        url = f"http://127.0.0.1:{settings.prometheus_port}/graph?g0.expr=segflow_events_applied_total"
        echo(f"[demo] Prometheus (alerts of deploy/monitoring/alerts.yml): {url}")
