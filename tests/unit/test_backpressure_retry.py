"""``engine.stream.backpressure.with_retry``: what is retried, and what stops the worker at once.

Pure policy, no server: the steps raise redis-py's and aiokafka's own exception classes, as they
do for an ``-OOM`` reply, a refused connection or a broker's error code (a real full Redis is
``tests/integration/test_redis_full.py``, a real broker restart ``test_determinism.py``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
)
from redis.exceptions import AuthenticationError, NoPermissionError, OutOfMemoryError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.monitoring import WorkerMetrics
from engine.settings import Settings
from engine.stream.backpressure import RedisFull, RedisRefused, with_retry
from engine.stream.ingest import StopConsuming


@dataclass
class FakeRuntime:
    """The four things ``with_retry`` touches of a Runtime."""

    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    settings: Settings = field(default_factory=lambda: Settings(key_prefix="shop", redis_username="seg"))
    fatal: str | None = None
    stops: int = 0

    def on_fatal(self) -> None:
        self.stops += 1


def retries(runtime: FakeRuntime) -> int:
    return runtime.metrics.counters["segflow_batch_retries_total"]


class Step:
    """Fails with the given exceptions in turn, then returns ``"done"``; counts its calls."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_a_server_that_does_not_answer_is_retried_until_it_does() -> None:
    runtime = FakeRuntime()
    step = Step(RedisConnectionError("refused"), TimeoutError(), OSError("reset"))
    assert asyncio.run(with_retry(runtime, "pipeline", step)) == "done"  # type: ignore[arg-type]
    assert step.calls == 4 and retries(runtime) == 3
    assert runtime.fatal is None and runtime.stops == 0


def test_a_full_redis_is_not_retried_it_stops_the_worker_once() -> None:
    runtime = FakeRuntime()
    oom = OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    step = Step(oom, oom)
    with pytest.raises(RedisFull) as first:
        asyncio.run(with_retry(runtime, "pipeline", step))  # type: ignore[arg-type]
    assert step.calls == 1 and retries(runtime) == 0
    assert isinstance(first.value, StopConsuming)  # the ingest loop stops, the batch uncommitted
    message = str(first.value)
    assert runtime.fatal == message and runtime.stops == 1
    assert "\n" not in message and message.startswith("Redis is full: it refused a write of the pipeline")
    assert "maxmemory" in message and "SEGFLOW_CUSTOMER_TTL_DAYS" in message
    # Another step meeting the full Redis raises too, but the worker was told to stop once.
    with pytest.raises(RedisFull):
        asyncio.run(with_retry(runtime, "tick", step))  # type: ignore[arg-type]
    assert runtime.stops == 1 and runtime.fatal == message


@pytest.mark.parametrize(
    "refusal",
    [
        NoPermissionError("this user has no permissions to access one of the keys used as arguments"),
        ResponseError("NOPERM User seg has no permissions to run the 'evalsha' command"),
        AuthenticationError("invalid username-password pair or user is disabled."),
    ],
)
def test_a_refused_user_is_not_retried_it_stops_the_worker_with_what_to_fix(refusal: Exception) -> None:
    runtime = FakeRuntime()
    step = Step(refusal)
    with pytest.raises(RedisRefused) as raised:
        asyncio.run(with_retry(runtime, "pipeline", step))  # type: ignore[arg-type]
    assert step.calls == 1 and retries(runtime) == 0
    assert isinstance(raised.value, StopConsuming)
    message = str(raised.value)
    assert runtime.fatal == message and runtime.stops == 1 and "\n" not in message
    assert "'seg'" in message and "stopping at the pipeline" in message
    if isinstance(refusal, AuthenticationError):
        assert "SEGFLOW_REDIS_PASSWORD" in message
    else:
        assert "SEGFLOW_KEY_PREFIX='shop'" in message and "~shop:*" in message


def test_a_broker_that_does_not_answer_is_retried_but_a_refusal_is_raised() -> None:
    runtime = FakeRuntime()
    step = Step(KafkaTimeoutError(), KafkaConnectionError("no broker"), NotLeaderForPartitionError())
    assert asyncio.run(with_retry(runtime, "deliver", step)) == "done"  # type: ignore[arg-type]
    assert step.calls == 4 and retries(runtime) == 3
    # Waiting does not make a record smaller: raised as before, for the worker to fail.
    too_large = Step(MessageSizeTooLargeError())
    with pytest.raises(MessageSizeTooLargeError):
        asyncio.run(with_retry(runtime, "deliver", too_large))  # type: ignore[arg-type]
    assert too_large.calls == 1 and retries(runtime) == 3 and runtime.stops == 0


def test_a_retried_errors_text_is_logged_as_one_bounded_line(caplog: pytest.LogCaptureFixture) -> None:
    # A pipeline's error quotes its commands: an EVALSHA of a whole batch is kilobytes of text.
    arguments = "x" * 5_000
    step = Step(RedisConnectionError(f"Error while running EVALSHA {arguments}\nsecond line"))
    with caplog.at_level("WARNING", logger="engine.stream.backpressure"):
        asyncio.run(with_retry(FakeRuntime(), "pipeline", step))  # type: ignore[arg-type]
    (record,) = [r for r in caplog.records if "retrying" in r.getMessage()]
    message = record.getMessage()
    assert "\n" not in message and "second line" not in message
    assert len(message) < 400 and message.count("x") == 300 - len("Error while running EVALSHA ")
    assert f"({len('Error while running EVALSHA ') + 5_000} characters)" in message
