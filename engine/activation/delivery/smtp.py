"""Email delivery over SMTP (aiosmtplib): one message per action, rendered from the templates.

The ``to``, ``subject`` and ``body`` templates of the destination are rendered from the action
(``engine.activation.delivery.templates``); a render failure (a missing feature, a null printed)
is permanent, so the action is dead-lettered with the reason instead of a blank email going out.
Each message carries ``Message-ID: <action_id@sender-domain>`` and ``X-Segflow-Action-Id`` (the
dedup key of a redelivered action). SMTP replies: 2xx delivered; 4xx (and no connection, a
timeout) retry; 5xx permanent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from engine.activation.actions import ActionDecision
from engine.activation.delivery.config import SmtpDestination
from engine.activation.delivery.retry import Delivered, Outcome, Permanent, Retry
from engine.activation.delivery.templates import TemplateProblem, render, template_context


def build_message(
    decision: ActionDecision, destination: SmtpDestination, now: float | None = None
) -> EmailMessage:
    """The email of ``decision``; raises :class:`TemplateProblem` naming the failing part."""
    context = template_context(decision)
    parts: dict[str, str] = {}
    for part in ("to", "subject", "body"):
        try:
            parts[part] = render(getattr(destination, part), context)
        except TemplateProblem as exc:
            raise TemplateProblem(f"email template {part!r} of {destination.name!r}: {exc}") from None
    to = " ".join(parts["to"].split())
    if "@" not in parseaddr(to)[1]:
        raise TemplateProblem(f"email template 'to' of {destination.name!r} gave {to!r}, not an address")
    domain = parseaddr(destination.sender)[1].rpartition("@")[2] or "segflow"
    message = EmailMessage()
    message["From"] = destination.sender
    message["To"] = to
    message["Subject"] = " ".join(parts["subject"].split())
    message["Date"] = formatdate(time.time() if now is None else now, usegmt=True)
    message["Message-ID"] = f"<{decision.action_id}@{domain}>"
    message["X-Segflow-Action-Id"] = decision.action_id
    message.set_content(parts["body"])
    return message


def classify_error(exc: aiosmtplib.SMTPException) -> Outcome:
    """The outcome of a failed send: 4xx and connection trouble retry, 5xx is permanent."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return Retry(text) if any(400 <= code < 500 for code in codes) else Permanent(text)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return Retry(text) if 400 <= exc.code < 500 else Permanent(text)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):  # e.g. STARTTLS required but not offered
        return Permanent(text)
    return Retry(text)  # connect errors, timeouts, the server hanging up


class SmtpSender:
    """Sends actions as emails to one SMTP server (a connection per message)."""

    def __init__(self, destination: SmtpDestination, clock: Callable[[], float] = time.time) -> None:
        self.destination = destination
        self._clock = clock

    async def start(self) -> None:
        """Nothing to open: each message has its own connection."""

    async def close(self) -> None:
        """Nothing to close."""

    async def send(self, decision: ActionDecision) -> Outcome:
        """One attempt: render, connect, send; the outcome (never raises for an SMTP failure)."""
        d = self.destination
        try:
            message = build_message(decision, d, self._clock())
        except TemplateProblem as exc:
            return Permanent(str(exc))
        try:
            await aiosmtplib.send(
                message,
                hostname=d.host,
                port=d.port,
                username=d.username,
                password=d.password,
                use_tls=d.tls == "tls",
                start_tls={"auto": None, "starttls": True, "tls": False, "none": False}[d.tls],
                timeout=d.timeout_seconds,
            )
        except aiosmtplib.SMTPException as exc:
            return classify_error(exc)
        except OSError as exc:
            return Retry(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        return Delivered(f"SMTP {d.host}:{d.port}")
