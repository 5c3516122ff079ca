"""``segflow deliver`` on real Kafka, per channel: emails to a real aiosmtpd server, CRM upserts
and webhooks to a real aiohttp receiver, withheld decisions counted (and on the metrics page)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from delivery_kafka import (
    assert_all_committed,
    dead_letters,
    deliver_once,
    make_action,
    produce_actions,
    setup,
    webhook,
)
from delivery_servers import Receiver, SmtpServer, free_port

from engine.activation.delivery.config import load_destinations
from engine.activation.delivery.counters import DeliveryCounters
from engine.activation.delivery.service import DeliveryService
from engine.settings import Settings
from engine.web_auth import auth_headers

pytestmark = pytest.mark.integration


def test_emails_arrive_rendered_with_the_action_id(isolated_settings: Settings, tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        destinations = (
            "email:\n  kind: smtp\n  host: 127.0.0.1\n"
            f"  port: {smtp.port}\n  tls: none\n"
            '  from: "Segflow <noreply@example.test>"\n'
            '  to: "{{ customer_id }}@example.test"\n'
            '  subject: "{{ label }}: {{ variant }}"\n'
            '  body: "Hello {{ customer_id }}, {{ features.recency_days }} days. Why: {{ reason }}"\n'
        )
        settings = setup(isolated_settings, tmp_path, destinations)
        actions = [make_action(f"m{i}", i, channel="email", variant="discount") for i in range(4)]
        broken = make_action("m9", 9, channel="email", variant=None)  # prints a null variant
        produce_actions(settings, [*actions, broken])
        counters = deliver_once(settings)
        received = smtp.messages

    assert (counters.delivered, counters.dead_lettered) == (4, 1)
    by_id = {message["X-Segflow-Action-Id"]: (rcpt, message) for rcpt, message in received}
    assert set(by_id) == {a.action_id for a in actions}
    for action in actions:
        rcpt, message = by_id[action.action_id]
        assert rcpt == [f"{action.customer_id}@example.test"]
        assert message["Subject"] == "Likely to Churn: discount"
        assert message["Message-ID"] == f"<{action.action_id}@example.test>"
        assert message["From"] == "Segflow <noreply@example.test>"
        days = action.features["recency_days"]
        assert (
            message.get_content().strip() == f"Hello {action.customer_id}, {days} days. Why: {action.reason}"
        )
    [letter] = asyncio.run(dead_letters(settings))
    assert letter["action_id"] == broken.action_id and letter["destination"] == "email"
    assert letter["reason"].startswith(
        "refused: email template 'subject' of 'email': a printed value is null"
    )
    assert_all_committed(settings)


async def run_until_finished(settings: Settings, records: int) -> tuple[DeliveryCounters, str]:
    """Run the service (not ``--once``) until ``records`` are finished; scrape its metrics page."""
    service = DeliveryService(settings, load_destinations(settings.destinations_file))  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    deadline = time.monotonic() + 40
    try:
        while service.counters.finished < records:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, service.counters.summary()
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{settings.deliver_web_port}/segflow/metrics"
        headers = auth_headers(settings.web_secret)
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
            assert response.status == 200
            page = await response.text()
    finally:
        stop.set()
        counters = await task
    return counters, page


def test_withheld_decisions_are_counted_not_delivered(isolated_settings: Settings, tmp_path: Path) -> None:
    with Receiver() as receiver:
        crm = webhook(
            f"{receiver.url}/crm/contacts/{{customer_id}}",
            "  method: PATCH\n  body: crm_upsert\n  properties: {segflow_recency: features.recency_days}\n",
            channel="crm",
        )
        hooks = webhook(f"{receiver.url}/hooks") + crm
        settings = setup(isolated_settings, tmp_path, hooks, deliver_web_port=free_port())
        withheld = {"control": 4, "global_control": 3, "cooldown": 3, "frequency_cap": 2}
        actions = [make_action(f"w{i}", i) for i in range(6)] + [
            make_action(f"k{i}", i, "crm") for i in range(3)
        ]
        for reason, count in withheld.items():
            actions += [make_action(f"{reason}{i}", i, decision=reason) for i in range(count)]
        no_destination = make_action("a1", 1, channel="in_app")
        produce_actions(settings, [*actions, no_destination, (b"x", b"\x93not an action")])
        counters, page = asyncio.run(run_until_finished(settings, 23))
        arrivals = receiver.snapshot()

    sends = [a for a in actions if a.decision == "send"]
    assert sorted(a.headers["Idempotency-Key"] for a in arrivals) == sorted(a.action_id for a in sends)
    assert dict(counters.withheld) == withheld
    assert (counters.read, counters.delivered, counters.dead_lettered, counters.malformed) == (23, 9, 2, 1)
    assert counters.destinations["crm"].delivered == 3 and counters.destinations["webhook"].delivered == 6
    metrics = dict(line.rsplit(" ", 1) for line in page.splitlines() if not line.startswith("#"))
    for reason, count in withheld.items():
        assert metrics[f'segflow_deliver_withheld_total{{reason="{reason}"}}'] == str(count)
    assert metrics["segflow_deliver_read_total"] == "23"
    assert metrics["segflow_deliver_dead_lettered_total"] == "2"
    assert metrics['segflow_deliver_destination_delivered_total{destination="crm"}'] == "3"
    assert metrics["segflow_deliver_in_flight"] == "0"
    upserts = [a for a in arrivals if a.path.startswith("/crm/")]
    assert {(a.method, a.path) for a in upserts} == {("PATCH", f"/crm/contacts/k{i}") for i in range(3)}
    body = json.loads(next(a.body for a in upserts if a.path.endswith("/k2")))
    assert body["id"] == "k2"
    assert body["properties"]["segflow_segment"] == "Likely to Churn"
    assert body["properties"]["segflow_recency"] == 32
    letters = {d["reason"].split(":")[0]: d for d in asyncio.run(dead_letters(settings))}
    assert set(letters) == {
        "no destination for channel 'in_app' in " + str(settings.destinations_file),
        "malformed action",
    }
    assert letters["malformed action"]["raw"] == b"\x93not an action"
    assert_all_committed(settings)
