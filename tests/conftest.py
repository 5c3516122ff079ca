"""Shared fixtures: the real local stack (Kafka + Redis) for integration and e2e tests.

Tests marked ``integration`` use the servers that ``segflow stack up`` runs (the same scripts
serve the demo and CI); the fixture starts them if they are not running. Each test gets its
own key prefix and topic names, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from engine.settings import NO_PROFILE, PROFILE_VARIABLE, Settings, load_settings, namespaced

# A profile left in the working directory (`segflow demo` writes ./.segflow.env) must not steer
# the tests; SEGFLOW_PROFILE set on purpose still does.
os.environ.setdefault(PROFILE_VARIABLE, NO_PROFILE)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults",
        choices=("quick", "full"),
        default="quick",
        help="how hard the fault matrix hits: quick (CI) or full (by hand: a 30 s Redis pause)",
    )


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings of the running local stack; starts it (idempotently) when needed."""
    from engine.stack import manager

    settings = load_settings()
    status = manager.status(settings)
    if not status.healthy:
        manager.up(settings)
    yield settings


@pytest.fixture()
def isolated_settings(stack_settings: Settings) -> Settings:
    """Stack settings with a fresh app id, topics and Redis key prefix for one test."""
    tag = uuid.uuid4().hex[:10]
    isolated = namespaced(stack_settings, f"test-{tag}", f"t{tag}")
    return isolated.model_copy(update={"events_partitions": 4, "changes_partitions": 4})


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


@pytest.fixture(scope="session")
def cluster_url(cluster_stack_settings: Settings) -> str:
    """The URL of the local Redis Cluster (``redis+cluster://``), started when needed."""
    return f"redis+cluster://127.0.0.1:{cluster_stack_settings.redis_cluster_base_port}"
