"""SEGFLOW_WEB_TOKEN on a real ``segflow worker`` and a real ``segflow dashboard`` process.

Every worker page (segflow's and Faust's own) answers 401 without the token and 200 with it,
except the probes (``/segflow/health``, ``/segflow/ready``), which stay open. The dashboard asks a
browser for the token (HTTP Basic) and reads the worker's metrics with it. The project's own
readers (``read_metric``) send the token from the settings.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import wait_until
from pydantic import SecretStr

from engine.cli.io import produce_lines
from engine.settings import Settings
from engine.topics import ensure_topics
from engine.worker_process import free_port, read_metric, read_metrics, start_worker, stop_worker
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration

TOKEN = secrets.token_hex(16)
BEARER = {"Authorization": f"Bearer {TOKEN}"}
APPLIED = "segflow_events_applied_total"


def get(
    url: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, str, str | None]:
    """(status, body, WWW-Authenticate) of a request; an error status is an answer too."""
    method = "POST" if data is not None else "GET"
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read().decode(), response.headers.get("WWW-Authenticate")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("WWW-Authenticate")


def status_or_zero(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        return get(url, headers)[0]
    except OSError:
        return 0  # not listening yet


def test_worker_and_dashboard_pages_need_the_token_but_the_probes(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings.model_copy(
        update={"web_port": free_port(), "web_token": SecretStr(TOKEN), "idle_advance_seconds": 3600.0}
    )
    events = list(generate_events(PopulationConfig(customers=20, days=5, seed=5)))
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce_lines(settings, path, "jsonl", "msgpack", False, settings.events_topic))
    base = f"http://127.0.0.1:{settings.web_port}"

    worker = start_worker(settings, tmp_path / "worker.log")
    dashboard = None
    try:
        assert wait_until(lambda: status_or_zero(f"{base}/segflow/health") == 200, 120), (
            tmp_path / "worker.log"
        ).read_text()[-3000:]
        # The project's reader sends the token from the settings; without it the page is refused.
        assert wait_until(lambda: read_metric(settings, APPLIED) >= len(events), 180)
        assert read_metrics(settings.web_port) == {}
        assert read_metrics(settings.web_port, TOKEN)[APPLIED] == len(events)

        for page in ("/segflow/metrics", "/segflow/models", "/", "/router/"):
            status, body, challenge = get(base + page)
            assert (status, challenge) == (401, 'Bearer realm="segflow"'), page
            assert json.loads(body) == {
                "error": "this page needs Authorization: Bearer <token> (SEGFLOW_WEB_TOKEN)"
            }
            assert get(base + page, {"Authorization": f"Bearer {TOKEN[:-1]}"})[:2] == (
                401,
                '{"error": "wrong token"}',
            ), page
        assert get(base + "/segflow/models/predict", data=b'{"features": {}}')[0] == 401
        status, body, _ = get(f"{base}/segflow/metrics", BEARER)
        assert status == 200 and f"{APPLIED} {len(events)}" in body
        assert get(f"{base}/segflow/models", BEARER)[0] == 200
        assert get(f"{base}/", BEARER)[0] == 200  # Faust's index page
        # Probes: open, whatever the token.
        status, body, _ = get(f"{base}/segflow/health")
        assert status == 200 and json.loads(body)["ok"] is True
        assert get(f"{base}/segflow/ready")[0] in (200, 503)  # ready or not, never 401

        port = free_port()
        args = ("-m", "engine", "dashboard", "--port", str(port), "--scan-seconds", "600", "--refresh", "0")
        dashboard = start_worker(settings, tmp_path / "dashboard.log", args)
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: status_or_zero(f"{url}/api/summary", BEARER) == 200, 90), (
            tmp_path / "dashboard.log"
        ).read_text()[-3000:]
        status, _, challenge = get(f"{url}/api/summary")
        assert (status, challenge) == (401, 'Basic realm="segflow", charset="UTF-8"')
        assert get(f"{url}/")[0] == 401
        browser = {"Authorization": "Basic " + base64.b64encode(f"analyst:{TOKEN}".encode()).decode()}
        status, page, _ = get(f"{url}/", browser)
        assert status == 200
        # The dashboard read the worker's guarded metrics page with the token.
        assert APPLIED in page and "no worker answers on its web port" not in page
    finally:
        if dashboard is not None:
            stop_worker(dashboard)
        stop_worker(worker)
