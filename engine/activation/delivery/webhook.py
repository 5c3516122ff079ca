"""Webhook delivery: one signed JSON request per action (webhook, in-app and CRM destinations).

The request (``POST`` unless the destination says ``PUT`` or ``PATCH``) carries::

    Content-Type: application/json
    Idempotency-Key: <action_id>            the receiver's dedup key (a redelivery repeats it)
    X-Segflow-Action-Id: <action_id>
    X-Segflow-Timestamp: <unix seconds of this attempt>
    X-Segflow-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + the exact body bytes>

and the body is the action's schema v1 map as JSON (``body: action``), or the CRM upsert map
(``body: crm_upsert``, ``engine.activation.delivery.crm``). The timestamp is inside the signed
bytes so that a receiver can refuse a captured request replayed later (``verify``'s tolerance).
The answer decides: 2xx delivered; 408, 409, 429 and 5xx (and no connection, a timeout) retry,
honouring ``Retry-After``; anything else (other 4xx, a redirect, which is not followed) is
permanent: the action is dead-lettered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from engine.activation.actions import ActionDecision
from engine.activation.delivery.config import WebhookDestination
from engine.activation.delivery.crm import MissingField, crm_upsert_body
from engine.activation.delivery.retry import Delivered, Outcome, Permanent, Retry, parse_retry_after

# 409: the IETF Idempotency-Key draft's answer to a retry that arrives while the first request
# with that key is still being processed (the first attempt timed out on our side): try later.
RETRY_STATUSES = frozenset({408, 409, 429})
USER_AGENT = "segflow-deliver/1"
REPLAY_TOLERANCE_SECONDS = 300.0


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Segflow-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``timestamp.body``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance: float = REPLAY_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: the signature matches (constant-time) and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def request_body(decision: ActionDecision, destination: WebhookDestination) -> bytes:
    """The JSON bytes sent for ``decision``; raises ``ValueError`` when they cannot be made."""
    if destination.body == "crm_upsert":
        payload: dict[str, Any] = crm_upsert_body(decision, destination.properties)
    else:
        payload = decision.to_wire()
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the action is not JSON: {exc}") from None


def request_url(decision: ActionDecision, destination: WebhookDestination) -> str:
    """The destination URL with ``{customer_id}``, ``{action}`` and ``{action_id}`` filled in."""
    if "{" not in destination.url:
        return destination.url
    fields = {
        "customer_id": decision.customer_id,
        "action": decision.action,
        "action_id": decision.action_id,
    }
    return destination.url.format_map({k: quote(str(v), safe="") for k, v in fields.items()})


def classify(status: int, reason: str, retry_after: str | None) -> Outcome:
    """The outcome of an HTTP answer."""
    text = f"HTTP {status} {reason}".strip()
    if 200 <= status < 300:
        return Delivered(text)
    if status in RETRY_STATUSES or 500 <= status < 600:
        return Retry(text, parse_retry_after(retry_after))
    return Permanent(text)


class WebhookSender:
    """Sends actions to one webhook destination over its own connection pool."""

    def __init__(self, destination: WebhookDestination, clock: Callable[[], float] = time.time) -> None:
        self.destination = destination
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool (``concurrency`` connections at most)."""
        connector = aiohttp.TCPConnector(limit=self.destination.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.destination.timeout_seconds)
        headers = {"User-Agent": USER_AGENT, **self.destination.headers}
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers)

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, decision: ActionDecision) -> Outcome:
        """One attempt: the outcome of one request (never raises for a network failure)."""
        if self._session is None:
            raise RuntimeError("WebhookSender.send before start()")
        try:
            body = request_body(decision, self.destination)
        except (MissingField, ValueError) as exc:
            return Permanent(str(exc))
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": decision.action_id,
            "X-Segflow-Action-Id": decision.action_id,
            "X-Segflow-Timestamp": timestamp,
            "X-Segflow-Signature": sign(self.destination.secret, timestamp, body),
        }
        url = request_url(decision, self.destination)
        try:
            async with self._session.request(
                self.destination.method, url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()  # the connection goes back to the pool only once read
                return classify(response.status, response.reason or "", response.headers.get("Retry-After"))
        except TimeoutError:
            return Retry(f"no answer within {self.destination.timeout_seconds:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Retry(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
