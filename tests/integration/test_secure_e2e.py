"""End to end over the secure stack: SASL_SSL Kafka with ACLs, TLS Redis with ACL users.

A real worker process, logged in as the ``segflow`` user (passwords read from files), consumes a
small stream produced over SASL_SSL, keeps its features in the TLS Redis under its key prefix
(the only keys its ACL allows), and its segment changes are read back over SASL_SSL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis as redis_py
from secure_helpers import secure_settings, secure_stack, wait_applied  # noqa: F401 (fixtures)

from engine.cli.io import produce_lines, read_changes
from engine.kafka_clients import KafkaAccessError, check_connection
from engine.redis_clients import redis_client
from engine.settings import Settings
from engine.stack import manager
from engine.stack.secure import client_settings as secure_settings_of
from engine.topics import ensure_topics
from engine.worker_process import start_worker, stop_worker
from features.redis_store import RedisFeatureStore
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration


async def stored_events(settings: Settings, customers: list[str]) -> dict[str, int]:
    """Events applied per customer, read over TLS as the worker user."""
    client = redis_client(settings)
    try:
        records = await RedisFeatureStore(client, prefix=settings.key_prefix).load(customers)  # type: ignore[arg-type]
    finally:
        await client.aclose()
    return {cid: 0 if r.state is None else r.state.events for cid, r in records.items()}


def test_worker_over_sasl_ssl_and_tls_redis(secure_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    settings = secure_settings
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.redis_url.startswith("rediss://")
    events = list(generate_events(PopulationConfig(customers=12, days=6, seed=5)))
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    asyncio.run(ensure_topics(settings))
    sent = asyncio.run(produce_lines(settings, path, "jsonl", "msgpack", False, settings.events_topic))
    assert sent == len(events)

    expected: dict[str, int] = {}
    for event in events:
        expected[event["customer_id"]] = expected.get(event["customer_id"], 0) + 1
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        wait_applied(settings, log, len(events))
        assert asyncio.run(stored_events(settings, sorted(expected))) == expected

        changes: list[dict] = []
        asyncio.run(read_changes(settings, settings.changes_topic, True, None, 3.0, changes.append))
        assert changes, "no segment change came back over SASL_SSL"
        assert {c["customer_id"] for c in changes} <= set(expected)
    finally:
        assert stop_worker(worker) == 0
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    for secret in (settings.kafka_secret, settings.redis_secret):
        assert secret not in output


def test_secure_stack_is_idempotent_and_refuses_plain_access(secure_stack: Settings) -> None:  # noqa: F811
    again = manager.up_secure(secure_stack)
    assert again.healthy, again.servers
    assert any("kafka-secure already running" in a for a in again.actions), again.actions
    assert any("redis-secure already running" in a for a in again.actions), again.actions
    client = secure_settings_of(secure_stack)
    # Redis: no plain-text port, and over TLS the default user is off (NOAUTH without a login).
    port, ca = secure_stack.secure_redis_port, str(client.redis_ssl_cafile)
    tls = redis_py.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca)
    with pytest.raises(redis_py.AuthenticationError):
        tls.get("sf:anything")
    tls.close()
    plain = redis_py.Redis(host="127.0.0.1", port=port, socket_timeout=3)
    with pytest.raises((redis_py.ConnectionError, redis_py.TimeoutError)):
        plain.ping()
    plain.close()
    # Kafka: the listener speaks SASL_SSL only.
    with pytest.raises(KafkaAccessError, match="SEGFLOW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        asyncio.run(check_connection(client.model_copy(update={"kafka_security_protocol": "PLAINTEXT"}), 5.0))
