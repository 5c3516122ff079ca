"""What goes on the wire: the webhook body, its signature and URL, CRM upserts, emails from templates."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from engine.activation.actions import ActionDecision
from engine.activation.delivery.config import SmtpDestination, WebhookDestination
from engine.activation.delivery.crm import CRM_PROPERTIES, MissingField, crm_upsert_body
from engine.activation.delivery.retry import Delivered, Permanent, Retry
from engine.activation.delivery.smtp import build_message
from engine.activation.delivery.templates import TemplateProblem, compile_template, render, template_context
from engine.activation.delivery.webhook import classify, request_body, request_url, sign, verify

SECRET = b"webhook-secret"


def decision(**changes: object) -> ActionDecision:
    fields: dict[str, object] = {
        "action_id": "0f3c9a",
        "customer_id": "c/42 é",
        "action": "churn_winback_email",
        "channel": "webhook",
        "decision": "send",
        "change": {"change_id": "ch1", "family": "churn_risk", "from": None, "to": "Likely to Churn"},
        "reason": "score_churn=0.81 >= 0.7",
        "event_ts_ms": 1_700_000_000_000,
        "send_ts_ms": 1_700_000_000_000,
        "emitted_ts_ms": 1_700_000_000_500,
        "rules_version": "r1",
        "experiment": "winback",
        "variant": "discount",
        "probability": 0.5,
        "policy": "ab",
        "features": {"recency_days": 40, "churn_score": 0.81},
        "label": "Likely to Churn",
    }
    fields.update(changes)
    return ActionDecision(**fields)  # type: ignore[arg-type]


def hook(**changes: object) -> WebhookDestination:
    return WebhookDestination(
        **{"name": "hook", "channel": "webhook", "url": "http://127.0.0.1:9/x", "secret": SECRET, **changes}  # type: ignore[arg-type]
    )


def test_the_signature_is_the_hex_hmac_sha256_of_the_timestamp_and_the_body() -> None:
    body = request_body(decision(), hook())
    ts = "1700000000"
    expected = "sha256=" + hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, ts, body) == expected
    assert verify(SECRET, ts, body, expected, now=1_700_000_100)
    assert not verify(b"other", ts, body, expected, now=1_700_000_100)
    assert not verify(SECRET, ts, body + b" ", expected, now=1_700_000_100)
    assert not verify(SECRET, "1700000001", body, expected, now=1_700_000_100)  # the timestamp is signed
    assert not verify(SECRET, ts, body, expected, now=1_700_000_301)  # a replay after the tolerance
    assert not verify(SECRET, "soon", body, expected)


def test_the_body_is_the_schema_v1_map_as_json() -> None:
    d = decision()
    assert json.loads(request_body(d, hook())) == d.to_wire()
    with pytest.raises(ValueError, match="not JSON"):
        request_body(decision(features={"x": float("nan")}), hook())


def test_the_url_fields_are_filled_in_quoted() -> None:
    url = "https://crm.example.test/contacts/{customer_id}?a={action}"
    assert request_url(decision(), hook(url=url)) == (
        "https://crm.example.test/contacts/c%2F42%20%C3%A9?a=churn_winback_email"
    )
    assert request_url(decision(), hook()) == "http://127.0.0.1:9/x"


def test_the_crm_upsert_body() -> None:
    properties = {**CRM_PROPERTIES, "segflow_churn": "features.churn_score", "segflow_to": "change.to"}
    body = json.loads(request_body(decision(), hook(body="crm_upsert", properties=properties)))
    assert body == {
        "id": "c/42 é",
        "properties": {
            "segflow_segment": "Likely to Churn",
            "segflow_action": "churn_winback_email",
            "segflow_variant": "discount",
            "segflow_experiment": "winback",
            "segflow_action_id": "0f3c9a",
            "segflow_reason": "score_churn=0.81 >= 0.7",
            "segflow_family": "churn_risk",
            "segflow_event_ts": 1_700_000_000_000,
            "segflow_churn": 0.81,
            "segflow_to": "Likely to Churn",
        },
    }
    with pytest.raises(
        MissingField, match=r"CRM property 'p' \(features.ltv\): the action has no feature 'ltv'"
    ):
        crm_upsert_body(decision(), {"p": "features.ltv"})


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (200, None, Delivered("HTTP 200 OK")),
        (204, None, Delivered("HTTP 204 OK")),
        (500, None, Retry("HTTP 500 OK")),
        (503, "3", Retry("HTTP 503 OK", 3.0)),
        (429, "10", Retry("HTTP 429 OK", 10.0)),
        (408, None, Retry("HTTP 408 OK")),
        (409, None, Retry("HTTP 409 OK")),  # the same key still being processed
        (400, None, Permanent("HTTP 400 OK")),
        (404, "5", Permanent("HTTP 404 OK")),
        (410, None, Permanent("HTTP 410 OK")),
        (302, None, Permanent("HTTP 302 OK")),
    ],
)
def test_http_answers(status: int, retry_after: str | None, expected: object) -> None:
    assert classify(status, "OK", retry_after) == expected


def test_templates_read_the_action() -> None:
    template = compile_template(
        "{{ customer_id }}|{{ label }}|{{ variant }}|{{ reason }}|{{ features.recency_days }}|"
        "{{ '%.2f' | format(features.churn_score) }}|{{ change.family }}"
    )
    assert render(template, template_context(decision())) == (
        "c/42 é|Likely to Churn|discount|score_churn=0.81 >= 0.7|40|0.81|churn_risk"
    )


def test_a_missing_feature_fails_the_render_with_a_clear_reason() -> None:
    template = compile_template("Your balance: {{ features.balance }}")
    with pytest.raises(TemplateProblem) as caught:
        render(template, template_context(decision()))
    assert str(caught.value) == "no 'balance' in the map (its keys: churn_score, recency_days)"
    with pytest.raises(TemplateProblem, match=r"^'first_name' is undefined$"):
        render(compile_template("Hi {{ first_name }}"), template_context(decision()))


def test_printing_a_null_fails_but_testing_one_does_not() -> None:
    context = template_context(decision(variant=None, experiment=None))
    with pytest.raises(TemplateProblem, match="a printed value is null"):
        render(compile_template("variant {{ variant }}"), context)
    assert render(compile_template("{% if variant %}v{% endif %}[{{ variant or '' }}]"), context) == "[]"


def test_the_sandbox_refuses_internals() -> None:
    with pytest.raises(TemplateProblem, match="SecurityError"):
        render(compile_template("{{ features.__class__.__mro__ }}"), template_context(decision()))


def mailer(**changes: object) -> SmtpDestination:
    fields: dict[str, object] = {
        "name": "mail",
        "channel": "email",
        "host": "127.0.0.1",
        "sender": "Segflow <noreply@example.test>",
        "to": compile_template("{{ customer_id | replace('/', '') | replace(' ', '') }}@example.test"),
        "subject": compile_template("{{ label }}:\n{{ variant }}"),
        "body": compile_template("Hello {{ customer_id }}, churn {{ features.churn_score }}"),
    }
    fields.update(changes)
    return SmtpDestination(**fields)  # type: ignore[arg-type]


def test_the_email_is_rendered_with_the_action_id_headers() -> None:
    message = build_message(decision(channel="email"), mailer(), now=0)
    assert message["To"] == "c42é@example.test"
    assert message["Subject"] == "Likely to Churn: discount"  # a newline in a header is folded away
    assert message["Message-ID"] == "<0f3c9a@example.test>"
    assert message["X-Segflow-Action-Id"] == "0f3c9a"
    assert message["Date"] == "Thu, 01 Jan 1970 00:00:00 +0000"
    assert message.get_content() == "Hello c/42 é, churn 0.81\n"


def test_an_email_template_failure_names_the_part() -> None:
    bad = mailer(body=compile_template("{{ features.first_name }}"))
    with pytest.raises(
        TemplateProblem, match=r"^email template 'body' of 'mail': no 'first_name' in the map"
    ):
        build_message(decision(channel="email"), bad)
    nowhere = mailer(to=compile_template("{{ label }}"))
    with pytest.raises(TemplateProblem, match="gave 'Likely to Churn', not an address"):
        build_message(decision(channel="email"), nowhere)
