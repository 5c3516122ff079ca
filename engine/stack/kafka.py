"""The local Apache Kafka broker: one KRaft node (broker + controller) on loopback.

Jars come from Maven Central through ``deploy/local/pom.xml`` (copied once into
``<stack_dir>/kafka-libs``); the broker runs straight from them with ``java kafka.Kafka``.
Layout under ``<stack_dir>/kafka``: ``server.properties``, ``data/`` (log.dirs),
``kafka.log`` (stdout+stderr of the JVM) and ``kafka.pid``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import shutil
import string
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from engine.settings import Settings
from engine.stack.processes import (
    LOOPBACK,
    ServerStatus,
    StackError,
    ensure_ports_free,
    live_pid,
    port_open,
    require_command,
    run_checked,
    start_detached,
    stop_process,
    wait_until,
)

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local"
POM = DEPLOY_DIR / "pom.xml"
TEMPLATE = DEPLOY_DIR / "server.properties.template"
LOG4J2 = DEPLOY_DIR / "log4j2.properties"
SCALA = "2.13"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
JAVA_PACKAGE = "openjdk-17-jre-headless"


@dataclass(frozen=True)
class KafkaPaths:
    """Where the broker's files live under the stack dir."""

    libs: Path
    home: Path
    data: Path
    properties: Path
    log: Path
    pid: Path

    @classmethod
    def of(cls, settings: Settings) -> KafkaPaths:
        """The paths for ``settings.stack_dir``."""
        stack = Path(settings.stack_dir).resolve()
        home = stack / "kafka"
        return cls(
            libs=stack / "kafka-libs",
            home=home,
            data=home / "data",
            properties=home / "server.properties",
            log=home / "kafka.log",
            pid=home / "kafka.pid",
        )

    @property
    def match(self) -> tuple[str, ...]:
        """Strings the broker's command line contains (guards against a reused pid)."""
        return ("kafka.Kafka", str(self.properties))


def _deploy_file(path: Path) -> Path:
    if not path.exists():
        raise StackError(f"{path} not found: run segflow from its source checkout")
    return path


@lru_cache(maxsize=1)
def pinned_version() -> str:
    """The Kafka version pinned by the ``kafka.version`` property of deploy/local/pom.xml."""
    root = ET.parse(_deploy_file(POM)).getroot()
    for elem in root.iter():
        if elem.tag.rsplit("}", 1)[-1] == "kafka.version" and elem.text:
            return elem.text.strip()
    raise StackError(f"{POM} has no kafka.version property")


def installed_version(settings: Settings) -> str | None:
    """The version of the ``kafka_2.13-*.jar`` in the libs dir, if any."""
    for jar in sorted(KafkaPaths.of(settings).libs.glob(f"kafka_{SCALA}-*.jar")):
        found = re.fullmatch(rf"kafka_{re.escape(SCALA)}-(.+)\.jar", jar.name)
        if found:
            return found.group(1)
    return None


def render_server_properties(settings: Settings) -> str:
    """The broker's server.properties text for ``settings`` (ports and log.dirs filled in)."""
    template = string.Template(_deploy_file(TEMPLATE).read_text())
    return template.substitute(
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        proxied_port=settings.kafka_proxied_port,
        proxy_port=settings.kafka_proxy_port,
        log_dirs=KafkaPaths.of(settings).data,
    )


def _libs_stale(libs: Path, version: str) -> bool:
    if not (libs / f"kafka_{SCALA}-{version}.jar").exists():
        return True
    # A copy made before the pom pinned slf4j 2.x would make the broker log nothing.
    return any(libs.glob("slf4j-api-1.*.jar"))


def ensure_libs(settings: Settings) -> bool:
    """Copy the Kafka jars with Maven unless already there; True when a copy was made."""
    libs = KafkaPaths.of(settings).libs
    version = pinned_version()
    if not _libs_stale(libs, version):
        return False
    mvn = require_command("mvn", "maven")
    staging = libs.with_name(libs.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    run_checked([*cmd, f"-Dkafka.libs.dir={staging}"], "mvn dependency:copy-dependencies", 900)
    if not (staging / f"kafka_{SCALA}-{version}.jar").exists():
        raise StackError(f"mvn did not produce kafka_{SCALA}-{version}.jar in {staging}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return True


def java_command(settings: Settings, main_class: str, args: list[str], *jvm: str) -> list[str]:
    """``java`` running ``main_class`` on the Kafka classpath with segflow's log4j2 config."""
    java = require_command("java", JAVA_PACKAGE)
    classpath = f"{KafkaPaths.of(settings).libs}/*"
    log4j = f"-Dlog4j2.configurationFile={_deploy_file(LOG4J2)}"
    return [java, *jvm, "-cp", classpath, log4j, main_class, *args]


def format_storage(settings: Settings) -> bool:
    """Format ``log.dirs`` with a new cluster id on first start; True when it formatted."""
    paths = KafkaPaths.of(settings)
    if (paths.data / "meta.properties").exists():
        return False
    tool = "kafka.tools.StorageTool"
    out = run_checked(java_command(settings, tool, ["random-uuid"]), "kafka-storage random-uuid")
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        raise StackError("kafka-storage random-uuid printed no cluster id")
    args = ["format", "-t", lines[-1], "-c", str(paths.properties)]
    run_checked(java_command(settings, tool, args), "kafka-storage format")
    return True


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _run(coro: Coroutine[Any, Any, list[str]]) -> list[str]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _list_topics(options: dict[str, Any], timeout: float) -> list[str]:
    admin = AIOKafkaAdminClient(
        **options,
        client_id="segflow-stack",
        request_timeout_ms=max(1000, int(timeout * 1000)),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        return await asyncio.wait_for(admin.list_topics(), timeout)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def probe(port: int, timeout: float = 5.0, options: dict[str, Any] | None = None) -> list[str] | None:
    """Topic names from a real broker answer on ``127.0.0.1:port``, or None if none came.

    ``options``: aiokafka client options (``engine.kafka_clients.kafka_options``) for a broker
    that needs TLS or a login; default plain text to ``127.0.0.1:port``."""
    if not port_open(port):
        return None
    try:
        with _quiet("aiokafka"):
            return _run(_list_topics(options or {"bootstrap_servers": f"{LOOPBACK}:{port}"}, timeout))
    except Exception:
        return None


def _drifted(settings: Settings) -> bool:
    """True when the running broker's server.properties differs from what ``settings`` want."""
    path = KafkaPaths.of(settings).properties
    try:
        return path.read_text() != render_server_properties(settings)
    except OSError:
        return False


DRIFT = "running with other settings (ports or dirs) than requested; run `segflow stack down`"


def status(settings: Settings) -> ServerStatus:
    """The broker's status: pid from the pid file, health from a real metadata request."""
    paths = KafkaPaths.of(settings)
    ports = (settings.kafka_port, settings.kafka_controller_port, settings.kafka_proxied_port)
    version = installed_version(settings) or pinned_version()
    pid = live_pid(paths.pid, paths.match)
    if pid is None:
        return ServerStatus("kafka", ports, None, version, False, "not running")
    if _drifted(settings):
        return ServerStatus("kafka", ports, pid, version, False, f"kafka {DRIFT}")
    topics = probe(settings.kafka_port)
    if topics is None:
        detail = f"process alive but the broker does not answer; see {paths.log}"
        return ServerStatus("kafka", ports, pid, version, False, detail)
    detail = f"answering on {LOOPBACK}:{settings.kafka_port} ({len(topics)} topics)"
    return ServerStatus("kafka", ports, pid, version, True, detail)


def _answers(port: int) -> bool:
    return probe(port) is not None


def up(settings: Settings, timeout: float = START_TIMEOUT) -> str:
    """Start the broker unless it already answers; wait until it does. Returns what it did."""
    paths = KafkaPaths.of(settings)
    port = settings.kafka_port
    pid = live_pid(paths.pid, paths.match)
    if pid is not None:
        if _drifted(settings):
            raise StackError(f"kafka (pid {pid}) is {DRIFT} first")
        if _answers(port):
            return f"kafka already running (pid {pid})"
        waited = wait_until(lambda: _answers(port), timeout, "kafka", paths.log, pid)
        return f"kafka was starting (pid {pid}); answered after {waited:.1f}s"
    java_command(settings, "kafka.Kafka", [])  # fail early when java is missing
    ensure_ports_free(
        (port, settings.kafka_controller_port, settings.kafka_proxied_port),
        "SEGFLOW_KAFKA_PORT / SEGFLOW_KAFKA_CONTROLLER_PORT / SEGFLOW_KAFKA_PROXIED_PORT",
    )
    ensure_libs(settings)
    paths.data.mkdir(parents=True, exist_ok=True)
    paths.properties.write_text(render_server_properties(settings))
    format_storage(settings)
    jvm = (f"-Xmx{settings.kafka_heap}", "-Xms256m")
    cmd = java_command(settings, "kafka.Kafka", [str(paths.properties)], *jvm)
    pid = start_detached(cmd, paths.log, paths.pid, cwd=paths.home)
    try:
        waited = wait_until(lambda: _answers(port), timeout, "kafka", paths.log, pid)
    except StackError:
        stop_process(paths.pid, paths.match, timeout=10.0)
        raise
    return f"kafka started (pid {pid}) in {waited:.1f}s"


def down(settings: Settings) -> str:
    """Stop the broker (SIGTERM, SIGKILL after 30 s) if it runs. Returns what it did."""
    paths = KafkaPaths.of(settings)
    pid = stop_process(paths.pid, paths.match, timeout=STOP_TIMEOUT)
    return "kafka not running" if pid is None else f"kafka stopped (pid {pid})"


def tool_command(settings: Settings, main_class: str, args: list[str]) -> list[str]:
    """The java command line running Kafka tool ``main_class`` with ``args``."""
    return java_command(settings, main_class, list(args))
