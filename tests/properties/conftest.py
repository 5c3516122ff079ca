"""Fixtures of the property tests: the Redis URLs to test (the cluster's are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from engine.settings import Settings


@pytest.fixture(scope="session", params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest, stack_settings: Settings) -> str:
    """The URL of the single Redis server, then of the Redis Cluster."""
    if request.param == "single":
        return stack_settings.redis_url
    return str(request.getfixturevalue("cluster_url"))
