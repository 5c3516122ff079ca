"""The destinations file: which destination delivers each channel, and how.

YAML, one entry per channel (``email``, ``webhook``, ``in_app``, ``crm``; a channel left out has
no destination and its send actions are dead-lettered)::

    webhook:
      kind: webhook
      url: https://hooks.example.test/segflow        # {customer_id}, {action}, {action_id} allowed
      secret_env: SEGFLOW_WEBHOOK_SECRET            # or secret: "..." (HMAC-SHA256 key)
      rate_limit_per_second: 20                     # optional (default: unlimited)
      burst: 2                                      # optional (default: a tenth of the rate, >= 1)
      timeout_seconds: 5                            # optional (default 10)
      concurrency: 8                                # optional: requests in flight (default 8)
      method: POST                                  # optional: POST (default), PUT or PATCH
      body: action                                  # optional: action (default) or crm_upsert
      properties: {segflow_churn: features.churn}   # crm_upsert only: extra CRM properties
      headers: {X-Team: growth}                     # optional extra headers
      headers_env: {Authorization: CRM_AUTH}        # optional headers read from env variables
    email:
      kind: smtp
      host: smtp.example.test
      port: 587                                     # optional (default 25)
      tls: auto                                     # auto (STARTTLS if offered), starttls, tls, none
      username: segflow                             # optional, with password_env
      password_env: SEGFLOW_SMTP_PASSWORD
      from: "Segflow <noreply@example.test>"
      to: "{{ features.email }}"                    # Jinja2 templates (engine.activation.delivery.templates)
      subject: "{{ label }}"
      body: "Hello {{ customer_id }} ..."
      name: mailer                                  # optional, both kinds: the name in counters

Every problem raises :class:`DestinationsError`, one line: ``FILE:LINE: problem``.
"""

from __future__ import annotations

import math
import os
import re
import string
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from jinja2 import Template
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode

from engine.activation.actions import CHANNELS
from engine.activation.delivery.crm import CRM_PROPERTIES, SOURCE
from engine.activation.delivery.ratelimit import default_burst
from engine.activation.delivery.templates import TemplateProblem, compile_template

BODIES = ("action", "crm_upsert")
METHODS = ("POST", "PUT", "PATCH")
TLS_MODES = ("auto", "starttls", "tls", "none")
URL_FIELDS = ("customer_id", "action", "action_id")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
# Headers segflow sets itself on every request.
_OWN_HEADERS = {
    "content-type",
    "content-length",
    "idempotency-key",
    "x-segflow-signature",
    "x-segflow-timestamp",
    "x-segflow-action-id",
    "host",
}
_STR, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float"))


class DestinationsError(ValueError):
    """The destinations file is invalid; ``str()`` is one line, ``FILE:LINE: problem``."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` requests a second, ``burst`` at once."""

    per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class WebhookDestination:
    """An HTTP endpoint that receives each action as a signed JSON request."""

    name: str
    channel: str
    url: str
    secret: bytes = field(repr=False)
    method: str = "POST"
    body: str = "action"
    properties: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    timeout_seconds: float = 10.0
    concurrency: int = 8
    rate_limit: RateLimit | None = None
    kind: str = "webhook"


@dataclass(frozen=True, slots=True)
class SmtpDestination:
    """An SMTP server that receives each action as one email rendered from templates."""

    name: str
    channel: str
    host: str
    sender: str
    to: Template
    subject: Template
    body: Template
    port: int = 25
    tls: str = "auto"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 10.0
    concurrency: int = 8
    rate_limit: RateLimit | None = None
    kind: str = "smtp"


Destination = WebhookDestination | SmtpDestination


def load_destinations(path: str | Path, environ: dict[str, str] | None = None) -> dict[str, Destination]:
    """Read ``path``: channel -> destination. Raises :class:`DestinationsError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DestinationsError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise DestinationsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_destinations(text, str(path), environ)


def parse_destinations(
    text: str, source: str = "<string>", environ: dict[str, str] | None = None
) -> dict[str, Destination]:
    """Validate a destinations file given as text; ``source`` names it in error messages."""
    return _Parser(source, dict(os.environ) if environ is None else environ).parse(text)


class _Parser:
    def __init__(self, source: str, environ: dict[str, str]) -> None:
        self.source, self.environ = source, environ
        self._constructor = SafeConstructor()

    def fail(self, node: Node | None, problem: str) -> DestinationsError:
        where = f"{self.source}:{node.start_mark.line + 1}" if node is not None else self.source
        return DestinationsError(f"{where}: {' '.join(problem.split())}")

    def parse(self, text: str) -> dict[str, Destination]:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise DestinationsError(
                f"{self.source}:{line}: invalid YAML: {exc.problem or exc.context}"
            ) from None
        except yaml.YAMLError as exc:
            raise DestinationsError(f"{self.source}: invalid YAML: {exc}") from None
        if root is None:
            raise self.fail(None, f"empty destinations file (map channels {', '.join(CHANNELS)})")
        top = self.mapping(root, "the destinations file")
        result: dict[str, Destination] = {}
        for channel, (key_node, node) in top.items():
            if channel not in CHANNELS:
                raise self.fail(key_node, f"unknown channel {channel!r} (channels: {', '.join(CHANNELS)})")
            result[channel] = self.destination(channel, node)
        seen: dict[str, str] = {}
        for channel, destination in result.items():
            if destination.name in seen:
                raise self.fail(
                    top[channel][1],
                    f"{channel}: destination name {destination.name!r} is {seen[destination.name]}'s",
                )
            seen[destination.name] = channel
        return result

    # -- structure ---------------------------------------------------------------------------------

    def mapping(self, node: Node, what: str) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        values: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                raise self.fail(key_node, f"keys of {what} must be strings")
            if key_node.value in values:
                raise self.fail(key_node, f"duplicate key {key_node.value!r} in {what}")
            values[key_node.value] = (key_node, value_node)
        return values

    def string(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag not in (_STR, _INT, _FLOAT) or not node.value.strip():
            raise self.fail(node, f"{what} must be a non-empty string")
        return node.value

    def number(self, node: Node, what: str, integer: bool = False) -> float:
        """A finite number > 0 (an integer >= 1 when ``integer``)."""
        tags = (_INT,) if integer else (_INT, _FLOAT)
        if not isinstance(node, ScalarNode) or node.tag not in tags:
            raise self.fail(node, f"{what} must be {'an integer' if integer else 'a number'}")
        value = float(self._constructor.construct_object(node))
        if not math.isfinite(value) or value <= 0:
            raise self.fail(node, f"{what} must be {'>= 1' if integer else '> 0'}")
        return value

    def choice(self, node: Node, what: str, allowed: tuple[str, ...]) -> str:
        value = self.string(node, what)
        if value not in allowed:
            raise self.fail(node, f"{what} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def env(self, node: Node, what: str) -> str:
        name = self.string(node, what)
        value = self.environ.get(name)
        if not value:
            raise self.fail(node, f"{what}: environment variable {name} is not set")
        return value

    def string_map(self, node: Node, what: str) -> dict[str, tuple[Node, str]]:
        return {k: (v, self.string(v, f"{what}.{k}")) for k, (_, v) in self.mapping(node, what).items()}

    # -- destinations ------------------------------------------------------------------------------

    def destination(self, channel: str, node: Node) -> Destination:
        fields = self.mapping(node, channel)
        if "kind" not in fields:
            raise self.fail(node, f"{channel}: missing key 'kind' (webhook or smtp)")
        kind = self.choice(fields["kind"][1], f"{channel}.kind", ("webhook", "smtp"))
        parse = self.webhook if kind == "webhook" else self.smtp
        allowed, required = (_WEBHOOK_KEYS, {"url"}) if kind == "webhook" else (_SMTP_KEYS, _SMTP_REQUIRED)
        for key, (key_node, _) in fields.items():
            if key not in allowed:
                raise self.fail(
                    key_node,
                    f"unknown key {key!r} in {channel} (a {kind} destination takes: "
                    f"{', '.join(sorted(allowed))})",
                )
        missing = sorted(required - fields.keys())
        if missing:
            raise self.fail(node, f"{channel}: missing key {missing[0]!r}")
        values = {k: v for k, (_, v) in fields.items()}
        common: dict[str, Any] = {
            "name": self.string(values["name"], f"{channel}.name") if "name" in values else channel,
            "channel": channel,
            "rate_limit": self.rate_limit(channel, values),
        }
        if "timeout_seconds" in values:
            common["timeout_seconds"] = self.number(values["timeout_seconds"], f"{channel}.timeout_seconds")
        if "concurrency" in values:
            common["concurrency"] = int(
                self.number(values["concurrency"], f"{channel}.concurrency", integer=True)
            )
        return parse(channel, node, values, common)

    def rate_limit(self, channel: str, values: dict[str, Node]) -> RateLimit | None:
        if "rate_limit_per_second" not in values:
            if "burst" in values:
                raise self.fail(values["burst"], f"{channel}.burst needs rate_limit_per_second")
            return None
        rate = self.number(values["rate_limit_per_second"], f"{channel}.rate_limit_per_second")
        if "burst" in values:
            return RateLimit(rate, int(self.number(values["burst"], f"{channel}.burst", integer=True)))
        return RateLimit(rate, default_burst(rate))

    def webhook(
        self, channel: str, node: Node, values: dict[str, Node], common: dict[str, Any]
    ) -> Destination:
        url = self.string(values["url"], f"{channel}.url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(values["url"], f"{channel}.url must be an http:// or https:// URL, not {url!r}")
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(url) if name is not None]
        except ValueError as exc:
            raise self.fail(
                values["url"], f"{channel}.url: {exc} (fields are written {{customer_id}})"
            ) from None
        for name in names:
            if name not in URL_FIELDS:
                allowed = ", ".join("{" + f + "}" for f in URL_FIELDS)
                raise self.fail(
                    values["url"], f"{channel}.url: unknown field {{{name}}} (allowed: {allowed})"
                )
        if ("secret" in values) == ("secret_env" in values):
            raise self.fail(node, f"{channel}: give exactly one of 'secret' and 'secret_env' (the HMAC key)")
        if "secret" in values:
            secret = self.string(values["secret"], f"{channel}.secret")
        else:
            secret = self.env(values["secret_env"], f"{channel}.secret_env")
        body = self.choice(values["body"], f"{channel}.body", BODIES) if "body" in values else "action"
        properties: dict[str, str] = {}
        if "properties" in values:
            if body != "crm_upsert":
                raise self.fail(values["properties"], f"{channel}.properties needs body: crm_upsert")
            for prop, (value_node, source) in self.string_map(
                values["properties"], f"{channel}.properties"
            ).items():
                if not SOURCE.fullmatch(source):
                    raise self.fail(
                        value_node,
                        f"{channel}.properties.{prop}: {source!r} is not an action field "
                        "(e.g. label, variant, change.to, features.<name>)",
                    )
                properties[prop] = source
        headers = (
            {k: v for k, (_, v) in self.string_map(values["headers"], f"{channel}.headers").items()}
            if "headers" in values
            else {}
        )
        if "headers_env" in values:
            for header, (value_node, _) in self.string_map(
                values["headers_env"], f"{channel}.headers_env"
            ).items():
                headers[header] = self.env(value_node, f"{channel}.headers_env.{header}")
        for header in headers:
            if header.lower() in _OWN_HEADERS or not _HEADER_NAME.fullmatch(header):
                raise self.fail(
                    values.get("headers") or values["headers_env"],
                    f"{channel}: header {header!r} is not a name segflow lets you set",
                )
        method = self.choice(values["method"], f"{channel}.method", METHODS) if "method" in values else "POST"
        return WebhookDestination(
            url=url,
            secret=secret.encode(),
            method=method,
            body=body,
            properties={**CRM_PROPERTIES, **properties} if body == "crm_upsert" else {},
            headers=headers,
            **common,
        )

    def smtp(self, channel: str, node: Node, values: dict[str, Node], common: dict[str, Any]) -> Destination:
        sender = self.string(values["from"], f"{channel}.from")
        if "@" not in parseaddr(sender)[1]:
            raise self.fail(values["from"], f"{channel}.from must be an email address, not {sender!r}")
        templates = {key: self.template(values[key], f"{channel}.{key}") for key in ("to", "subject", "body")}
        port = int(self.number(values["port"], f"{channel}.port", integer=True)) if "port" in values else 25
        if port > 65535:
            raise self.fail(values["port"], f"{channel}.port must be <= 65535")
        tls = self.choice(values["tls"], f"{channel}.tls", TLS_MODES) if "tls" in values else "auto"
        username = self.string(values["username"], f"{channel}.username") if "username" in values else None
        if (username is None) != ("password_env" not in values):
            raise self.fail(node, f"{channel}: username and password_env go together")
        password = self.env(values["password_env"], f"{channel}.password_env") if username else None
        return SmtpDestination(
            host=self.string(values["host"], f"{channel}.host"),
            sender=sender,
            port=port,
            tls=tls,
            username=username,
            password=password,
            to=templates["to"],
            subject=templates["subject"],
            body=templates["body"],
            **common,
        )

    def template(self, node: Node, what: str) -> Template:
        source = self.string(node, what)
        try:
            return compile_template(source)
        except TemplateProblem as exc:
            raise self.fail(node, f"{what}: {exc}") from None


_COMMON_KEYS = {"kind", "name", "rate_limit_per_second", "burst", "timeout_seconds", "concurrency"}
_WEBHOOK_KEYS = _COMMON_KEYS | {
    "url",
    "secret",
    "secret_env",
    "method",
    "body",
    "properties",
    "headers",
    "headers_env",
}
_SMTP_KEYS = _COMMON_KEYS | {
    "host",
    "port",
    "tls",
    "username",
    "password_env",
    "from",
    "to",
    "subject",
    "body",
}
_SMTP_REQUIRED = {"host", "from", "to", "subject", "body"}
