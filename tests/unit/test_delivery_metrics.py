"""``segflow deliver``'s metrics page: the counters in Prometheus text, served over HTTP."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from engine.activation.delivery.counters import DeliveryCounters
from engine.activation.delivery.metrics import MetricsServer, render_metrics


def counters() -> DeliveryCounters:
    c = DeliveryCounters(read=12, delivered=5, dead_lettered=2, malformed=1, in_flight=3, commits=4)
    c.withheld.update({"control": 2})
    hook = c.destination('hook "a"')
    hook.attempts, hook.delivered, hook.retried, hook.dead_lettered = 9, 5, 3, 1
    return c


def samples(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


def test_the_counters_in_prometheus_text() -> None:
    text = render_metrics(counters())
    values = samples(text)
    assert values["segflow_deliver_read_total"] == "12"
    assert values["segflow_deliver_dead_lettered_total"] == "2"
    assert values["segflow_deliver_malformed_total"] == "1"
    # Every withheld reason is exposed, zero or not, so a rate() over it never starts from nothing.
    assert values['segflow_deliver_withheld_total{reason="control"}'] == "2"
    assert values['segflow_deliver_withheld_total{reason="frequency_cap"}'] == "0"
    assert values['segflow_deliver_destination_retried_total{destination="hook \\"a\\""}'] == "3"
    assert values['segflow_deliver_destination_attempts_total{destination="hook \\"a\\""}'] == "9"
    assert values["segflow_deliver_in_flight"] == "3"
    assert "# TYPE segflow_deliver_in_flight gauge" in text
    assert "# TYPE segflow_deliver_read_total counter" in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_pages_are_served_live_and_a_busy_port_is_one_line() -> None:
    c = counters()
    port = free_port()

    async def main() -> tuple[str, str, dict[str, object]]:
        server = MetricsServer(c, port)
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/segflow/metrics") as response:
                    before = await response.text()
                c.delivered += 1  # the page reads the live counters
                async with session.get(f"http://127.0.0.1:{port}/segflow/metrics") as response:
                    after = await response.text()
                async with session.get(f"http://127.0.0.1:{port}/segflow/health") as response:
                    health = await response.json()
            busy = MetricsServer(c, port)
            with pytest.raises(OSError, match=rf"^cannot serve delivery metrics on port {port}: ") as caught:
                await busy.start()
            assert "\n" not in str(caught.value)
        finally:
            await server.close()
        return before, after, health

    before, after, health = asyncio.run(main())
    assert samples(before)["segflow_deliver_delivered_total"] == "5"
    assert samples(after)["segflow_deliver_delivered_total"] == "6"
    assert health["ok"] is True and health["read"] == 12
