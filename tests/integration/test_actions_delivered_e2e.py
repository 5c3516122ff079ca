"""End to end: events -> ``segflow worker`` -> actions topic -> ``segflow deliver`` -> real servers,
with nothing lost, nothing withheld delivered and nothing delivered twice.

A seeded simulated stream (``models.simulate``) goes to the events topic of the test's own
namespace; a real worker process (its embedded learner included) runs it under a small rules
file written here, whose activation program puts every rule of ``engine.activation.planner`` to
work on three channels:

* entering ``buying/recent_buyer`` (a purchase after more than a day without one) decides
  ``thanks_email`` (email; an A/B test with a 20% holdout: ``control``; an email frequency cap
  of 1 per 4 days: ``frequency_cap``) and ``buyer_webhook`` (webhook; a 5-day cool-down:
  ``cooldown``);
* entering ``lifecycle/lapsing`` decides ``winback_crm`` (crm: a PATCH upsert);
* a 10% global control group (``global_control``) and quiet hours 22:00-07:00 UTC, so that some
  sends are held and released later in event time (``send_ts`` after ``event_ts``).

``segflow deliver`` runs as a child process for the whole run, started before the worker, with
a destinations file pointing email at a real aiosmtpd server and webhook and crm at a real
aiohttp receiver. The receiver answers 503 to its first 40 requests and to every 7th after, and
the SMTP server 451 to its first 10 messages, so that every destination retries.

What is expected comes from the actions topic alone (every decision decoded with
``ActionDecision.from_wire``), not from the delivery code. Once the deliverer committed the
whole actions topic: every ``send`` decision was processed exactly once by its idempotency key
(webhook and crm: ``Idempotency-Key``; email: ``X-Segflow-Action-Id``) at the destination of its
channel, and accepted (2xx, 250) only once unless the worker wrote it to the topic twice; no
withheld decision (``control``, ``global_control``, ``cooldown``, ``frequency_cap``) reached any
server, not even as a refused attempt; the set of delivered ids equals the set of send ids;
nothing was dead-lettered, and the deliverer's own counts agree with the topic.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from delivery_kafka import (
    SECRET,
    assert_all_committed,
    committed,
    dead_letters,
    end_offsets,
    read_topic,
    start_deliver,
)
from delivery_servers import Arrival, Receiver, Reply, SmtpServer
from determinism_runs import remove, worker_run
from helpers import wait_until

from engine.activation.actions import SEND, WITHHELD_REASONS, ActionDecision
from engine.activation.delivery.webhook import verify
from engine.codecs import decode_msgpack
from engine.settings import Settings, namespaced
from engine.topics import ensure_topics
from engine.worker_process import stop_worker
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration

POPULATION = PopulationConfig(customers=100, days=35, seed=31)
PARTITIONS = 4
WEBHOOK_OUTAGE = 40  # the receiver's first requests are answered 503 ...
WEBHOOK_FLAKY = 7  # ... and then every 7th (crm actions come later, after a week of inactivity)
SMTP_REFUSED = 10  # the SMTP server's first messages are answered 451
DELIVERED_TIMEOUT = 90.0  # after the worker's run, for the deliverer to commit the whole topic

RULES = """\
version: "e2e-deliver-1"
families:
  - name: buying
    key_features: [recency_days, monetary]
    segments:
      - name: recent_buyer
        when: "recency_days <= 1"
        on_enter: [thanks_email, buyer_webhook]
  - name: lifecycle
    key_features: [tenure_days, days_since_last_activity]
    segments:
      - name: active
        when: "days_since_last_activity <= 7"
      - name: lapsing
        when: "days_since_last_activity <= 21"
        on_enter: [winback_crm]
      - name: gone
        when: "days_since_last_activity > 21 or days_since_last_activity == None"
activation:
  global_control_percent: 10
  global_control_epoch: "e2e"
  quiet_hours: {start: "22:00", end: "07:00"}
  frequency_caps:
    email: {max: 1, per_days: 4}
  actions:
    - name: thanks_email
      channel: email
      experiment:
        name: thanks_offer
        holdout_percent: 20
        variants: {plain: 1, discount: 1}
    - name: buyer_webhook
      channel: webhook
      cooldown_days: 5
    - name: winback_crm
      channel: crm
      cooldown_days: 30
"""


def destinations(receiver: Receiver, smtp: SmtpServer) -> str:
    """The destinations file: email to the SMTP server, webhook and crm to the receiver."""
    return (
        "email:\n  kind: smtp\n  host: 127.0.0.1\n"
        f"  port: {smtp.port}\n  tls: none\n  timeout_seconds: 5\n"
        '  from: "Segflow <noreply@example.test>"\n'
        '  to: "{{ customer_id }}@example.test"\n'
        '  subject: "{{ label }}: {{ variant }}"\n'
        '  body: "Hello {{ customer_id }}: {{ reason }}"\n'
        f"webhook:\n  kind: webhook\n  url: {receiver.url}/hooks/{{action}}\n  secret: {SECRET}\n"
        "  timeout_seconds: 5\n"
        f"crm:\n  kind: webhook\n  url: {receiver.url}/crm/contacts/{{customer_id}}\n"
        f"  secret: {SECRET}\n  method: PATCH\n  body: crm_upsert\n  timeout_seconds: 5\n"
    )


@pytest.fixture()
def e2e_settings(stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings of the test's own namespace; its topics and Redis keys are removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = namespaced(stack_settings, f"e2e-{tag}", f"e{tag}").model_copy(
        update={
            "events_partitions": PARTITIONS,
            "changes_partitions": PARTITIONS,
            "rules_file": rules,
            # The watermark moves with event time alone (as in test_determinism.py): no release
            # of held decisions and no time-driven exit because the wall clock moved on.
            "idle_advance_seconds": 3600.0,
            "destinations_file": tmp_path / "destinations.yaml",
            "deliver_retry_base_seconds": 0.1,
            "deliver_retry_cap_seconds": 0.4,
            "deliver_max_attempts": 50,
            "commit_interval_seconds": 0.2,
            "deliver_web_port": 0,
            # The rules read no model score; a model period only paces the worker's round trips
            # to its embedded learner (one per sealed period), which at a day would dominate.
            "model_period_seconds": 7 * 86_400.0,
            # The worker's learner says when it stands by, is active and seals: a failure's log tail
            # then tells what a stalled run waited for.
            "log_level": "info",
        }
    )
    try:
        yield settings
    finally:
        asyncio.run(remove(settings))


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for a failure message."""
    if not path.exists():
        return f"--- {path.name}: no such file"
    text = path.read_text(errors="replace").splitlines()
    return f"--- {path.name}\n" + "\n".join(text[-lines:])


def read_decisions(settings: Settings) -> list[ActionDecision]:
    """Every decision on the actions topic, decoded as ``segflow deliver`` must take it."""
    records = asyncio.run(read_topic(settings, settings.actions_topic))
    return [ActionDecision.from_wire(decode_msgpack(r.value)) for r in records]


def fully_committed(settings: Settings) -> bool:
    """Whether the deliverer's group committed every partition of the actions topic to its end."""
    ends = asyncio.run(end_offsets(settings))
    return asyncio.run(committed(settings)) == {p: end for p, end in ends.items() if end > 0}


def flaky(index: int, _seconds: float) -> Reply:
    """The receiver's answer to its ``index``-th request."""
    refused = index < WEBHOOK_OUTAGE or index % WEBHOOK_FLAKY == WEBHOOK_FLAKY - 1
    return Reply(503) if refused else Reply(200)


def email_id(message: EmailMessage) -> str:
    return str(message["X-Segflow-Action-Id"])


def test_every_send_decision_of_a_worker_run_is_delivered_once_and_nothing_withheld(
    e2e_settings: Settings, tmp_path: Path
) -> None:
    settings = e2e_settings
    events = list(generate_events(POPULATION))
    events_path = tmp_path / "events.jsonl"
    write_jsonl(events, events_path)
    customers = sorted({e["customer_id"] for e in events})
    logs = tmp_path / "logs"
    deliver_log = logs / "deliver.log"
    logs.mkdir()
    asyncio.run(ensure_topics(settings))  # before the deliverer and the producer, not racing them

    with Receiver(flaky) as receiver, SmtpServer(refuse_first=SMTP_REFUSED) as smtp:
        assert settings.destinations_file is not None
        settings.destinations_file.write_text(destinations(receiver, smtp))
        # Live from the start: it is assigned the empty actions topic and reads as the worker writes.
        deliverer = start_deliver(settings, deliver_log, once=False)
        try:
            worker_run(settings, events_path, customers, logs)  # done: all committed, then quiet
            worker_logs = "\n".join(tail(p) for p in sorted(logs.glob("worker-*.log")))
            decisions = read_decisions(settings)
            sends = {d.action_id: d for d in decisions if d.decision == SEND}

            def finished() -> bool:
                assert deliverer.poll() is None, f"segflow deliver exited\n{tail(deliver_log)}"
                return fully_committed(settings)

            # The deliverer commits an offset once every record below it is finished (delivered
            # or dead-lettered): committed to the end, nothing of this topic is sent any more.
            assert wait_until(finished, DELIVERED_TIMEOUT, every=0.5), (
                f"segflow deliver did not commit the actions topic in {DELIVERED_TIMEOUT:.0f}s: "
                f"{len(sends)} sends, {len(receiver.processed_keys())} webhook/crm processed, "
                f"{len(smtp.messages)} emails\n{tail(deliver_log)}\n{worker_logs}"
            )
        finally:
            code = stop_worker(deliverer)
        arrivals = receiver.snapshot()
        receiver_keys = receiver.processed_keys()
        emails = smtp.messages
        refused_emails = smtp.refused

    assert code == 0, f"segflow deliver exited with {code}\n{tail(deliver_log)}"
    lines = deliver_log.read_text(errors="replace").splitlines()
    summary = [line for line in lines if line.startswith("segflow deliver: ")]
    assert len(summary) == 1, tail(deliver_log)

    # The run decided something of every kind, on every channel (else this test proves less).
    by_id: dict[str, ActionDecision] = {}
    for decision in decisions:  # a decision on the topic twice must be the same decision
        assert by_id.setdefault(decision.action_id, decision).decision == decision.decision
    kinds = Counter((d.channel, d.decision) for d in by_id.values())
    twice = {i for i, n in Counter(d.action_id for d in decisions).items() if n > 1}
    print(
        f"\n{len(events)} events; decisions on the actions topic: {len(decisions)} ({len(twice)} twice)",
        dict(kinds),
    )
    withheld = {i: d for i, d in by_id.items() if d.decision != SEND}
    assert {d.decision for d in withheld.values()} == set(WITHHELD_REASONS), kinds
    assert {d.channel for d in sends.values()} == {"email", "webhook", "crm"}, kinds
    assert any(d.send_ts_ms > d.event_ts_ms for d in sends.values()), "no send held by quiet hours"
    assert set(sends).isdisjoint(withheld)

    def sent_on(channel: str) -> set[str]:
        return {i for i, d in sends.items() if d.channel == channel}

    # Nothing lost, nothing made up: the ids processed by the servers are the send ids.
    processed = set(receiver_keys) | {email_id(m) for _, m in emails}
    missing, unknown = set(sends) - processed, processed - set(sends)
    assert not missing and not unknown, (
        f"{len(missing)} of {len(sends)} sends not delivered (e.g. {sorted(missing)[:3]}), "
        f"{len(unknown)} ids delivered that are no send (e.g. {sorted(unknown)[:3]})\n{tail(deliver_log)}"
    )

    # Webhook and crm: every request signed with its action's id as the key; each send processed
    # (answered 2xx) exactly once, at its channel's URL; retried after the 503s.
    for arrival in arrivals:
        h = arrival.headers
        key = h["Idempotency-Key"]
        assert key == h["X-Segflow-Action-Id"]
        assert verify(SECRET.encode(), h["X-Segflow-Timestamp"], arrival.body, h["X-Segflow-Signature"])
        assert key not in withheld, f"withheld decision {withheld.get(key)} reached the receiver"
        assert key in sends, f"{arrival.method} {arrival.path}: {key} is no decision on the actions topic"
        decision = sends[key]
        if decision.channel == "webhook":
            assert (arrival.method, arrival.path) == ("POST", f"/hooks/{decision.action}")
            assert json.loads(arrival.body)["action_id"] == key
        else:
            assert decision.channel == "crm", decision
            assert (arrival.method, arrival.path) == ("PATCH", f"/crm/contacts/{decision.customer_id}")
            assert json.loads(arrival.body)["id"] == decision.customer_id
    # A decision the worker wrote twice (at least once; same id) may be delivered twice; the
    # receiver processes it once. Nothing else is answered 2xx more than once.
    accepted: list[Arrival] = [a for a in arrivals if 200 <= a.status < 300]
    accepted_keys = Counter(a.headers["Idempotency-Key"] for a in accepted)
    hooked = sent_on("webhook") | sent_on("crm")
    assert receiver_keys == Counter(hooked)  # each processed exactly once
    assert set(accepted_keys) == hooked
    assert {k for k, n in accepted_keys.items() if n > 1} <= twice, "an acknowledged request sent again"
    refused = [a for a in arrivals if a.status == 503]
    assert len(refused) >= WEBHOOK_OUTAGE
    assert {a.path.split("/")[1] for a in refused} == {"hooks", "crm"}  # both destinations retried
    # Every refused request was retried until it went in.
    assert {a.headers["Idempotency-Key"] for a in refused} <= set(accepted_keys)

    # Email: each send kept exactly once, addressed and identified by its action; retried after 451s.
    email_ids = Counter(email_id(m) for _, m in emails)
    assert not set(email_ids) & set(withheld), "a withheld decision was emailed"
    assert set(email_ids) == sent_on("email")
    assert {k for k, n in email_ids.items() if n > 1} <= twice, "an email accepted by the server sent again"
    for rcpt, message in emails:
        decision = sends[email_id(message)]
        assert rcpt == [f"{decision.customer_id}@example.test"]
        assert message["Message-ID"] == f"<{decision.action_id}@example.test>"
        assert message["Subject"] == f"{decision.label}: {decision.variant}"
    assert len(refused_emails) == SMTP_REFUSED
    assert {email_id(m) for m in refused_emails} <= set(email_ids)
    assert not {email_id(m) for m in refused_emails} & set(withheld)

    # Delivered ids are exactly the send ids; nothing dead-lettered; the whole topic committed.
    assert set(accepted_keys) | set(email_ids) == set(sends)
    assert asyncio.run(dead_letters(settings)) == []
    assert_all_committed(settings)
    counts = Counter(d.decision for d in decisions)  # the deliverer counts records read
    withheld_counts = ", ".join(f"{r}={counts[r]}" for r in sorted(WITHHELD_REASONS))
    assert summary[0].startswith(
        f"segflow deliver: read {len(decisions)}, delivered {counts[SEND]}, retried "
    ), summary[0]
    assert f"dead-lettered 0 (0 malformed), withheld {withheld_counts}, in flight 0 |" in summary[0]
