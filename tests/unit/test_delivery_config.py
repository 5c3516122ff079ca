"""The destinations file: the shipped example, defaults, and one-line ``FILE:LINE: problem`` errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.activation.delivery.config import (
    DestinationsError,
    SmtpDestination,
    WebhookDestination,
    load_destinations,
    parse_destinations,
)
from engine.activation.delivery.crm import CRM_PROPERTIES

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "destinations.yaml"
ENV = {"SEGFLOW_WEBHOOK_SECRET": "s3cret", "SEGFLOW_CRM_AUTHORIZATION": "Bearer t0ken"}

HOOK = """
webhook:
  kind: webhook
  url: https://hooks.example.test/x
  secret: abc
"""


def test_the_example_file_loads() -> None:
    destinations = load_destinations(EXAMPLE, ENV)
    assert set(destinations) == {"email", "webhook", "in_app", "crm"}
    email, hook, crm = destinations["email"], destinations["webhook"], destinations["crm"]
    assert isinstance(email, SmtpDestination) and (email.host, email.port, email.tls) == (
        "127.0.0.1",
        1025,
        "none",
    )
    assert isinstance(hook, WebhookDestination) and hook.secret == b"s3cret"
    assert hook.rate_limit is not None and (hook.rate_limit.per_second, hook.rate_limit.burst) == (20, 2)
    assert isinstance(crm, WebhookDestination)
    assert (crm.name, crm.method, crm.body) == ("crm-contacts", "PATCH", "crm_upsert")
    assert crm.properties == {**CRM_PROPERTIES, "segflow_recency_days": "features.recency_days"}
    assert crm.headers == {"Authorization": "Bearer t0ken"}


def test_webhook_defaults() -> None:
    hook = parse_destinations(HOOK, "d.yaml", {})["webhook"]
    assert isinstance(hook, WebhookDestination)
    assert (hook.name, hook.method, hook.body, hook.timeout_seconds, hook.concurrency) == (
        "webhook",
        "POST",
        "action",
        10.0,
        8,
    )
    assert hook.rate_limit is None and hook.properties == {} and hook.headers == {}
    limited = parse_destinations(HOOK + "  rate_limit_per_second: 25\n", "d.yaml", {})["webhook"]
    assert limited.rate_limit is not None and limited.rate_limit.burst == 3  # a tenth of a second's worth


SMTP = """email:
  kind: smtp
  host: mail.example.test
  from: noreply@example.test
  to: "{{ customer_id }}@example.test"
  subject: Hi
  body: Hello
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "d.yaml: empty destinations file"),
        ("webhook: [1\n", "d.yaml:2: invalid YAML"),
        ("- webhook\n", "d.yaml:1: the destinations file must be a mapping"),
        (
            "sms:\n  kind: webhook\n",
            "d.yaml:1: unknown channel 'sms' (channels: email, webhook, in_app, crm)",
        ),
        ("webhook:\n  url: http://x.test\n", "d.yaml:2: webhook: missing key 'kind' (webhook or smtp)"),
        ("webhook:\n  kind: kafka\n", "d.yaml:2: webhook.kind must be one of webhook, smtp, not 'kafka'"),
        ("webhook:\n  kind: webhook\n  secret: x\n", "d.yaml:2: webhook: missing key 'url'"),
        (HOOK + "  colour: red\n", "d.yaml:6: unknown key 'colour' in webhook (a webhook destination takes:"),
        (HOOK.replace("https://hooks.example.test/x", "ftp://x"), "d.yaml:4: webhook.url must be an http://"),
        (
            HOOK.replace("/x", "/{user}"),
            "d.yaml:4: webhook.url: unknown field {user} (allowed: {customer_id},",
        ),
        (HOOK.replace("/x", "/{customer_id"), "d.yaml:4: webhook.url: expected '}' before end of string"),
        (
            HOOK.replace("  secret: abc\n", ""),
            "d.yaml:3: webhook: give exactly one of 'secret' and 'secret_env'",
        ),
        (
            HOOK.replace("secret: abc", "secret_env: NO_SUCH_VAR"),
            "d.yaml:5: webhook.secret_env: environment variable NO_SUCH_VAR is not set",
        ),
        (HOOK + "  rate_limit_per_second: 0\n", "d.yaml:6: webhook.rate_limit_per_second must be > 0"),
        (
            HOOK + "  rate_limit_per_second: fast\n",
            "d.yaml:6: webhook.rate_limit_per_second must be a number",
        ),
        (HOOK + "  burst: 3\n", "d.yaml:6: webhook.burst needs rate_limit_per_second"),
        (HOOK + "  rate_limit_per_second: 5\n  burst: 1.5\n", "d.yaml:7: webhook.burst must be an integer"),
        (HOOK + "  timeout_seconds: -1\n", "d.yaml:6: webhook.timeout_seconds must be > 0"),
        (HOOK + "  method: GET\n", "d.yaml:6: webhook.method must be one of POST, PUT, PATCH, not 'GET'"),
        (HOOK + "  body: xml\n", "d.yaml:6: webhook.body must be one of action, crm_upsert, not 'xml'"),
        (HOOK + "  properties: {a: label}\n", "d.yaml:6: webhook.properties needs body: crm_upsert"),
        (
            HOOK + "  body: crm_upsert\n  properties: {a: features}\n",
            "d.yaml:7: webhook.properties.a: 'features' is not an action field",
        ),
        (
            HOOK + "  headers: {Idempotency-Key: x}\n",
            "d.yaml:6: webhook: header 'Idempotency-Key' is not a name",
        ),
        (
            HOOK + HOOK.replace("webhook:", "in_app:") + "  name: webhook\n",
            "d.yaml:8: in_app: destination name 'webhook' is webhook's",
        ),
        (SMTP.replace("Hi", "'{{ label '"), "d.yaml:6: email.subject: template syntax error at line 1:"),
        (SMTP.replace("noreply@example.test", "nobody"), "d.yaml:4: email.from must be an email address"),
        (SMTP + "  port: 70000\n", "d.yaml:8: email.port must be <= 65535"),
        (SMTP + "  tls: ssl\n", "d.yaml:8: email.tls must be one of auto, starttls, tls, none, not 'ssl'"),
        (SMTP + "  username: me\n", "d.yaml:2: email: username and password_env go together"),
        (SMTP.replace("  body: Hello\n", ""), "d.yaml:2: email: missing key 'body'"),
        (SMTP + SMTP, "d.yaml:8: duplicate key 'email' in the destinations file"),
        (
            SMTP.replace("  kind: smtp\n", "  kind: smtp\n  kind: smtp\n"),
            "d.yaml:3: duplicate key 'kind' in email",
        ),
    ],
)
def test_problems_are_one_line_with_the_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(DestinationsError) as caught:
        parse_destinations(text, "d.yaml", {})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(expected), message


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DestinationsError, match=r"^.*nope\.yaml: cannot read: No such file or directory$"):
        load_destinations(tmp_path / "nope.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(DestinationsError, match=r"bin\.yaml: not UTF-8 text$"):
        load_destinations(binary)


def test_the_cli_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("webhook:\n  kind: webhook\n  url: http://127.0.0.1:9/\n  secret: x\n  burst: 2\n")
    env = {"SEGFLOW_DESTINATIONS_FILE": str(bad), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", str(EXAMPLE.parents[2]))
    done = subprocess.run(
        [sys.executable, "-m", "engine", "deliver", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == f"segflow: error: {bad}:5: webhook.burst needs rate_limit_per_second\n"
