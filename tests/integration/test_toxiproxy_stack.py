"""The stack's toxiproxy against the real servers: its proxies, its toxics, and Kafka behind it.

A Kafka client that bootstraps through a plain TCP proxy is told the broker's advertised address
and then connects there directly; the broker's ``PROXIED`` listener advertises the proxy's port,
so a client bootstrapped at the proxy stays behind it (and a fault there reaches it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
import redis
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from proxy_helpers import toxiproxy_up
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.settings import Settings
from engine.stack import manager
from engine.stack import toxiproxy as toxiproxy_server
from engine.stack.processes import LOOPBACK
from engine.stack.toxiproxy_api import ToxiproxyClient, latency, limit_data, reset_peer, timeout
from engine.topics import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(stack_settings: Settings) -> ToxiproxyClient:
    return toxiproxy_up(stack_settings)


def test_up_again_changes_nothing_and_remakes_a_missing_proxy(
    stack_settings: Settings, api: ToxiproxyClient
) -> None:
    before = manager.status(stack_settings).server("toxiproxy")
    assert before is not None and before.healthy, before
    assert before.version == toxiproxy_server.VERSION
    ports = stack_settings.toxiproxy_port, stack_settings.kafka_proxy_port, stack_settings.redis_proxy_port
    assert before.ports == ports
    again = toxiproxy_server.up(stack_settings)
    assert again == f"toxiproxy already running (pid {before.pid})"

    api.delete_proxy(toxiproxy_server.REDIS_PROXY)
    broken = toxiproxy_server.status(stack_settings)
    assert not broken.healthy and "redis missing" in broken.detail, broken
    remade = toxiproxy_server.up(stack_settings)
    assert remade.endswith(f"made redis {stack_settings.redis_proxy_port}->{stack_settings.redis_port}")
    proxies = api.proxies()
    assert proxies["redis"].upstream == f"{LOOPBACK}:{stack_settings.redis_port}"
    assert proxies["kafka"].upstream == f"{LOOPBACK}:{stack_settings.kafka_proxied_port}"
    assert toxiproxy_server.status(stack_settings).healthy


def _redis_through_proxy(settings: Settings) -> redis.Redis:
    # No retries: the first failure is the one looked for.
    return redis.Redis(
        host=LOOPBACK, port=settings.redis_proxy_port, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )


def _ping(raw: socket.socket) -> bytes:
    """Send PING on a plain socket; the reply (7 bytes), or b"" once the connection is closed."""
    reply = b""
    try:
        raw.sendall(b"PING\r\n")
        while len(reply) < 7:
            chunk = raw.recv(7 - len(reply))
            if not chunk:
                return b""
            reply += chunk
    except (ConnectionResetError, BrokenPipeError):
        return b""
    return reply


def test_each_toxic_acts_on_redis_through_the_proxy(stack_settings: Settings, api: ToxiproxyClient) -> None:
    client = _redis_through_proxy(stack_settings)
    try:
        assert client.ping()
        with api.applied("redis", latency(20, 5)):
            assert api.proxies()["redis"].toxics == ("latency_downstream",)
            assert client.ping()  # slower, but answered
        with api.applied("redis", timeout(0)), pytest.raises(redis.TimeoutError):
            client.ping()
        with api.applied("redis", reset_peer(0)), pytest.raises(redis.ConnectionError):
            client.ping()
        assert client.ping()  # a new connection once the toxics are gone
        # "+PONG\r\n" is 7 bytes: three replies make the 21, then the proxy closes.
        address = (LOOPBACK, stack_settings.redis_proxy_port)
        with api.applied("redis", limit_data(21)), socket.create_connection(address, 2) as raw:
            assert [_ping(raw) for _ in range(4)] == [b"+PONG\r\n"] * 3 + [b""]
        with api.disabled("redis"):
            assert not api.proxies()["redis"].enabled
            with pytest.raises(redis.ConnectionError):
                _redis_through_proxy(stack_settings).ping()
        assert api.proxies()["redis"].toxics == ()
        assert client.ping()
    finally:
        client.close()


async def _brokers(bootstrap: str) -> set[tuple[str, int]]:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
        return {(broker.host, broker.port) for broker in client.cluster.brokers()}
    finally:
        await client.close()


async def _round_trip(settings: Settings, bootstrap: str) -> bytes | None:
    """Produce one record through ``bootstrap`` and read it back (partition 0 of the events topic)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(settings.events_topic, b"through the proxy", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(settings.events_topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        record = await asyncio.wait_for(consumer.getone(), 30)
        return record.value
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def test_a_client_bootstrapped_at_the_proxy_reaches_the_broker_only_through_it(
    isolated_settings: Settings, api: ToxiproxyClient
) -> None:
    settings = isolated_settings
    proxied = f"{LOOPBACK}:{settings.kafka_proxy_port}"
    assert asyncio.run(_brokers(proxied)) == {(LOOPBACK, settings.kafka_proxy_port)}
    # The default listener is unchanged for every other client.
    assert asyncio.run(_brokers(settings.kafka_bootstrap)) == {(LOOPBACK, settings.kafka_port)}
    asyncio.run(ensure_topics(settings))
    assert asyncio.run(_round_trip(settings, proxied)) == b"through the proxy"
    with api.disabled("kafka"), pytest.raises(KafkaError):
        asyncio.run(_brokers(proxied))
    assert asyncio.run(_brokers(settings.kafka_bootstrap)) == {(LOOPBACK, settings.kafka_port)}
