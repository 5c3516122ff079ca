"""The optional local toxiproxy: a TCP proxy between segflow and its servers, to inject faults.

Layout under ``<stack_dir>/toxiproxy``: ``bin/toxiproxy-server`` (built once from its Go module
with ``go install``; rebuilt only when its version is not the pinned one), ``toxiproxy.log`` and
``toxiproxy.pid``. The API listens on ``127.0.0.1:SEGFLOW_TOXIPROXY_PORT``; ``up`` makes two
proxies, ``kafka`` (``SEGFLOW_KAFKA_PROXY_PORT`` to the broker's ``PROXIED`` listener, which
advertises the proxy's port: a client bootstrapped there reaches the broker only through the
proxy) and ``redis`` (``SEGFLOW_REDIS_PROXY_PORT`` to ``SEGFLOW_REDIS_PORT``). Faults are toxics
added with :class:`engine.stack.toxiproxy_api.ToxiproxyClient`.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

from engine.settings import Settings
from engine.stack.processes import (
    LOOPBACK,
    ServerStatus,
    StackError,
    ensure_ports_free,
    live_pid,
    run_checked,
    start_detached,
    stop_process,
    wait_until,
)
from engine.stack.toxiproxy_api import Proxy, ToxiproxyClient

MODULE = "github.com/Shopify/toxiproxy/v2"
VERSION = "v2.12.0"
"""The toxiproxy release built. Pinned: the toxics' semantics the fault tests rely on (timeout 0
holds data, reset_peer resets once data arrives, PATCH of a proxy) are those of this release, the
newest when this was written; a newer one is taken on purpose, by changing this line."""
GO_FALLBACK = Path("/usr/local/go/bin/go")
BUILD_TIMEOUT = 900.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
KAFKA_PROXY, REDIS_PROXY = "kafka", "redis"


@dataclass(frozen=True)
class ToxiproxyPaths:
    """Where the local toxiproxy keeps its files under the stack dir."""

    home: Path
    bin: Path
    binary: Path
    log: Path
    pid: Path

    @classmethod
    def of(cls, settings: Settings) -> ToxiproxyPaths:
        """The paths for ``settings.stack_dir``."""
        home = Path(settings.stack_dir).resolve() / "toxiproxy"
        return cls(
            home=home,
            bin=home / "bin",
            binary=home / "bin" / "toxiproxy-server",
            log=home / "toxiproxy.log",
            pid=home / "toxiproxy.pid",
        )

    @property
    def match(self) -> tuple[str, ...]:
        """Strings the server's command line contains (guards against a reused pid)."""
        return (str(self.binary),)


def stack_proxies(settings: Settings) -> dict[str, tuple[int, str]]:
    """The proxies ``up`` makes: name -> (listen port, upstream ``host:port``)."""
    return {
        KAFKA_PROXY: (settings.kafka_proxy_port, f"{LOOPBACK}:{settings.kafka_proxied_port}"),
        REDIS_PROXY: (settings.redis_proxy_port, f"{LOOPBACK}:{settings.redis_port}"),
    }


def client(settings: Settings) -> ToxiproxyClient:
    """A client of the local toxiproxy's API."""
    return ToxiproxyClient(settings.toxiproxy_port)


def installed_version(binary: Path) -> str | None:
    """The version ``binary -version`` prints, or None when there is no working binary."""
    if not binary.exists():
        return None
    try:
        out = run_checked([str(binary), "-version"], "toxiproxy-server -version", 30)
    except StackError:
        return None
    found = re.search(r"version (\S+)", out)
    return found.group(1) if found else None


def find_go() -> str:
    """Path of the ``go`` command (PATH, then /usr/local/go/bin/go)."""
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if found is None:
        raise StackError(
            "`go` not found (needed once, to build toxiproxy): install Go 1.23+ or add it to PATH"
        )
    return found


def ensure_binary(settings: Settings) -> bool:
    """Build the pinned toxiproxy server unless it is there; True when it was built."""
    paths = ToxiproxyPaths.of(settings)
    if installed_version(paths.binary) == VERSION:
        return False
    go = find_go()
    staging = paths.bin.with_name("bin.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # The version is stamped in: `go install` leaves toxiproxy's own "git" otherwise.
    ldflags = f"-X {MODULE}.Version={VERSION}"
    env = dict(os.environ, GOBIN=str(staging), CGO_ENABLED="0")
    command = [go, "install", "-ldflags", ldflags, f"{MODULE}/cmd/server@{VERSION}"]
    run_checked(command, f"go install toxiproxy {VERSION}", BUILD_TIMEOUT, env=env)
    built = staging / "server"
    if not built.exists():
        raise StackError(f"go install did not produce {built}")
    built.rename(staging / paths.binary.name)
    shutil.rmtree(paths.bin, ignore_errors=True)
    staging.rename(paths.bin)
    if installed_version(paths.binary) != VERSION:
        raise StackError(f"{paths.binary} does not report version {VERSION}")
    return True


def _answers(settings: Settings) -> bool:
    try:
        client(settings).version()
    except StackError:
        return False
    return True


def _drift(settings: Settings, pid: int) -> str | None:
    """Why the running server is not the one ``settings`` want (another API port), if it is not."""
    try:
        args = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    if "-port" in args and args.index("-port") + 1 < len(args):
        port = args[args.index("-port") + 1]
        if port != str(settings.toxiproxy_port):
            return f"listening on port {port}, not {settings.toxiproxy_port}; run `segflow stack down` first"
    return None


def _ensure_proxies(settings: Settings) -> list[str]:
    api = client(settings)
    made = []
    for name, (listen, upstream) in stack_proxies(settings).items():
        _, created = api.ensure_proxy(name, listen, upstream)
        if created:
            made.append(f"{name} {listen}->{upstream.rsplit(':', 1)[1]}")
    return made


def up(settings: Settings, timeout: float = START_TIMEOUT) -> str:
    """Start toxiproxy unless it answers, with the stack's proxies; returns what it did."""
    paths = ToxiproxyPaths.of(settings)
    pid = live_pid(paths.pid, paths.match)
    if pid is not None:
        drift = _drift(settings, pid)
        if drift is not None:
            raise StackError(f"toxiproxy (pid {pid}) is {drift}")
        wait_until(lambda: _answers(settings), timeout, "toxiproxy", paths.log, pid)
        made = _ensure_proxies(settings)
        return f"toxiproxy already running (pid {pid})" + (f"; made {', '.join(made)}" if made else "")
    built = ensure_binary(settings)
    listen = [port for port, _ in stack_proxies(settings).values()]
    ensure_ports_free(
        (settings.toxiproxy_port, *listen),
        "SEGFLOW_TOXIPROXY_PORT / SEGFLOW_KAFKA_PROXY_PORT / SEGFLOW_REDIS_PROXY_PORT",
    )
    cmd = [str(paths.binary), "-host", LOOPBACK, "-port", str(settings.toxiproxy_port)]
    pid = start_detached(cmd, paths.log, paths.pid, cwd=paths.home)
    try:
        waited = wait_until(lambda: _answers(settings), timeout, "toxiproxy", paths.log, pid)
        made = _ensure_proxies(settings)
    except StackError:
        stop_process(paths.pid, paths.match, timeout=STOP_TIMEOUT)
        raise
    how = f"built {VERSION} and started" if built else "started"
    return f"toxiproxy {how} (pid {pid}) in {waited:.1f}s; proxies {', '.join(made)}"


def down(settings: Settings) -> str | None:
    """Stop toxiproxy if it runs; returns what it did, or None when it was not running."""
    paths = ToxiproxyPaths.of(settings)
    pid = stop_process(paths.pid, paths.match, STOP_TIMEOUT)
    return None if pid is None else f"toxiproxy stopped (pid {pid})"


def running(settings: Settings) -> bool:
    """True when the local toxiproxy process is alive."""
    paths = ToxiproxyPaths.of(settings)
    return live_pid(paths.pid, paths.match) is not None


def _describe(proxy: Proxy) -> str:
    text = f"{proxy.name} {proxy.listen.rsplit(':', 1)[1]}->{proxy.upstream.rsplit(':', 1)[1]}"
    if not proxy.enabled:
        text += " DISABLED"
    if proxy.toxics:
        text += f" toxics={'+'.join(proxy.toxics)}"
    return text


def status(settings: Settings) -> ServerStatus:
    """The local toxiproxy's status: healthy when its API answers and the stack's proxies exist
    as ``up`` made them (a disabled proxy or a toxic is shown, and is no failure)."""
    paths = ToxiproxyPaths.of(settings)
    wanted = stack_proxies(settings)
    ports = (settings.toxiproxy_port, *(port for port, _ in wanted.values()))
    pid = live_pid(paths.pid, paths.match)
    if pid is None:
        return ServerStatus("toxiproxy", ports, None, None, False, "not running")
    drift = _drift(settings, pid)
    if drift is not None:
        return ServerStatus("toxiproxy", ports, pid, None, False, f"toxiproxy {drift}")
    api = client(settings)
    try:
        version, proxies = api.version(), api.proxies()
    except StackError:
        detail = f"process alive but its API does not answer; see {paths.log}"
        return ServerStatus("toxiproxy", ports, pid, None, False, detail)
    missing = [
        name
        for name, (listen, upstream) in wanted.items()
        if name not in proxies
        or (proxies[name].listen, proxies[name].upstream) != (f"{LOOPBACK}:{listen}", upstream)
    ]
    shown = "; ".join(_describe(proxies[name]) for name in sorted(proxies))
    if missing:
        detail = f"proxies {', '.join(missing)} missing or moved; run `segflow stack up --proxy` ({shown})"
        return ServerStatus("toxiproxy", ports, pid, version, False, detail)
    return ServerStatus("toxiproxy", ports, pid, version, True, f"api on {LOOPBACK}:{ports[0]}; {shown}")
