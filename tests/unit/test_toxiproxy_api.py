"""The toxiproxy client's toxic bodies and the stack's proxy layout (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import load_settings
from engine.stack import toxiproxy as toxiproxy_server
from engine.stack.toxiproxy_api import Proxy, Toxic, bandwidth, latency, limit_data, reset_peer, timeout


def test_each_toxic_has_toxiproxy_s_type_and_attribute_names() -> None:
    # The names of toxiproxy's docs (README, "Toxics"): latency/jitter, timeout, rate, bytes.
    assert latency(50, 20).body() == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 50, "jitter": 20},
    }
    assert timeout(5000, "upstream").body()["attributes"] == {"timeout": 5000}
    assert timeout(5000, "upstream").key == "timeout_upstream"
    assert reset_peer().body()["type"] == "reset_peer"
    assert reset_peer().body()["attributes"] == {"timeout": 0}
    assert bandwidth(64).body()["attributes"] == {"rate": 64}
    assert limit_data(1024).body()["attributes"] == {"bytes": 1024}
    assert Toxic("latency", {"latency": 1}, name="slow").key == "slow"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: latency(-1), "latency=-1 is negative"),
        (lambda: Toxic("timeout", {"timeout": 0}, toxicity=1.5), "toxicity 1.5 is not within 0..1"),
    ],
)
def test_a_bad_toxic_is_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_a_proxy_is_read_from_the_api_s_json() -> None:
    body = {
        "name": "redis",
        "listen": "127.0.0.1:16381",
        "upstream": "127.0.0.1:16379",
        "enabled": False,
        "toxics": [{"name": "latency_downstream", "type": "latency"}],
    }
    assert Proxy.of(body) == Proxy(
        "redis", "127.0.0.1:16381", "127.0.0.1:16379", False, ("latency_downstream",)
    )
    assert Proxy.of({**body, "toxics": None}).toxics == ()


def test_the_stack_proxies_point_at_the_proxied_kafka_listener_and_redis(tmp_path: Path) -> None:
    settings = load_settings(
        stack_dir=tmp_path,
        kafka_proxied_port=39096,
        kafka_proxy_port=39097,
        redis_port=36379,
        redis_proxy_port=36381,
    )
    assert toxiproxy_server.stack_proxies(settings) == {
        "kafka": (39097, "127.0.0.1:39096"),
        "redis": (36381, "127.0.0.1:36379"),
    }
    paths = toxiproxy_server.ToxiproxyPaths.of(settings)
    assert paths.binary == tmp_path.resolve() / "toxiproxy" / "bin" / "toxiproxy-server"
    assert toxiproxy_server.installed_version(paths.binary) is None
