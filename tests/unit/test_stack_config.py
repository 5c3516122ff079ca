"""Config rendering and pid-file handling of the local stack manager (no servers started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import Settings, load_settings
from engine.stack import StackError, kafka_tool, status
from engine.stack import kafka as kafka_server
from engine.stack import redis as redis_server
from engine.stack.processes import live_pid


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        stack_dir=tmp_path / "stack",
        kafka_port=39092,
        kafka_controller_port=39093,
        kafka_proxied_port=39096,
        kafka_proxy_port=39097,
        redis_port=36379,
        redis_cluster_base_port=37100,
    )


def _properties(text: str) -> dict[str, str]:
    lines = (line for line in text.splitlines() if line and not line.startswith("#"))
    return dict(line.split("=", 1) for line in lines)


def test_server_properties_has_ports_and_dirs(settings: Settings) -> None:
    text = kafka_server.render_server_properties(settings)
    assert "$" not in text
    props = _properties(text)
    listeners = "PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093,PROXIED://127.0.0.1:39096"
    assert props["listeners"] == listeners
    # The proxied listener advertises the proxy's port, not its own.
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:39092,PROXIED://127.0.0.1:39097"
    assert "PROXIED:PLAINTEXT" in props["listener.security.protocol.map"].split(",")
    assert props["controller.quorum.voters"] == "1@127.0.0.1:39093"
    assert props["log.dirs"] == str((settings.stack_dir / "kafka" / "data").resolve())
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"


def test_pinned_kafka_version_comes_from_pom() -> None:
    assert kafka_server.pinned_version() == "4.4.0"


def test_redis_conf_has_port_and_aof(settings: Settings) -> None:
    lines = redis_server.render_redis_conf(settings).splitlines()
    assert "port 36379" in lines
    assert "appendonly yes" in lines
    assert "bind 127.0.0.1" in lines
    assert "daemonize no" in lines
    assert 'save ""' in lines
    assert f'dir "{(settings.stack_dir / "redis").resolve()}"' in lines
    assert not any(line.startswith("cluster-enabled") for line in lines)


def test_cluster_node_confs(settings: Settings) -> None:
    nodes = redis_server.cluster_nodes(settings)
    assert [node.port for node in nodes] == [37100, 37101, 37102]
    assert len({node.home for node in nodes}) == 3
    for node in nodes:
        lines = redis_server.render_conf(node).splitlines()
        assert f"port {node.port}" in lines
        assert "cluster-enabled yes" in lines
        assert "cluster-config-file nodes.conf" in lines
        assert "appendonly yes" in lines
        assert f'dir "{node.home}"' in lines


def test_kafka_tool_command(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.stack.processes.shutil.which", lambda name: f"/usr/bin/{name}")
    cmd = kafka_tool(settings, "org.apache.kafka.tools.ConsoleProducer", ["--topic", "t"])
    libs = (settings.stack_dir / "kafka-libs").resolve()
    assert cmd[0] == "/usr/bin/java"
    assert cmd[cmd.index("-cp") + 1] == f"{libs}/*"
    assert any(arg.startswith("-Dlog4j2.configurationFile=") for arg in cmd)
    assert cmd[-3:] == ["org.apache.kafka.tools.ConsoleProducer", "--topic", "t"]


def test_missing_java_and_maven_say_what_to_install(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.stack.processes.shutil.which", lambda name: None)
    with pytest.raises(StackError, match="openjdk-17-jre-headless"):
        kafka_tool(settings, "kafka.Kafka", [])
    with pytest.raises(StackError, match="apt-get install -y maven"):
        kafka_server.ensure_libs(settings)


def test_stale_pid_files_are_removed(settings: Settings) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_files = [
        kafka_server.KafkaPaths.of(settings).pid,
        redis_server.standalone_node(settings).pid_file,
    ]
    for pid_file in pid_files:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{dead.pid}\n")

    state = status(settings)
    assert state.running == []
    assert not any(pid_file.exists() for pid_file in pid_files)


def test_pid_of_another_program_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            pid_file.write_text(f"{other.pid}\n")
            assert live_pid(pid_file, ("python",)) == other.pid
            assert live_pid(pid_file, ("kafka.Kafka",)) is None
            assert not pid_file.exists()
        finally:
            other.kill()
