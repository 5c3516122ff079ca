"""Every topic segflow reads or writes, with its partition count, from settings."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

from engine.kafka_clients import authorization_error, kafka_options
from engine.settings import Settings


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic name, its partitions and what it carries."""

    name: str
    partitions: int
    carries: str


async def start_or_close(client: Any) -> None:
    """Start an aiokafka client; if that fails, release what it opened before raising."""
    try:
        await client.start()
    except BaseException:
        closer = getattr(client, "stop", None) or client.close
        with contextlib.suppress(Exception):
            await closer()
        raise


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics of one deployment."""
    return [
        TopicSpec(settings.events_topic, settings.events_partitions, "behavioural events (schema v1)"),
        TopicSpec(settings.changes_topic, settings.changes_partitions, "segment changes (schema v1)"),
        TopicSpec(settings.dlq_topic, settings.events_partitions, "dead letters (schema v1)"),
        # One partition: the learner reads every label in one order it can checkpoint as one offset.
        TopicSpec(settings.labels_topic, 1, "resolved labels (schema v1)"),
        # Keyed by customer id, as the segment changes that cause them.
        TopicSpec(settings.actions_topic, settings.changes_partitions, "action decisions (schema v1)"),
        TopicSpec(settings.actions_dlq_topic, settings.changes_partitions, "undeliverable actions"),
        TopicSpec(settings.outcomes_topic, settings.changes_partitions, "decision outcomes (schema v1)"),
    ]


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics (replication factor 1); return the names created."""
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=10_000)
    await asyncio.wait_for(start_or_close(admin), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            response = await admin.create_topics([NewTopic(s.name, s.partitions, 1) for s in missing])
            for topic, code, message in _topic_errors(response):
                if code not in (0, TopicAlreadyExistsError.errno):
                    error = for_code(code)(message)
                    refused = authorization_error(settings, error, f"create topic {topic!r}")
                    if refused is not None:
                        raise refused
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {message or ''}".strip())
        await _wait_for_leaders(settings, admin, [spec.name for spec in topic_specs(settings)], timeout_s)
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def topic_partitions(settings: Settings, topic: str) -> list[int]:
    """The partition numbers of ``topic`` (empty when it does not exist)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=10_000)
    await start_or_close(admin)
    try:
        if topic not in set(await admin.list_topics()):
            return []
        described = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in described[0]["partitions"])
    finally:
        await admin.close()


async def _wait_for_leaders(
    settings: Settings, admin: AIOKafkaAdminClient, names: list[str], timeout_s: float
) -> None:
    """Return once every partition of ``names`` has a leader (producing earlier only retries)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        for t in described:
            if t["error_code"] == TopicAuthorizationFailedError.errno:
                error = TopicAuthorizationFailedError(t["topic"])
                raise authorization_error(settings, error, f"describe topic {t['topic']!r}") or error
        ready = all(
            t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        )
        if ready:
            return
        if loop.time() > deadline:
            raise RuntimeError(f"topics {', '.join(names)} have no leader after {timeout_s:g}s")
        await asyncio.sleep(0.2)


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    rows = getattr(response, "topic_errors", [])
    return [(row[0], row[1], row[2] if len(row) > 2 else None) for row in rows]
