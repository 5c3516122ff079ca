"""Helpers shared by the integration tests: polling, and a Redis client whose keys are cleaned up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from engine.settings import Settings, load_settings

T = TypeVar("T")


def page_token() -> str:
    """The pages' token every test's settings carry (SEGFLOW_WEB_TOKEN of the run; "" for none),
    for helpers that know only a port."""
    return load_settings().web_secret


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def with_redis(settings: Settings, body: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``body`` with a client; delete every key under the settings' prefix afterwards."""

    async def main() -> T:
        client = Redis.from_url(settings.redis_url)
        try:
            return await body(client)
        finally:
            # A large COUNT: the shared Redis holds other tests' keys, scanned 10 per round trip by default.
            keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    return asyncio.run(main())


async def seal_untrained_models(client: Redis, prefix: str) -> None:
    """For pipeline tests about state, not models: every model version reads as sealed, and as
    sealed before any label was learned (fresh models; their scores do not reach the rules)."""
    from models.snapshots import raise_sealed

    await raise_sealed(client, prefix, 10**7)
