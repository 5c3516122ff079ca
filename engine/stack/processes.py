"""Process plumbing for the local stack: pid files, liveness, ports, detached start, stop.

Servers are started in their own session (``start_new_session=True``) so they outlive the
``segflow`` command that started them; their pid is kept in a pid file next to their log.
A pid file whose process is gone (or is now some other program) is stale and removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

LOOPBACK = "127.0.0.1"


class StackError(Exception):
    """The local stack cannot be started, checked or stopped; the message is one line."""


@dataclass(frozen=True)
class ServerStatus:
    """What one local server is doing: its ports, pid, version and whether it really answers."""

    name: str
    ports: tuple[int, ...]
    pid: int | None
    version: str | None
    healthy: bool
    detail: str

    @property
    def running(self) -> bool:
        """True when a process for this server is alive (healthy or not)."""
        return self.pid is not None


def require_command(name: str, apt_package: str) -> str:
    """Path of executable ``name``, or a StackError saying which apt package to install."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` not found: install it with `apt-get install -y {apt_package}`")
    return path


def ensure_command(name: str, apt_package: str, *apt_options: str) -> str:
    """Path of executable ``name``; installs Debian's ``apt_package`` when missing and we are root
    (``apt-get update`` first only when the install fails without it)."""
    found = shutil.which(name)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return require_command(name, apt_package)
    install = ["env", "DEBIAN_FRONTEND=noninteractive", apt, "install", "-y", *apt_options, apt_package]
    try:
        run_checked(install, f"apt-get install {apt_package}", 900)
    except StackError:
        run_checked([apt, "update"], "apt-get update", 900)
        run_checked(install, f"apt-get install {apt_package}", 900)
    return require_command(name, apt_package)


def read_pid(pid_file: Path) -> int | None:
    """The pid stored in ``pid_file``, or None when it is missing or unreadable."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int, match: Sequence[str] = ()) -> bool:
    """True when ``pid`` runs (not a zombie) and its command line contains every ``match``."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return False
        cmdline = " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process: trust the pid file
    return all(part in cmdline for part in match)


def live_pid(pid_file: Path, match: Sequence[str] = ()) -> int | None:
    """The pid in ``pid_file`` if that process is alive; a stale pid file is removed."""
    pid = read_pid(pid_file)
    if pid is not None and process_alive(pid, match):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    """A short description of the process listening on ``port`` ("pid N (name)"), if known."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    break
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return "another process"


def ensure_ports_free(ports: Sequence[int], setting: str) -> None:
    """Raise StackError when one of ``ports`` is already taken by a process we did not start."""
    for port in ports:
        if port_open(port):
            raise StackError(
                f"port {port} is already in use by {port_owner(port)}; stop it or choose "
                f"another port with {setting}"
            )


def last_log_line(log_file: Path, max_chars: int = 300) -> str:
    """The last non-empty line of ``log_file`` (shortened), or "" when there is none."""
    try:
        with log_file.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:max_chars]
    return ""


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    log_file: Path,
    pid: int | None = None,
    interval: float = 0.25,
) -> float:
    """Poll ``check`` until it is true; return the seconds waited.

    Raises StackError naming ``log_file`` when ``timeout`` passes or process ``pid`` dies first.
    """
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if pid is not None and not process_alive(pid):
            last = last_log_line(log_file)
            hint = f" (last line: {last})" if last else ""
            raise StackError(f"{what} exited during startup; see {log_file}{hint}")
        if time.monotonic() - start > timeout:
            raise StackError(f"{what} did not answer within {timeout:.0f}s; see {log_file}")
        time.sleep(interval)


def wait_for_port(port: int, timeout: float, what: str, log_file: Path, pid: int | None = None) -> float:
    """Wait until ``127.0.0.1:port`` accepts connections; see :func:`wait_until`."""
    return wait_until(lambda: port_open(port), timeout, what, log_file, pid)


def start_detached(cmd: Sequence[str], log_file: Path, pid_file: Path, cwd: Path | None = None) -> int:
    """Start ``cmd`` in a new session, stdout+stderr appended to ``log_file``; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our own child (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(pid_file: Path, match: Sequence[str] = (), timeout: float = 20.0) -> int | None:
    """Stop the process in ``pid_file``: SIGTERM, then SIGKILL after ``timeout`` seconds.

    Returns the pid that was stopped, or None when nothing was running. The pid file is removed.
    """
    pid = live_pid(pid_file, match)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 5.0
        while process_alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.05)
    _reap(pid)
    pid_file.unlink(missing_ok=True)
    return pid


def run_checked(
    cmd: Sequence[str], what: str, timeout: float = 300.0, env: Mapping[str, str] | None = None
) -> str:
    """Run ``cmd`` (in ``env``, default ours) to completion and return its stdout; StackError with
    its last line on failure."""
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"{what} did not finish within {timeout:.0f}s") from None
    except OSError as exc:
        raise StackError(f"{what} could not run: {exc}") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
        last = lines[-1][:300] if lines else f"exit status {done.returncode}"
        raise StackError(f"{what} failed: {last}")
    return done.stdout


def running_action(
    name: str,
    pid: int,
    drift: str | None,
    answers: Callable[[], bool],
    timeout: float,
    log_file: Path,
) -> str:
    """What ``up`` reports for a server whose process already runs: refuse when its config
    drifted (``drift``: why), else wait until it answers (it may still be starting)."""
    if drift is not None:
        raise StackError(f"{name} (pid {pid}) is {drift}")
    if answers():
        return f"{name} already running (pid {pid})"
    waited = wait_until(answers, timeout, name, log_file, pid)
    return f"{name} was starting (pid {pid}); answered after {waited:.1f}s"


def health(
    name: str,
    ports: tuple[int, ...],
    pid: int | None,
    drift: str | None,
    answer: Callable[[], tuple[str | None, str] | None],
    log_file: Path,
    version: str | None = None,
) -> ServerStatus:
    """A server's status from its pid, its config drift and ``answer()``: (version, detail) when
    it answers, None when it does not."""
    if pid is None:
        return ServerStatus(name, ports, None, version, False, "not running")
    if drift is not None:
        return ServerStatus(name, ports, pid, version, False, f"{name} {drift}")
    answered = answer()
    if answered is None:
        detail = f"process alive but does not answer; see {log_file}"
        return ServerStatus(name, ports, pid, version, False, detail)
    found, detail = answered
    return ServerStatus(name, ports, pid, found or version, True, detail)
