"""How every Redis client of segflow connects: URL plus ACL user, password and TLS CA from settings.

:func:`redis_client` is ``features.client.connect`` with the credentials of settings (an ACL
user and password in the URL win). :func:`check_redis` is the start-up check: it logs in and
touches one key under the key prefix with a read, a script and a write (on a key that never
exists, so nothing changes), so that wrong credentials, an untrusted certificate or an ACL that
does not cover ``~<prefix>:*`` become one-line :class:`RedisAccessError` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.settings import Settings
from features.client import RedisAuth, RedisTimeouts, connect, redact

_PROBE = "return redis.call('PEXPIRE', KEYS[1], 60000)"
"""A write on the declared key only; the key never exists, so it changes nothing."""


class RedisAccessError(RedisError):
    """Redis cannot be reached or refused us (credentials, TLS, ACLs); the message is one line."""


def redis_auth(settings: Settings) -> RedisAuth:
    """The ACL user, password and TLS CA of settings."""
    ca = settings.redis_ssl_cafile
    return RedisAuth(settings.redis_username, settings.redis_secret, str(ca) if ca is not None else None)


def redis_client(settings: Settings) -> Redis | RedisCluster:
    """A client for ``SEGFLOW_REDIS_URL`` with the credentials and timeouts of settings."""
    return connect(settings.redis_url, redis_auth(settings), redis_timeouts(settings))


def redis_timeouts(settings: Settings) -> RedisTimeouts:
    """How long segflow's Redis clients wait for a reply and a connection (settings)."""
    return RedisTimeouts(
        settings.redis_socket_timeout_seconds,
        settings.redis_connect_timeout_seconds,
        settings.redis_health_check_seconds,
    )


def redis_user(settings: Settings) -> str:
    """The ACL user a client of settings logs in as."""
    in_url = urlsplit(settings.redis_url).username
    return unquote(in_url) if in_url else settings.redis_username or "default"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def explain(settings: Settings, exc: BaseException) -> RedisAccessError:
    """A one-line error naming what to fix for a Redis failure at start-up."""
    where = redact(settings.redis_url)
    user = redis_user(settings)
    if isinstance(exc, AuthenticationError | AuthenticationWrongNumberOfArgsError):
        return RedisAccessError(
            f"Redis at {where} refused user {user!r}: {_first_line(exc)} "
            "(SEGFLOW_REDIS_USERNAME, SEGFLOW_REDIS_PASSWORD or SEGFLOW_REDIS_PASSWORD_FILE)"
        )
    if isinstance(exc, NoPermissionError) or (
        isinstance(exc, ResponseError) and str(exc).startswith("NOPERM")
    ):
        prefix = settings.key_prefix
        return RedisAccessError(
            f"Redis user {user!r} may not use segflow's keys (SEGFLOW_KEY_PREFIX={prefix!r}): "
            f"{_first_line(exc)}; its ACL needs ~{prefix}:* with read, write and scripting "
            "commands (see README, Security)"
        )
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError):
        return RedisAccessError(f"cannot connect to Redis at {where}: {_first_line(exc)}")
    return RedisAccessError(f"Redis at {where}: {_first_line(exc)}")


async def check_redis(settings: Settings, timeout: float = 5.0) -> None:
    """Log in and use one key under the prefix (read, script, write); RedisAccessError if refused."""
    client = redis_client(settings)
    key = f"{settings.key_prefix}:access-check"
    try:
        async with asyncio.timeout(timeout):
            await client.ping()
            await client.exists(key)
            sha = await client.script_load(_PROBE)
            await client.evalsha(sha, 1, key)
    except (RedisError, OSError, TimeoutError) as exc:
        raise explain(settings, exc) from None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
