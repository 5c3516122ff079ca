"""Start-up checks of the long-running commands: can we log in to Redis and Kafka, with access?

``segflow worker``, ``learner`` and ``deliver`` run them before anything else, so that wrong
credentials, an untrusted certificate or a missing ACL stop the process with one line (exit 1)
instead of a traceback from inside Faust or aiokafka. Nothing is written.
"""

from __future__ import annotations

import asyncio

from engine.kafka_clients import check_kafka
from engine.redis_clients import check_redis
from engine.settings import Settings


def check_access(settings: Settings, group: str | None = None, redis: bool = True) -> None:
    """Redis (login, the key prefix) when ``redis``, then Kafka (login, ``group`` when given)."""
    if redis:
        asyncio.run(check_redis(settings))
    asyncio.run(check_kafka(settings, group))
