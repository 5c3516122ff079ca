"""Fixtures of the property tests: the local stack with its Redis Cluster, and Redis URLs to test."""

from __future__ import annotations

import pytest

from engine.settings import Settings


def _cluster_healthy(settings: Settings) -> bool:
    from engine.stack import manager

    nodes = [s for s in manager.status(settings).servers if s.name.startswith("redis-cluster:")]
    return bool(nodes) and all(node.healthy for node in nodes)


@pytest.fixture(scope="session")
def cluster_stack_settings(stack_settings: Settings) -> Settings:
    """The running local stack including its 3-master Redis Cluster (started when needed)."""
    from engine.stack import manager

    if not _cluster_healthy(stack_settings):
        manager.up(stack_settings, cluster=True)
    return stack_settings


@pytest.fixture(scope="session", params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest, stack_settings: Settings) -> str:
    """The URL of the single Redis server, then of the Redis Cluster."""
    if request.param == "single":
        return stack_settings.redis_url
    settings = request.getfixturevalue("cluster_stack_settings")
    return f"redis+cluster://127.0.0.1:{settings.redis_cluster_base_port}"
