"""What a worker does when Redis or Kafka is slow, down or full.

Slow or down: ``with_retry`` runs a step of the batch path (pipeline, delivery, tick, outbox
clear) again and again with exponential backoff (0.1 s, doubling to 10 s) while it fails with a
``transient`` error (a timeout, a refused or lost connection, a retriable broker error, a
delivery the producer gave up on after its request timeout), counting every retry
in ``segflow_batch_retries_total``. Meanwhile the batch stays unacked and the ingest loop waits
for it, so the consumer is not polled: nothing more is fetched into memory, nothing is skipped,
and the step goes on by itself once the server answers again.

Full: a write Redis refuses because its used memory reached ``maxmemory`` (``OOM command not
allowed``: policy ``noeviction``, or nothing left it may evict) does not heal by waiting, so it is
not retried: the step raises ``RedisFull``, whose message is the one error line the worker logs
(what happened, what to change). The batch is left uncommitted and the worker stops with exit
status 1; the next start reprocesses the batch, and the offset fencing in Redis makes that exact.

Refused: Redis refusing the worker's user (``NOPERM``: its ACL lost a key pattern or a command;
a failed login after a reconnect) does not heal by waiting either, and retrying it would only
fill the log: the step raises ``RedisRefused`` with the one line naming what to fix, and the
worker stops the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
)

from engine.redis_clients import explain
from engine.stream.ingest import StopConsuming

if TYPE_CHECKING:
    from engine.app import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
RedisStopT = TypeVar("RedisStopT", bound="RedisStop")
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 10.0


class RedisStop(StopConsuming):
    """Redis refused a step in a way waiting does not cure. ``str()`` says what to do."""


class RedisFull(RedisStop):
    """Redis refused a write: its used memory reached ``maxmemory``. ``str()`` says what to do."""


class RedisRefused(RedisStop):
    """Redis refused the worker's user a key or a command (ACL), or its login."""


def full_message(what: str, kept: str, who: str = "the worker") -> str:
    """The one-line error of a write refused as out of memory (``kept``: why nothing is lost)."""
    return (
        f"Redis is full: it refused a write of the {what} (OOM: used memory > 'maxmemory', nothing "
        f"it may evict); stopping. Nothing is lost: {kept}. Raise Redis's maxmemory (redis-cli "
        "CONFIG SET maxmemory <bytes>, and in redis.conf) or let idle customers expire "
        f"(SEGFLOW_CUSTOMER_TTL_DAYS), then start {who} again"
    )


BATCH_KEPT = "the batch stays uncommitted and is processed again, exactly once, when a worker starts"


def stop_full(runtime: Runtime, what: str) -> RedisFull:
    """Log the one error line (the first time), have the worker stop failing; the error to raise."""
    return _stopping(runtime, RedisFull(full_message(what, BATCH_KEPT)))


def refused(exc: BaseException) -> bool:
    """Whether Redis refused the user (NOPERM, a failed login): waiting does not cure it."""
    if isinstance(exc, NoPermissionError | AuthenticationError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith("NOPERM")


def stop_refused(runtime: Runtime, what: str, exc: BaseException) -> RedisRefused:
    """As ``stop_full``, for a refusal: the line names the setting or the ACL to fix."""
    reason = explain(runtime.settings, exc)
    message = f"{reason}; stopping at the {what}. Nothing is lost: {BATCH_KEPT}"
    return _stopping(runtime, RedisRefused(message))


def _stopping(runtime: Runtime, error: RedisStopT) -> RedisStopT:
    if runtime.fatal is None:
        runtime.fatal = str(error)
        log.error("%s", error)
        runtime.on_fatal()
    return error


def stop_worker(runtime: Runtime, exc: RedisStop) -> None:
    """A task of the worker (the embedded learner) met a Redis that refused it: log it, stop."""
    _stopping(runtime, exc)


def transient(exc: BaseException) -> bool:
    """Whether waiting may cure ``exc``: Redis errors (but a full Redis or a refused user),
    timeouts, connection errors, and broker errors that Kafka calls retriable or a delivery
    that timed out."""
    if isinstance(exc, OutOfMemoryError) or refused(exc):
        return False
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
    return isinstance(exc, (TimeoutError, RedisError, OSError))


async def with_retry(runtime: Runtime, what: str, step: Callable[[], Awaitable[T]]) -> T:
    """Run ``step``; retry it with backoff while it fails with a ``transient`` error (the batch
    is not acked meanwhile); raise ``RedisFull`` at once when Redis refuses it as out of memory,
    ``RedisRefused`` when it refuses the user, and any other error as it is."""
    delay = FIRST_BACKOFF_SECONDS
    while True:
        try:
            return await step()
        except OutOfMemoryError:
            raise stop_full(runtime, what) from None
        except Exception as exc:
            if refused(exc):
                raise stop_refused(runtime, what, exc) from None
            if not transient(exc):
                raise
            runtime.metrics.add("segflow_batch_retries_total")
            log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, _short(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


REASON_CHARS = 300
"""A retried error's text in the log: a pipeline's error quotes its commands, arguments included."""


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= REASON_CHARS else f"{text[:REASON_CHARS]}... ({len(text)} characters)"
