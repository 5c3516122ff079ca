"""Fixtures of the dashboard's browser tests: one seeded stream through a real worker, the
dashboard served by ``segflow dashboard`` on a free port, and real Chromium driven by Playwright.

Chromium is Debian's (``deploy/local/setup.sh`` installs it); Playwright's own browser download
is not used. A missing Chromium or Playwright fails these tests with what to install: CI must
not pass them by skipping.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_stream import Run, chromium_path, get_json, in_thread, remove, token_headers, worker_run

from engine.activation.demo_experiment import demo_rules_text
from engine.dashboard.brief import CHROMIUM_FLAGS
from engine.rules.loader import DEFAULT_RULES_PATH
from engine.settings import Settings, namespaced
from engine.worker_process import free_port, start_worker, stop_worker
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

CHROMIUM_ARGS = [flag for flag in CHROMIUM_FLAGS if flag != "--no-pdf-header-footer"]
"""The brief's printing flags: without the background-networking ones Chromium's own connections
are refused (closed network)."""
# ~7k events over 40 days: every family populated, outcomes for the win-back, labels after day 14.
POPULATION = PopulationConfig(customers=100, days=40, seed=13)


@pytest.fixture(scope="session")
def dashboard_run(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The seeded stream through one real worker process, in a namespace of its own."""
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("dashboard-run")
    rules = folder / "rules.yaml"
    text = demo_rules_text(DEFAULT_RULES_PATH.read_text())
    assert text is not None
    # Within 40 days: customers are past 'new' after 10 days (so they can lapse), and the win-back
    # decisions' 7-day outcome windows close inside the stream (outcomes to measure lift on).
    text = text.replace("lifecycle_new_days: 30", "lifecycle_new_days: 10")
    text = text.replace("attribution_days: 14", "attribution_days: 7")
    rules.write_text(text)
    settings = namespaced(stack_settings, f"dash-{tag}", f"dash{tag}").model_copy(
        update={
            # One events partition: no partition waits for another's snapshots (half the run time);
            # two for the changes, so the dashboard folds them in an interleaved order.
            "events_partitions": 1,
            "changes_partitions": 2,
            "idle_advance_seconds": 3600.0,  # no wall clock in the decisions
            "rules_file": rules,
            "model_period_seconds": 5 * 86_400.0,  # 8 sealed versions: each costs a learner round trip
            "churn_days": 14.0,
            "propensity_days": 14.0,
            "clv_days": 21.0,
            "model_ready_min_labels": 100,
        }
    )
    events = list(generate_events(POPULATION))
    path = folder / "events.jsonl"
    write_jsonl(events, path)
    customers = sorted({e["customer_id"] for e in events})
    try:
        started = time.monotonic()
        outcome = worker_run(settings, path, customers, folder)
        seconds = time.monotonic() - started
        print(f"stream: {len(events)} events through a worker in {seconds:.1f}s")
        yield Run(settings, customers, outcome, seconds)
    finally:
        in_thread(remove(settings))


@pytest.fixture(scope="session")
def dashboard_url(dashboard_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``segflow dashboard`` on a free port, once it answers."""
    port = free_port()
    logs = tmp_path_factory.mktemp("dashboard-server")
    args = ("-m", "engine", "dashboard", "--port", str(port), "--scan-seconds", "600", "--refresh", "0")
    server = start_worker(dashboard_run.settings, logs / "dashboard.log", args)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(f"{url}/api/summary")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log = (logs / "dashboard.log").read_text(errors="replace")
                    pytest.fail(f"the dashboard did not answer on {url}\n{log[-2000:]}")
                time.sleep(0.3)
        yield url
    finally:
        stop_worker(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A Chromium context (fresh profile) driven by Playwright's sync API.

    Module scope: while it is open, Playwright's loop runs in this thread, so ``asyncio.run``
    works only in another one (``dashboard_stream.in_thread``); later modules get their thread back.
    """
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]' (deploy/local/setup.sh does)")
    with tempfile.TemporaryDirectory(prefix="segflow-e2e-chromium-") as profile, sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile,
            executable_path=str(executable),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
            extra_http_headers=token_headers(),  # the page token, when the run sets one
        )
        try:
            yield context
        finally:
            context.close()
