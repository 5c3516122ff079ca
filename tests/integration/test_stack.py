"""The local stack manager against real servers: Kafka (KRaft) and redis-server on loopback.

Uses a temporary stack dir and non-default ports so it never touches a developer's stack;
a module fixture always stops whatever these tests started.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from redis.cluster import ClusterNode, RedisCluster

from engine.settings import Settings, load_settings
from engine.stack import StackError, StackStatus, down, kafka_tool, status, up

pytestmark = pytest.mark.integration

KAFKA_PORT = 29092
KAFKA_CONTROLLER_PORT = 29093
KAFKA_PROXIED_PORT = 29096
REDIS_PORT = 26379
# Not 27000: a default cluster (base 17000) uses 27000-27002 as its cluster bus ports.
CLUSTER_BASE = 37000
CLUSTER_PORTS = [CLUSTER_BASE, CLUSTER_BASE + 1, CLUSTER_BASE + 2]


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a throwaway stack; everything it runs is stopped at the end."""
    for tool in ("java", "redis-server"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    settings = load_settings(
        stack_dir=tmp_path_factory.mktemp("stack"),
        kafka_port=KAFKA_PORT,
        kafka_controller_port=KAFKA_CONTROLLER_PORT,
        kafka_proxied_port=KAFKA_PROXIED_PORT,
        kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}",
        redis_port=REDIS_PORT,
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        redis_cluster_base_port=CLUSTER_BASE,
    )
    try:
        yield settings
    finally:
        down(settings)


def _pids(state: StackStatus) -> dict[str, int | None]:
    return {server.name: server.pid for server in state.servers}


def _assert_nothing_runs(state: StackStatus) -> None:
    assert state.running == []
    assert not state.healthy
    assert [server.name for server in state.servers] == ["kafka", "redis"]


def test_up_status_idempotent_down(stack_settings: Settings) -> None:
    started = up(stack_settings)
    assert started.healthy, started
    kafka, redis = started.server("kafka"), started.server("redis")
    assert kafka is not None and kafka.healthy and kafka.pid
    assert kafka.ports == (KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_PROXIED_PORT)
    assert kafka.version == "4.4.0"
    assert redis is not None and redis.healthy and redis.pid and redis.version
    assert redis.ports == (REDIS_PORT,)

    checked = status(stack_settings)
    assert checked.healthy
    assert _pids(checked) == _pids(started)

    again = up(stack_settings)
    assert again.healthy
    assert _pids(again) == _pids(started)
    assert all("already running" in action for action in again.actions), again.actions

    moved = stack_settings.model_copy(update={"redis_port": REDIS_PORT + 1})
    with pytest.raises(StackError, match="other settings"):
        up(moved)

    cmd = kafka_tool(
        stack_settings,
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        ["--bootstrap-server", f"127.0.0.1:{KAFKA_PORT}", "--list"],
    )
    listed = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr

    stopped = down(stack_settings)
    _assert_nothing_runs(stopped)
    assert any("kafka stopped" in action for action in stopped.actions)
    _assert_nothing_runs(status(stack_settings))

    again_down = down(stack_settings)
    _assert_nothing_runs(again_down)
    assert again_down.actions == ["kafka not running", "redis not running"]


def test_cluster_up_restart_down(stack_settings: Settings) -> None:
    started = up(stack_settings, cluster=True)
    assert started.healthy, started
    names = [server.name for server in started.servers]
    assert names == ["kafka", "redis", *(f"redis-cluster:{port}" for port in CLUSTER_PORTS)]

    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", CLUSTER_BASE)])
    try:
        info = client.cluster_info()
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_known_nodes"]) == 3
        assert len(client.get_primaries()) == 3
        for i in range(30):
            client.set(f"segflow-test:{i}", i)
        assert [int(client.get(f"segflow-test:{i}")) for i in range(30)] == list(range(30))
    finally:
        client.close()

    again = up(stack_settings, cluster=True)
    assert _pids(again) == _pids(started)
    assert "redis cluster already formed (cluster_state:ok)" in again.actions

    # A restart re-forms the cluster from each node's nodes.conf (no second `create`).
    down(stack_settings)
    restarted = up(stack_settings, cluster=True)
    assert restarted.healthy, restarted
    assert not any("created" in action for action in restarted.actions), restarted.actions

    stopped = down(stack_settings)
    assert sum("redis-cluster" in action for action in stopped.actions) == 3
    _assert_nothing_runs(stopped)
    _assert_nothing_runs(status(stack_settings))
