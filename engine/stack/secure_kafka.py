"""The secure stack's Kafka: one KRaft node with a SASL_SSL listener (SCRAM-SHA-512) and ACLs.

Same jars and JVM as the plain broker (``engine.stack.kafka``), its own home
``<stack_dir>/secure/kafka``: ``server.properties`` (from
``deploy/local/server-secure.properties.template``, mode 0600), ``admin.properties`` (the admin's
client config for Kafka's tools), ``data/``, ``kafka.log``, ``kafka.pid``, ``acls.applied``.
The SCRAM users (admin, segflow) are written into the metadata when the storage is formatted
(``kafka-storage format --add-scram``); the worker's ACLs are added once the broker answers.
"""

from __future__ import annotations

import string
from pathlib import Path

from engine.kafka_clients import kafka_options
from engine.settings import Settings
from engine.stack import kafka as plain
from engine.stack.processes import (
    LOOPBACK,
    ServerStatus,
    StackError,
    ensure_ports_free,
    health,
    live_pid,
    run_checked,
    running_action,
    start_detached,
    stop_process,
    wait_until,
)
from engine.stack.secure import ADMIN, WORKER, SecurePaths, client_settings, drift, password

NAME = "kafka-secure"
TEMPLATE = plain.DEPLOY_DIR / "server-secure.properties.template"
ACL_TOOL = "org.apache.kafka.tools.AclCommand"
CONFIG_TOOL = "org.apache.kafka.tools.ConfigCommand"
MECHANISM = "SCRAM-SHA-512"
START_TIMEOUT = 180.0
"""Longer than the plain broker's: TLS on both listeners and SCRAM make its start slower (measured
41-65 s for a first start on the 2-core test machine under load, against 60 s for the plain one)."""


def paths(settings: Settings) -> plain.KafkaPaths:
    """The secure broker's files (the jars are the plain stack's)."""
    home = SecurePaths.of(settings).kafka
    return plain.KafkaPaths(
        libs=plain.KafkaPaths.of(settings).libs,
        home=home,
        data=home / "data",
        properties=home / "server.properties",
        log=home / "kafka.log",
        pid=home / "kafka.pid",
    )


def controller_port(settings: Settings) -> int:
    """The controller listener: the port after the SASL_SSL one."""
    return settings.secure_kafka_port + 1


def render_properties(settings: Settings) -> str:
    """The broker's server.properties (holds the admin password: written with mode 0600)."""
    secure = SecurePaths.of(settings)
    return string.Template(TEMPLATE.read_text()).substitute(
        port=settings.secure_kafka_port,
        controller_port=controller_port(settings),
        log_dirs=paths(settings).data,
        admin_user=ADMIN,
        admin_password=password(secure, "kafka", ADMIN),
        keystore=secure.tls.keystore,
        truststore=secure.tls.ca,
    )


def _jaas(user: str, secret: str) -> str:
    module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return f'{module} required username="{user}" password="{secret}";'


def admin_properties(settings: Settings) -> Path:
    """The admin's client config file for Kafka's command-line tools (mode 0600)."""
    secure = SecurePaths.of(settings)
    path = secure.kafka / "admin.properties"
    text = (
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={MECHANISM}\n"
        f"sasl.jaas.config={_jaas(ADMIN, password(secure, 'kafka', ADMIN))}\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={secure.tls.ca}\n"
    )
    if not path.exists() or path.read_text() != text:
        _write_private(path, text)
    return path


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def format_storage(settings: Settings) -> bool:
    """Format the data dir with the SCRAM users on first start; True when it formatted."""
    files = paths(settings)
    if (files.data / "meta.properties").exists():
        return False
    tool = "kafka.tools.StorageTool"
    out = run_checked(plain.java_command(settings, tool, ["random-uuid"]), "kafka-storage random-uuid")
    cluster_id = [line.strip() for line in out.splitlines() if line.strip()][-1]
    secure = SecurePaths.of(settings)
    args = ["format", "-t", cluster_id, "-c", str(files.properties)]
    for user in (ADMIN, WORKER):
        args += ["--add-scram", f"{MECHANISM}=[name={user},password={password(secure, 'kafka', user)}]"]
    run_checked(plain.java_command(settings, tool, args), "kafka-storage format --add-scram")
    (files.home / "acls.applied").unlink(missing_ok=True)
    return True


def probe(settings: Settings, timeout: float = 5.0) -> list[str] | None:
    """Topic names as the admin sees them over SASL_SSL, or None when the broker does not answer."""
    options = kafka_options(client_settings(settings, ADMIN))
    return plain.probe(settings.secure_kafka_port, timeout, options)


def worker_acl_args(app_id: str, user: str = WORKER) -> list[str]:
    """AclCommand arguments for the worker's ACLs: produce and consume the topics whose names
    start with ``<app_id>.`` (Write, Read, Create, Describe), use the groups starting with
    ``app_id`` (Read)."""
    return [
        "--add",
        f"--allow-principal=User:{user}",
        "--producer",
        "--consumer",
        f"--topic={app_id}.",
        f"--group={app_id}",
        "--resource-pattern-type=prefixed",
    ]


def grant(settings: Settings, args: list[str]) -> None:
    """Run Kafka's AclCommand as the admin with ``args``."""
    bootstrap = f"{LOOPBACK}:{settings.secure_kafka_port}"
    base = [f"--bootstrap-server={bootstrap}", f"--command-config={admin_properties(settings)}"]
    run_checked(plain.java_command(settings, ACL_TOOL, [*base, *args]), "kafka-acls", 120)


def apply_acls(settings: Settings) -> str | None:
    """Add the worker's ACLs for ``settings.app_id`` unless already done; what it did."""
    marker = paths(settings).home / "acls.applied"
    wanted = " ".join(worker_acl_args(settings.app_id)) + "\n"
    if marker.exists() and wanted in marker.read_text():
        return None
    grant(settings, worker_acl_args(settings.app_id))
    with marker.open("a") as out:
        out.write(wanted)
    return f"{NAME}: ACLs for user {WORKER} on topics {settings.app_id}.* and groups {settings.app_id}*"


def add_user(settings: Settings, user: str, secret: str) -> None:
    """Create (or change the password of) SCRAM user ``user`` with Kafka's ConfigCommand."""
    bootstrap = f"{LOOPBACK}:{settings.secure_kafka_port}"
    args = [f"--bootstrap-server={bootstrap}", f"--command-config={admin_properties(settings)}"]
    args += ["--alter", "--entity-type=users", f"--entity-name={user}"]
    args += [f"--add-config={MECHANISM}=[password={secret}]"]
    run_checked(plain.java_command(settings, CONFIG_TOOL, args), "kafka-configs --alter users", 120)


def _drift(settings: Settings) -> str | None:
    return drift(paths(settings).properties, render_properties(settings))


def up(settings: Settings, timeout: float = START_TIMEOUT) -> list[str]:
    """Start the broker unless it answers, then make sure the worker's ACLs exist."""
    files = paths(settings)
    answers = lambda: probe(settings) is not None  # noqa: E731
    pid = live_pid(files.pid, files.match)
    if pid is not None:
        actions = [running_action(NAME, pid, _drift(settings), answers, timeout, files.log)]
    else:
        plain.java_command(settings, "kafka.Kafka", [])  # fail early when java is missing
        ports = (settings.secure_kafka_port, controller_port(settings))
        ensure_ports_free(ports, "SEGFLOW_SECURE_KAFKA_PORT (and the next port)")
        plain.ensure_libs(settings)
        files.data.mkdir(parents=True, exist_ok=True)
        files.home.chmod(0o700)
        _write_private(files.properties, render_properties(settings))
        format_storage(settings)
        jvm = (f"-Xmx{settings.kafka_heap}", "-Xms256m")
        cmd = plain.java_command(settings, "kafka.Kafka", [str(files.properties)], *jvm)
        pid = start_detached(cmd, files.log, files.pid, cwd=files.home)
        try:
            waited = wait_until(answers, timeout, NAME, files.log, pid)
        except StackError:
            stop_process(files.pid, files.match, timeout=10.0)
            raise
        where = f"SASL_SSL on {LOOPBACK}:{settings.secure_kafka_port}"
        actions = [f"{NAME} started (pid {pid}, {where}) in {waited:.1f}s"]
    granted = apply_acls(settings)
    return actions + ([granted] if granted else [])


def down(settings: Settings) -> str:
    """Stop the broker if it runs."""
    files = paths(settings)
    pid = stop_process(files.pid, files.match, timeout=plain.STOP_TIMEOUT)
    return f"{NAME} not running" if pid is None else f"{NAME} stopped (pid {pid})"


def status(settings: Settings) -> ServerStatus:
    """The broker's status: pid file, then a metadata request as the admin over SASL_SSL."""
    files = paths(settings)
    ports = (settings.secure_kafka_port, controller_port(settings))
    pid = live_pid(files.pid, files.match)

    def answer() -> tuple[str | None, str] | None:
        topics = probe(settings)
        where = f"SASL_SSL + ACLs on {LOOPBACK}:{settings.secure_kafka_port}"
        return None if topics is None else (None, f"{where} ({len(topics)} topics)")

    version = plain.installed_version(settings) or plain.pinned_version()
    return health(NAME, ports, pid, _drift(settings) if pid else None, answer, files.log, version)
