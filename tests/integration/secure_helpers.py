"""The secure stack for integration tests: started with the project's own code, stopped after.

``secure_stack`` (session) runs ``segflow stack up --secure``'s function unless the secure stack
already answers, and stops it after the session when it started it. ``secure_settings`` gives
one test the worker user's settings with its own app id and key prefix *inside* the ACLs the
stack granted: topics ``<app id>.t<tag>.*``, groups ``<app id>.t<tag>``, keys ``<prefix>:t<tag>:*``.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until

from engine.redis_clients import redis_client
from engine.settings import Settings
from engine.stack import manager
from engine.stack.secure import ADMIN, client_settings
from engine.worker_process import free_port, read_metric, start_worker


@pytest.fixture(scope="session")
def secure_stack(stack_settings: Settings) -> Iterator[Settings]:
    """The plain stack's settings, with the secure stack running next to it."""
    started = not manager.status_secure(stack_settings).healthy
    if started:
        manager.up_secure(stack_settings)
    yield stack_settings
    if started:
        manager.down_secure(stack_settings)


@pytest.fixture()
def secure_settings(secure_stack: Settings) -> Iterator[Settings]:
    """The worker user's settings for one test; its Redis keys are removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    base = client_settings(secure_stack)
    settings = base.model_copy(
        update={
            "app_id": f"{base.app_id}.t{tag}",
            "events_topic": f"{base.app_id}.t{tag}.events",
            "changes_topic": f"{base.app_id}.t{tag}.segment-changes",
            "dlq_topic": f"{base.app_id}.t{tag}.dlq",
            "key_prefix": f"{base.key_prefix}:t{tag}",
            "events_partitions": 2,
            "changes_partitions": 2,
            "web_port": free_port(),
        }
    )
    yield settings
    asyncio.run(remove_keys(settings))


async def remove_keys(settings: Settings) -> None:
    """Delete every key under the settings' prefix (as the worker user: it may)."""
    client = redis_client(settings)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def admin_settings(settings: Settings) -> Settings:
    """``settings`` as the secure stack's admin (Kafka super user, Redis ``+@all``)."""
    admin = client_settings(settings, ADMIN)
    return admin.model_copy(update={"app_id": settings.app_id, "key_prefix": settings.key_prefix})


def run_worker_until_exit(settings: Settings, log: Path, timeout: float = 60.0) -> tuple[int, str]:
    """Start ``segflow worker`` with ``settings``; its exit code and output once it exits."""
    process = start_worker(settings, log)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        tail = log.read_text()[-2000:]
        raise AssertionError(f"the worker did not exit within {timeout:g}s: {tail}") from None
    return code, log.read_text()


def wait_applied(settings: Settings, log: Path, count: int, timeout: float = 75.0) -> None:
    """Wait until the worker logging to ``log`` applied ``count`` events (AssertionError if not)."""
    counter = "segflow_events_applied_total"
    applied = wait_until(lambda: read_metric(settings, counter) >= count, timeout)
    assert applied, f"the worker applied {read_metric(settings, counter)}: {log.read_text()[-3000:]}"
