"""`segflow features memory` measures real Redis and cleans up after itself."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from engine.feature_memory import measure
from engine.settings import Settings

pytestmark = pytest.mark.integration


def test_memory_report_measures_every_customer_and_leaves_no_keys(isolated_settings: Settings) -> None:
    report = asyncio.run(measure(isolated_settings, customers=60, days=20, seed=3, keep=False))
    assert 0 < report.customers <= 60
    assert report.events > report.customers
    assert 0 < report.hash_bytes_p50 <= report.hash_bytes_p95 <= report.hash_bytes_max
    assert report.ranking_bytes_per_customer > 0

    async def leftovers() -> int:
        client = Redis.from_url(isolated_settings.redis_url)
        try:
            return len([k async for k in client.scan_iter(match="mem*", count=1000)])
        finally:
            await client.aclose()

    assert asyncio.run(leftovers()) == 0
