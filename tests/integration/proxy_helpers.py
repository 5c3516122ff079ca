"""The local toxiproxy for integration tests: started (and built, once) by the stack's script."""

from __future__ import annotations

import shutil

import pytest

from engine.settings import Settings
from engine.stack import toxiproxy as toxiproxy_server
from engine.stack.processes import LOOPBACK
from engine.stack.toxiproxy_api import ToxiproxyClient


def toxiproxy_up(settings: Settings) -> ToxiproxyClient:
    """The stack's toxiproxy, started unless running, every proxy enabled and without toxics.

    Skips the test when toxiproxy is neither built nor buildable (no ``go``)."""
    binary = toxiproxy_server.ToxiproxyPaths.of(settings).binary
    built = toxiproxy_server.installed_version(binary) == toxiproxy_server.VERSION
    if not built and shutil.which("go") is None and not toxiproxy_server.GO_FALLBACK.exists():
        pytest.skip("toxiproxy is not built and `go` is not installed to build it")
    toxiproxy_server.up(settings)
    api = toxiproxy_server.client(settings)
    api.reset()  # a toxic left by an interrupted run must not act on this one
    return api


def behind_proxies(settings: Settings) -> Settings:
    """``settings`` with Kafka and Redis reached through the stack's proxies only."""
    database = settings.redis_url.rsplit("/", 1)[1] if settings.redis_url.count("/") >= 3 else "0"
    return settings.model_copy(
        update={
            "kafka_bootstrap": f"{LOOPBACK}:{settings.kafka_proxy_port}",
            "redis_url": f"redis://{LOOPBACK}:{settings.redis_proxy_port}/{database}",
        }
    )
