"""The secure local stack (``segflow stack up --secure``): Kafka with SASL_SSL and ACLs, Redis
with TLS only and ACL users, on loopback, next to (not instead of) the plain stack.

Everything lives under ``<stack_dir>/secure``: ``tls/`` (a local CA and a server certificate for
127.0.0.1 and localhost), ``secrets/`` (one generated password per user, mode 0600),
``kafka/`` and ``redis/`` (configs, data, logs, pid files) and ``client.env``, the SEGFLOW_*
settings a segflow process needs to use it (passwords by file, never inline). Ports:
``SEGFLOW_SECURE_KAFKA_PORT`` (its controller the next port) and ``SEGFLOW_SECURE_REDIS_PORT``.

Users: ``admin`` (Kafka super user, the broker itself; Redis ``~* +@all``, for the stack's own
checks) and ``segflow`` (the worker): in Kafka allowed only the topics and consumer groups
whose names start with the app id, in Redis only the keys under ``<key prefix>:`` and the
commands of :data:`engine.stack.secure_redis.WORKER_COMMANDS`. Redis's ``default`` user is off.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from engine.settings import Settings
from engine.stack.processes import LOOPBACK
from engine.stack.tls import TlsFiles, ensure_certificates

ADMIN = "admin"
WORKER = "segflow"


@dataclass(frozen=True)
class SecurePaths:
    """Where the secure stack's files are (``<stack_dir>/secure``)."""

    root: Path

    @classmethod
    def of(cls, settings: Settings) -> SecurePaths:
        """The secure stack of ``settings.stack_dir``."""
        return cls(Path(settings.stack_dir).resolve() / "secure")

    @property
    def tls(self) -> TlsFiles:
        """The CA and server certificate."""
        return TlsFiles(self.root / "tls")

    @property
    def secrets(self) -> Path:
        """The generated passwords, one file per user."""
        return self.root / "secrets"

    @property
    def kafka(self) -> Path:
        """The broker's home (server.properties, data, log, pid)."""
        return self.root / "kafka"

    @property
    def redis(self) -> Path:
        """The Redis server's home (redis.conf, users.acl, data, log, pid)."""
        return self.root / "redis"

    @property
    def client_env(self) -> Path:
        """SEGFLOW_* lines for a segflow process using this stack as the worker user."""
        return self.root / "client.env"

    def password_file(self, service: str, user: str) -> Path:
        """The file holding ``user``'s password for ``service`` ("kafka" or "redis")."""
        return self.secrets / f"{service}-{user}.password"


def password(paths: SecurePaths, service: str, user: str) -> str:
    """``user``'s password for ``service``, generated (and kept, mode 0600) on first use."""
    path = paths.password_file(service, user)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def prepare(settings: Settings) -> tuple[SecurePaths, list[str]]:
    """Certificates and passwords, made once; returns what was made."""
    paths = SecurePaths.of(settings)
    paths.root.mkdir(parents=True, exist_ok=True)
    actions = []
    _, made = ensure_certificates(paths.tls.home)
    if made:
        actions.append(f"certificates made in {paths.tls.home} (CA {paths.tls.ca})")
    for service in ("kafka", "redis"):
        for user in (ADMIN, WORKER):
            password(paths, service, user)
    return paths, actions


def client_settings(settings: Settings, user: str = WORKER, password_file: Path | None = None) -> Settings:
    """``settings`` pointed at the secure stack as ``user`` (default: the worker user).

    ``password_file`` defaults to the user's generated one (the admin's and the worker's exist);
    the same file serves Kafka and Redis only when given.
    """
    paths = SecurePaths.of(settings)
    kafka_secret = password_file or paths.password_file("kafka", user)
    redis_secret = password_file or paths.password_file("redis", user)
    return settings.model_copy(
        update={
            "kafka_bootstrap": f"{LOOPBACK}:{settings.secure_kafka_port}",
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_username": user,
            "kafka_password_file": kafka_secret,
            "kafka_ssl_cafile": paths.tls.ca,
            "redis_url": f"rediss://{LOOPBACK}:{settings.secure_redis_port}/0",
            "redis_username": user,
            "redis_password_file": redis_secret,
            "redis_ssl_cafile": paths.tls.ca,
        }
    )


CLIENT_FIELDS = (
    "kafka_bootstrap",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_username",
    "kafka_password_file",
    "kafka_ssl_cafile",
    "redis_url",
    "redis_username",
    "redis_password_file",
    "redis_ssl_cafile",
    "app_id",
    "key_prefix",
)


def write_client_env(settings: Settings) -> Path:
    """Write ``client.env``: ``set -a; . client.env`` makes segflow use the secure stack."""
    paths = SecurePaths.of(settings)
    client = client_settings(settings)
    lines = [f"SEGFLOW_{name.upper()}={getattr(client, name)}" for name in CLIENT_FIELDS]
    text = "# segflow stack up --secure: settings of the worker user (passwords by file)\n"
    paths.client_env.write_text(text + "\n".join(lines) + "\n")
    return paths.client_env


DRIFT = "running with other settings than requested; run `segflow stack down --secure` first"


def drift(config: Path, wanted: str) -> str | None:
    """Why a running server's config file is not ``wanted`` (None: it is, or there is none)."""
    try:
        same = config.read_text() == wanted
    except OSError:
        return None
    return None if same else DRIFT
