"""The page token: the check itself, its settings, and the delivery and dashboard servers behind it
(served for real on loopback; the worker's pages: tests/integration/test_worker_web_token.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from engine.activation.delivery.counters import DeliveryCounters
from engine.activation.delivery.metrics import MetricsServer
from engine.cli.main import cli
from engine.dashboard.server import Dashboard, build_app
from engine.profiles import profile_lines
from engine.settings import SettingsError, load_settings
from engine.web_auth import PROBE_PATHS, auth_headers, page_request, presented_token, refusal

TOKEN = "0123456789abcdef-token"
NEEDS = "this page needs Authorization: Bearer <token> (SEGFLOW_WEB_TOKEN)"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SEGFLOW_"):
            monkeypatch.delenv(name)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, NEEDS),
        ("", NEEDS),
        ("Bearer", NEEDS),
        ("Token " + TOKEN, NEEDS),  # an unknown scheme carries no token
        ("Basic not-base64!", NEEDS),
        ("Bearer " + TOKEN, None),
        ("bearer   " + TOKEN + "  ", None),  # the scheme is case-insensitive (RFC 9110)
        (basic("anyone", TOKEN), None),  # a browser's login prompt: the token is the password
        (basic(TOKEN, ""), NEEDS),  # the user name is not where the token goes
        ("Bearer " + TOKEN[:-1], "wrong token"),
        ("Bearer " + TOKEN + "x", "wrong token"),
        ("Bearer " + "é" * 10, "wrong token"),  # not ASCII: compared as bytes, no exception
        (basic("a", "wrong"), "wrong token"),
    ],
)
def test_refusal_of_a_header(header: str | None, expected: str | None) -> None:
    assert refusal(header, TOKEN) == expected


def test_no_token_lets_everyone_in() -> None:
    assert refusal(None, "") is None and refusal("Bearer whatever", "") is None
    assert auth_headers("") == {} and page_request("http://x/").headers == {}


def test_presented_token_and_the_clients_header() -> None:
    assert presented_token(basic("u", "p:with:colons")) == "p:with:colons"
    assert presented_token(auth_headers(TOKEN)["Authorization"]) == TOKEN
    request = page_request("http://127.0.0.1:1/segflow/models/predict", TOKEN, b"{}")
    assert request.get_method() == "POST" and request.get_header("Authorization") == f"Bearer {TOKEN}"


def test_token_settings_from_env_or_file_never_printed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEGFLOW_WEB_TOKEN", TOKEN)
    monkeypatch.setenv("SEGFLOW_PROFILE", "none")
    s = load_settings(read_profile=False)
    assert s.web_secret == TOKEN
    assert TOKEN not in repr(s) and TOKEN not in str(s.model_dump())
    assert not any(TOKEN in line or "WEB_TOKEN=" in line for line in profile_lines(s))
    printed = CliRunner().invoke(cli, ["config"]).output
    assert "SEGFLOW_WEB_TOKEN=**********" in printed and TOKEN not in printed
    monkeypatch.delenv("SEGFLOW_WEB_TOKEN")
    file = tmp_path / "web-token"
    file.write_text(TOKEN + "\n")
    assert load_settings(read_profile=False, web_token_file=str(file)).web_secret == TOKEN


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"web_token": "short"}, "SEGFLOW_WEB_TOKEN (or its _FILE) is shorter than 16 characters"),
        (
            {"web_token": TOKEN, "web_token_file": "/etc/hostname"},
            "set SEGFLOW_WEB_TOKEN or its _FILE, not both",
        ),
        ({"web_token_file": "/no/such/token"}, "cannot read secret file /no/such/token"),
    ],
)
def test_bad_token_settings_are_one_line(values: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(read_profile=False, **values)
    assert expected in str(info.value) and "\n" not in str(info.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str | None]:
    """(status, body, WWW-Authenticate) of a GET."""
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers or {}) as response:
        return response.status, await response.text(), response.headers.get("WWW-Authenticate")


def test_delivery_pages_need_the_token_but_health() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/segflow"

    async def main() -> list[tuple[int, str, str | None]]:
        server = MetricsServer(DeliveryCounters(read=3), port, token=TOKEN)
        await server.start()
        try:
            return [
                await fetch(f"{base}/metrics"),
                await fetch(f"{base}/metrics", {"Authorization": "Bearer nope-nope-nope-nope"}),
                await fetch(f"{base}/metrics", auth_headers(TOKEN)),
                await fetch(f"{base}/health"),
                await fetch(f"http://127.0.0.1:{port}/no/such/page"),  # no route: still 401, no hint
            ]
        finally:
            await server.close()

    bare, wrong, good, health, unknown = asyncio.run(main())
    assert (bare[0], json.loads(bare[1]), bare[2]) == (401, {"error": NEEDS}, 'Bearer realm="segflow"')
    assert (wrong[0], json.loads(wrong[1])) == (401, {"error": "wrong token"})
    assert good[0] == 200 and "segflow_deliver_read_total 3" in good[1]
    assert health[0] == 200 and json.loads(health[1])["read"] == 3
    assert unknown[0] == 401
    assert "/segflow/health" in PROBE_PATHS


def test_dashboard_routes_need_the_token_and_a_browser_is_asked_for_it(tmp_path: Path) -> None:
    settings = load_settings(read_profile=False, stack_dir=tmp_path, web_token=TOKEN)
    port = free_port()

    async def main() -> list[tuple[int, str, str | None]]:
        runner = web.AppRunner(build_app(Dashboard(settings)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            url = f"http://127.0.0.1:{port}"
            return [
                await fetch(f"{url}/favicon.svg"),
                await fetch(f"{url}/favicon.svg", {"Authorization": basic("analyst", TOKEN)}),
                await fetch(f"{url}/favicon.svg", auth_headers(TOKEN)),
                await fetch(f"{url}/"),
            ]
        finally:
            await runner.cleanup()

    bare, browser, bearer, main_page = asyncio.run(main())
    assert (bare[0], bare[2]) == (401, 'Basic realm="segflow", charset="UTF-8"')
    assert browser[0] == 200 and browser[1].startswith("<svg") and bearer[0] == 200
    assert main_page[0] == 401  # refused before it reads Redis or Kafka


def test_config_does_not_print_the_checkpoint_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "checkpoint-hmac-key-0123456789"
    monkeypatch.setenv("SEGFLOW_CHECKPOINT_KEY", key)
    monkeypatch.setenv("SEGFLOW_PROFILE", "none")
    printed = CliRunner().invoke(cli, ["config"]).output
    assert "SEGFLOW_CHECKPOINT_KEY=**********" in printed and key not in printed
    monkeypatch.delenv("SEGFLOW_CHECKPOINT_KEY")
    assert "SEGFLOW_CHECKPOINT_KEY=\n" in CliRunner().invoke(cli, ["config"]).output  # unset: empty
