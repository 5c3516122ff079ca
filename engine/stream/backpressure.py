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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError
from redis.exceptions import OutOfMemoryError, RedisError

from engine.stream.ingest import StopConsuming

if TYPE_CHECKING:
    from engine.app import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 10.0


class RedisFull(StopConsuming):
    """Redis refused a write: its used memory reached ``maxmemory``. ``str()`` says what to do."""


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
    message = full_message(what, BATCH_KEPT)
    if runtime.fatal is None:
        runtime.fatal = message
        log.error("%s", message)
        runtime.on_fatal()
    return RedisFull(message)


def stop_worker(runtime: Runtime, exc: RedisFull) -> None:
    """A task of the worker (the embedded learner) met a full Redis: log it, stop the worker."""
    if runtime.fatal is None:
        runtime.fatal = str(exc)
        log.error("%s", exc)
        runtime.on_fatal()


def transient(exc: BaseException) -> bool:
    """Whether waiting may cure ``exc``: Redis errors (but a full Redis), timeouts, connection
    errors, and broker errors that Kafka calls retriable or a delivery that timed out."""
    if isinstance(exc, OutOfMemoryError):
        return False
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
    return isinstance(exc, (TimeoutError, RedisError, OSError))


async def with_retry(runtime: Runtime, what: str, step: Callable[[], Awaitable[T]]) -> T:
    """Run ``step``; retry it with backoff while it fails with a ``transient`` error (the batch
    is not acked meanwhile); raise ``RedisFull`` at once when Redis refuses it as out of memory,
    and any other error as it is."""
    delay = FIRST_BACKOFF_SECONDS
    while True:
        try:
            return await step()
        except OutOfMemoryError:
            raise stop_full(runtime, what) from None
        except Exception as exc:
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
