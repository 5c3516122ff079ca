"""The secure stack's Redis: Debian's ``redis-server`` with a TLS port only and ACL users.

``<stack_dir>/secure/redis``: ``redis.conf`` (``port 0``, ``tls-port``; clients need no
certificate of their own, they log in as an ACL user), ``users.acl`` (passwords as SHA-256
hashes), AOF data, ``redis.log``, ``redis.pid``.
"""

from __future__ import annotations

import hashlib

import redis as redis_py

from engine.settings import Settings
from engine.stack.processes import (
    LOOPBACK,
    ServerStatus,
    StackError,
    ensure_ports_free,
    health,
    live_pid,
    running_action,
    start_detached,
    stop_process,
    wait_until,
)
from engine.stack.redis import START_TIMEOUT, STOP_TIMEOUT, RedisNode, ensure_redis_server, render_conf
from engine.stack.secure import ADMIN, WORKER, SecurePaths, drift, password

NAME = "redis-secure"
WORKER_COMMANDS = (
    "-@all +@read +@write +@keyspace +@scripting +@transaction +@connection -@dangerous "
    "-script|flush -script|kill"
)
"""What the worker user may run: reads, writes, key commands, Lua (SCRIPT LOAD, EVALSHA; a
script reaches only keys the user may), MULTI/EXEC, connection commands; nothing dangerous
(FLUSHALL, KEYS, CONFIG, DEBUG, ...)."""


def worker_acl(key_prefix: str) -> str:
    """The worker user's ACL rules (after ``user segflow on >password``): its keys and commands."""
    return f"resetkeys ~{key_prefix}:* resetchannels {WORKER_COMMANDS}"


def node(settings: Settings) -> RedisNode:
    """The secure server (its ``port`` is the TLS port)."""
    return RedisNode(NAME, settings.secure_redis_port, SecurePaths.of(settings).redis)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def render_acl(settings: Settings) -> str:
    """``users.acl``: default off, admin for the stack's own checks, the worker confined."""
    paths = SecurePaths.of(settings)
    admin = _sha256(password(paths, "redis", ADMIN))
    worker = _sha256(password(paths, "redis", WORKER))
    return (
        "user default off resetkeys resetchannels -@all\n"
        f"user {ADMIN} on #{admin} ~* &* +@all\n"
        f"user {WORKER} on #{worker} {worker_acl(settings.key_prefix)}\n"
    )


def render_secure_conf(settings: Settings) -> str:
    """The plain stack's redis.conf with the TCP port closed, a TLS port and the ACL file."""
    server = node(settings)
    tls = SecurePaths.of(settings).tls
    lines = [line for line in render_conf(server).splitlines() if not line.startswith("port ")]
    lines += [
        "port 0",
        f"tls-port {server.port}",
        f'tls-cert-file "{tls.cert}"',
        f'tls-key-file "{tls.key}"',
        f'tls-ca-cert-file "{tls.ca}"',
        "tls-auth-clients no",
        'tls-protocols "TLSv1.2 TLSv1.3"',
        f'aclfile "{server.home / "users.acl"}"',
    ]
    return "\n".join(lines) + "\n"


def admin_client(settings: Settings) -> redis_py.Redis:
    """A synchronous client logged in as the admin, over TLS."""
    paths = SecurePaths.of(settings)
    return redis_py.Redis(
        host=LOOPBACK,
        port=settings.secure_redis_port,
        username=ADMIN,
        password=password(paths, "redis", ADMIN),
        ssl=True,
        ssl_ca_certs=str(paths.tls.ca),
        socket_timeout=2,
        socket_connect_timeout=1,
    )


def server_version(settings: Settings) -> str | None:
    """``redis_version`` as the admin sees it over TLS, or None when it does not answer."""
    client = admin_client(settings)
    try:
        return str(client.info("server").get("redis_version"))
    except (redis_py.RedisError, OSError):
        return None
    finally:
        client.close()


def _answers(settings: Settings) -> bool:
    return server_version(settings) is not None


def _drift(settings: Settings) -> str | None:
    return drift(node(settings).conf, render_secure_conf(settings))


def up(settings: Settings) -> str:
    """Start the server unless it answers (idempotent); the certificates and passwords exist."""
    server = node(settings)
    pid = live_pid(server.pid_file, server.match)
    if pid is not None:
        answers = lambda: _answers(settings)  # noqa: E731
        return running_action(NAME, pid, _drift(settings), answers, START_TIMEOUT, server.log)
    executable = ensure_redis_server()
    ensure_ports_free((server.port,), "SEGFLOW_SECURE_REDIS_PORT")
    server.home.mkdir(parents=True, exist_ok=True)
    server.home.chmod(0o700)
    acl = server.home / "users.acl"
    acl.write_text(render_acl(settings))
    acl.chmod(0o600)
    server.conf.write_text(render_secure_conf(settings))
    pid = start_detached([executable, str(server.conf)], server.log, server.pid_file, cwd=server.home)
    try:
        waited = wait_until(lambda: _answers(settings), START_TIMEOUT, NAME, server.log, pid)
    except StackError:
        stop_process(server.pid_file, server.match, timeout=STOP_TIMEOUT)
        raise
    return f"{NAME} started (pid {pid}, TLS on {LOOPBACK}:{server.port}) in {waited:.1f}s"


def down(settings: Settings) -> str:
    """Stop the server if it runs."""
    server = node(settings)
    pid = stop_process(server.pid_file, server.match, timeout=STOP_TIMEOUT)
    return f"{NAME} not running" if pid is None else f"{NAME} stopped (pid {pid})"


def status(settings: Settings) -> ServerStatus:
    """The server's status: pid file, then INFO as the admin over TLS."""
    server = node(settings)
    pid = live_pid(server.pid_file, server.match)

    def answer() -> tuple[str | None, str] | None:
        version = server_version(settings)
        return None if version is None else (version, f"TLS + ACL users on {LOOPBACK}:{server.port}")

    return health(NAME, (server.port,), pid, _drift(settings) if pid else None, answer, server.log)
