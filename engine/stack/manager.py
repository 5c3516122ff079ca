"""The local stack as a whole: ``up``, ``down`` and ``status`` of Kafka + Redis on loopback
(and, optionally, a Redis Cluster, Prometheus and toxiproxy).

``up`` is idempotent (servers that already answer are left alone) and only returns once every
server really answers; ``down`` stops whatever runs; ``status`` never changes anything except
removing stale pid files. Failures raise :class:`StackError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.settings import Settings
from engine.stack import kafka as kafka_server
from engine.stack import prometheus as prometheus_server
from engine.stack import redis as redis_server
from engine.stack import secure, secure_kafka, secure_redis
from engine.stack import toxiproxy as toxiproxy_server
from engine.stack.processes import ServerStatus, StackError

__all__ = [
    "ServerStatus",
    "StackError",
    "StackStatus",
    "down",
    "down_secure",
    "kafka_tool",
    "status",
    "status_secure",
    "up",
    "up_secure",
]


@dataclass(frozen=True)
class StackStatus:
    """Every local server's status, plus what the last ``up``/``down`` did (one line each)."""

    servers: list[ServerStatus]
    actions: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when every listed server answers (and at least one is listed)."""
        return bool(self.servers) and all(server.healthy for server in self.servers)

    @property
    def running(self) -> list[ServerStatus]:
        """The servers whose process is alive."""
        return [server for server in self.servers if server.running]

    def server(self, name: str) -> ServerStatus | None:
        """The status of the server called ``name`` ("kafka", "redis", "redis-cluster:<port>")."""
        return next((server for server in self.servers if server.name == name), None)


def status(settings: Settings) -> StackStatus:
    """Kafka and Redis status, plus the Redis Cluster masters, Prometheus and toxiproxy when
    they run."""
    servers = [kafka_server.status(settings), redis_server.status(settings)]
    servers += redis_server.cluster_status(settings)
    if prometheus_server.running(settings):
        servers.append(prometheus_server.status(settings))
    if toxiproxy_server.running(settings):
        servers.append(toxiproxy_server.status(settings))
    return StackStatus(servers)


def up(
    settings: Settings, cluster: bool = False, prometheus: bool = False, proxy: bool = False
) -> StackStatus:
    """Start Redis and Kafka (with ``cluster``, a 3-master Redis Cluster; with ``prometheus``,
    Prometheus scraping the workers; with ``proxy``, toxiproxy in front of Kafka and Redis)
    unless running.

    Waits until each server really answers (Kafka: a metadata request; Redis: PING; cluster:
    cluster_state:ok; Prometheus: /-/ready; toxiproxy: /version) and raises StackError naming
    the log file when one does not.
    """
    actions = [redis_server.up(settings)]
    if cluster:
        actions += redis_server.cluster_up(settings)
    actions.append(kafka_server.up(settings))
    if prometheus:
        actions.append(prometheus_server.up(settings))
    if proxy:
        actions.append(toxiproxy_server.up(settings))
    return StackStatus(status(settings).servers, actions)


def down(settings: Settings) -> StackStatus:
    """Stop Kafka, Redis, any Redis Cluster masters, Prometheus and toxiproxy; fine when
    nothing runs."""
    actions = [kafka_server.down(settings), redis_server.down(settings)]
    actions += redis_server.cluster_down(settings)
    for optional in (prometheus_server, toxiproxy_server):
        stopped = optional.down(settings)
        if stopped is not None:
            actions.append(stopped)
    return StackStatus(status(settings).servers, actions)


def status_secure(settings: Settings) -> StackStatus:
    """The secure stack's Kafka and Redis (``engine.stack.secure``)."""
    return StackStatus([secure_kafka.status(settings), secure_redis.status(settings)])


def up_secure(settings: Settings) -> StackStatus:
    """Start the secure stack unless running: certificates and passwords (made once), Redis
    with TLS and ACL users, Kafka with SASL_SSL and the worker's ACLs; writes ``client.env``."""
    _, actions = secure.prepare(settings)
    actions.append(secure_redis.up(settings))
    actions += secure_kafka.up(settings)
    actions.append(f"client settings (worker user): {secure.write_client_env(settings)}")
    return StackStatus(status_secure(settings).servers, actions)


def down_secure(settings: Settings) -> StackStatus:
    """Stop the secure stack's Kafka and Redis; fine when nothing runs."""
    actions = [secure_kafka.down(settings), secure_redis.down(settings)]
    return StackStatus(status_secure(settings).servers, actions)


def kafka_tool(settings: Settings, main_class: str, args: list[str]) -> list[str]:
    """The java command line running Kafka tool class ``main_class`` with ``args``.

    Same classpath and log4j2 config as the broker, e.g. ``main_class=
    "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"``. The jars must have been
    copied (``up`` does that).
    """
    return kafka_server.tool_command(settings, main_class, args)
