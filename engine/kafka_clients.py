"""How every Kafka client of segflow connects: one set of options from settings.

:func:`kafka_options` gives the keyword arguments of every aiokafka client (consumer, producer,
admin): bootstrap servers plus TLS (``SEGFLOW_KAFKA_SECURITY_PROTOCOL=SSL|SASL_SSL``, CA from
``SEGFLOW_KAFKA_SSL_CAFILE``) and SASL (SCRAM-SHA-512 by default). :func:`faust_credentials`
configures the Faust app the same way. :func:`check_kafka` is the start-up check: it connects
once with those options, so that wrong credentials, an untrusted certificate or a missing ACL
become one-line :class:`KafkaAccessError` messages instead of aiokafka's "Unable to bootstrap".
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from engine.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


class KafkaAccessError(KafkaError):
    """Kafka cannot be reached or refused us (credentials, TLS, ACLs); the message is one line."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Kafka refused access"


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for the brokers (None without TLS): verifies their certificate and name."""
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    try:
        return create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    except (OSError, ssl.SSLError) as exc:
        files = "SEGFLOW_KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE"
        raise KafkaAccessError(f"cannot load the Kafka TLS files ({files}): {exc}") from None


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: where the brokers are and how to log in."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol in TLS_PROTOCOLS:
        options["ssl_context"] = ssl_context(settings)
    if protocol in SASL_PROTOCOLS:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_username
        options["sasl_plain_password"] = settings.kafka_secret
    return options


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the same security as :func:`kafka_options`.

    faust-streaming hands ``SASLCredentials`` to aiokafka as ``security_protocol`` (SASL_SSL when
    it has an SSL context), ``sasl_mechanism`` (SCRAM-SHA-512 among its mechanisms),
    ``sasl_plain_username``/``password`` and ``ssl_context``
    (``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``).
    """
    import faust  # only the Faust app needs it

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=settings.kafka_secret,
        ssl_context=ssl_context(settings),
        mechanism=settings.kafka_sasl_mechanism,
    )


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    hosts = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise KafkaAccessError(f"SEGFLOW_KAFKA_BOOTSTRAP: {part.strip()!r} is not host:port")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def _who(settings: Settings) -> str:
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        return f"user {settings.kafka_username!r} ({settings.kafka_sasl_mechanism})"
    return "the client"


def _refusal(settings: Settings, where: str, exc: BaseException) -> KafkaAccessError | None:
    """A one-line error for a refusal that retrying another broker will not fix, else None."""
    if isinstance(exc, SaslAuthenticationFailed | AuthenticationFailedError):
        return KafkaAccessError(
            f"Kafka at {where} refused {_who(settings)}: wrong username or password "
            "(SEGFLOW_KAFKA_USERNAME, SEGFLOW_KAFKA_PASSWORD or SEGFLOW_KAFKA_PASSWORD_FILE)"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaAccessError(f"Kafka at {where}: {exc.args[0] if exc.args else exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return KafkaAccessError(
            f"TLS to Kafka at {where} failed: {exc.verify_message} (SEGFLOW_KAFKA_SSL_CAFILE)"
        )
    return None


def _unreachable(settings: Settings, where: str, exc: BaseException | None) -> KafkaAccessError:
    protocol = settings.kafka_security_protocol
    reason = "no answer" if exc is None or isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
    return KafkaAccessError(
        f"cannot connect to Kafka at {where} with SEGFLOW_KAFKA_SECURITY_PROTOCOL={protocol}: {reason} "
        "(is the broker up, and is this its listener's protocol?)"
    )


async def check_connection(settings: Settings, timeout: float = 10.0) -> None:
    """Connect (and log in) to the first bootstrap broker that answers; one-line errors."""
    options = kafka_options(settings)
    options.pop("bootstrap_servers")
    last: BaseException | None = None
    for host, port in _hosts(settings.kafka_bootstrap):
        where = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host, port, client_id="segflow-check", request_timeout_ms=int(timeout * 1000), **options
                ),
                timeout,
            )
        except (OSError, KafkaError, TimeoutError, ssl.SSLError) as exc:
            refused = _refusal(settings, where, exc)
            if refused is not None:
                raise refused from None
            last = exc
            continue
        conn.close()
        return
    raise _unreachable(settings, settings.kafka_bootstrap, last)


def authorization_error(settings: Settings, exc: BaseException, what: str) -> KafkaAccessError | None:
    """A one-line error when ``exc`` is a Kafka authorization refusal (missing ACLs), else None."""
    kinds = {
        TopicAuthorizationFailedError: "topic",
        GroupAuthorizationFailedError: "consumer group",
        ClusterAuthorizationFailedError: "cluster",
    }
    for kind, name in kinds.items():
        if isinstance(exc, kind):
            return KafkaAccessError(
                f"Kafka did not authorize {_who(settings)} to {what}: no ACL allows it on the {name} "
                f"(the ACLs must allow the app id prefix {settings.app_id!r}; see README, Security)"
            )
    return None


async def check_group(settings: Settings, group: str, timeout: float = 10.0) -> None:
    """Raise KafkaAccessError unless the user may use consumer group ``group`` (Describe)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.find_coordinator(group), timeout)
    except KafkaError as exc:
        refused = authorization_error(settings, exc, f"use consumer group {group!r}")
        if refused is not None:
            raise refused from None
        if not exc.retriable:  # e.g. no coordinator yet on a new broker: the ACL check passed
            raise
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def check_kafka(settings: Settings, group: str | None = None, timeout: float = 10.0) -> None:
    """The start-up check: connect and log in, then (with ``group``) that the group is allowed."""
    await check_connection(settings, timeout)
    if group is not None:
        await check_group(settings, group, timeout)


def describe_failure(exc: KafkaError, settings: Settings) -> str:
    """A one-line account of a Kafka failure at the CLI's edge (e.g. aiokafka's "Unable to
    bootstrap", which hides why: the connection is retried once to find the cause)."""
    if isinstance(exc, KafkaConnectionError):
        try:
            asyncio.run(check_connection(settings, timeout=5.0))
        except KafkaAccessError as found:
            return str(found)
        except Exception:
            return str(exc)
    refused = authorization_error(settings, exc, "do this")
    return str(refused or exc)
