"""A real Prometheus scrapes a real worker: the series read back through its HTTP API are the
worker's own numbers, and every alert rule and dashboard query of deploy/monitoring evaluates.

Debian's ``prometheus`` is started by the stack's own code (``engine.stack.prometheus``, as
``segflow stack up --prometheus`` does) on a free loopback port with its data under a temporary
stack dir; the worker (``engine.worker_process.start_worker``) applies a small simulated stream
produced to its own topics on the running stack.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from determinism_runs import produce, remove
from helpers import page_token, wait_until

from engine.ops.metric_names import referenced_series
from engine.settings import Settings
from engine.stack import prometheus
from engine.web_auth import page_request
from engine.worker_process import free_port, start_worker, stop_worker, wait_for_metric
from models.simulate import sample_stream, write_jsonl

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
APPLIED = "segflow_events_applied_total"
DEAD = "segflow_events_dead_lettered_total"
TARGET = "worker-under-test"
_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(\{.*\})? (\S+)$")


def page(port: int) -> dict[str, dict[str, float]]:
    """The worker's /segflow/metrics samples: name -> {label text: value}."""
    request = page_request(f"http://127.0.0.1:{port}/segflow/metrics", page_token())
    with urllib.request.urlopen(request, timeout=3) as response:
        text = response.read().decode()
    samples: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found and not line.startswith("#"):
            samples.setdefault(found[1], {})[found[2] or ""] = float(found[3])
    return samples


def scraped(settings: Settings, expr: str) -> list[float]:
    """The values of ``expr`` now, as Prometheus answers ``/api/v1/query``."""
    return [float(sample["value"][1]) for sample in prometheus.query(settings, expr)]


@pytest.fixture()
def prom_settings(isolated_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A Prometheus of its own: free port, data under a temporary stack dir; stopped at the end."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (deploy/local/setup.sh installs it)")
    settings = isolated_settings.model_copy(
        update={"stack_dir": tmp_path / "stack", "prometheus_port": free_port(), "web_port": free_port()}
    )
    try:
        yield settings
    finally:
        prometheus.down(settings)


def test_prometheus_reads_back_what_the_worker_serves(
    isolated_settings: Settings, prom_settings: Settings, tmp_path: Path
) -> None:
    events = sample_stream(customers=12, days=4, seed=3)
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    worker_settings = isolated_settings.model_copy(update={"web_port": free_port()})
    try:
        produced = asyncio.run(produce(worker_settings, path))
        worker = start_worker(worker_settings, tmp_path / "worker.log")
        try:
            started = prometheus.up(prom_settings)
            assert "started" in started, started
            assert prometheus.status(prom_settings).healthy
            prometheus.register_target(prom_settings, prometheus.WORKER_JOB, TARGET, worker_settings.web_port)
            applied = wait_for_metric(worker_settings, APPLIED, produced, 60, worker)
            log = (tmp_path / "worker.log").read_text(errors="replace")[-2000:]
            assert applied == produced, f"the worker applied {applied} of {produced}\n{log}"
            _assert_series_match(prom_settings, worker_settings.web_port)
            _assert_monitoring_queries_evaluate(prom_settings)
        finally:
            stop_worker(worker)
    finally:
        asyncio.run(remove(worker_settings))


def _assert_series_match(settings: Settings, port: int) -> None:
    """Once a scrape follows the worker's last change, Prometheus holds the page's own values."""
    selector = f'{{job="{prometheus.WORKER_JOB}",segflow_target="{TARGET}"}}'
    served = page(port)

    def matches(name: str) -> bool:
        return scraped(settings, f"{name}{selector}") == [served[name][""]]

    # File discovery picks the target up within seconds, then a scrape every SCRAPE_SECONDS.
    assert wait_until(lambda: matches(APPLIED), 30, every=0.5), (
        f"Prometheus has {scraped(settings, APPLIED + selector)}, the page {served[APPLIED]}; "
        f"up: {prometheus.query(settings, 'up')}"
    )
    assert page(port)[APPLIED] == served[APPLIED]  # the stream was done: nothing moved meanwhile
    assert served[APPLIED][""] > 0
    assert matches(DEAD)
    assert scraped(settings, f"up{selector}") == [1.0]
    drift = served.get("segflow_model_drift_detections", {})
    if drift:  # the learner's report, once it has models
        samples = prometheus.query(settings, f"segflow_model_drift_detections{selector}")
        got = {s["metric"]["model"]: float(s["value"][1]) for s in samples}
        assert got == {labels.split('"')[1]: value for labels, value in drift.items()}
    assert "segflow_consumer_lag" in served, sorted(served)
    assert wait_until(
        lambda: (
            scraped(settings, f"sum(segflow_consumer_lag{selector})")
            == [sum(page(port)["segflow_consumer_lag"].values())]
        ),
        15,
        every=0.5,
    )


def _assert_monitoring_queries_evaluate(settings: Settings) -> None:
    """Every dashboard query parses and runs; every alert rule is loaded and evaluates cleanly."""
    board = json.loads((MONITORING / "grafana" / "dashboards" / "segflow.json").read_text())
    panels = [p for row in board["panels"] for p in [row, *row.get("panels", [])]]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert exprs
    for expr in exprs:
        assert referenced_series(expr)
        prometheus.query(settings, expr.replace("$__rate_interval", "1m"))  # StackError on a bad query

    def rules() -> list[dict[str, object]]:
        data = prometheus.api_get(settings.prometheus_port, "/api/v1/rules")
        return [rule for group in data["groups"] for rule in group["rules"]]

    # The local config loads deploy/monitoring/alerts.yml; wait for one evaluation of each rule.
    assert wait_until(lambda: bool(rules()) and all(r["health"] != "unknown" for r in rules()), 20, 0.5)
    assert [(r["name"], r.get("lastError")) for r in rules() if r["health"] != "ok"] == []

    # The worker under test is up: no alert (pending or firing) about it, and some worker is up.
    # SegflowNoWorker went pending while the target was not discovered yet; it clears at the first
    # evaluation after a successful scrape, which may come up to one interval after the series do.
    def alerts() -> list[dict[str, Any]]:
        return list(prometheus.api_get(settings.prometheus_port, "/api/v1/alerts")["alerts"])

    assert wait_until(lambda: "SegflowNoWorker" not in {a["labels"]["alertname"] for a in alerts()}, 10, 0.5)
    assert [a for a in alerts() if a["labels"].get("segflow_target") == TARGET] == []
