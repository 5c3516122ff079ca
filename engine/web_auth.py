"""The page token (``SEGFLOW_WEB_TOKEN``): who may read segflow's web pages, and how to ask.

With a token set, every page of the worker, of ``segflow deliver`` and of ``segflow dashboard``
answers 401 unless the request carries ``Authorization: Bearer <token>`` (or HTTP Basic with the
token as the password, any user name: what a browser sends after its login prompt). The probe
pages (:data:`PROBE_PATHS`) stay open: Kubernetes' httpGet probes and the blackbox exporter
cannot send a secret header, and the pages say only whether the process is alive or ready.
Without a token every page is open, as before (loopback binding is then the protection).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware

PROBE_PATHS = frozenset({"/segflow/health", "/segflow/ready"})
"""Liveness and readiness: open to probes whatever the token."""
BEARER_CHALLENGE = 'Bearer realm="segflow"'
BASIC_CHALLENGE = 'Basic realm="segflow", charset="UTF-8"'
"""The dashboard's challenge: a browser then asks for a user name and the token as password."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented_token(header: str | None) -> str | None:
    """The token an ``Authorization`` header carries (Bearer, or Basic's password); None if none."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def refusal(header: str | None, token: str) -> str | None:
    """Why a request with ``header`` may not read a page (None: it may). An empty ``token``
    lets everyone in; the comparison takes the same time wherever the tokens differ."""
    if not token:
        return None
    presented = presented_token(header)
    if presented is None:
        return "this page needs Authorization: Bearer <token> (SEGFLOW_WEB_TOKEN)"
    if not hmac.compare_digest(presented.encode(), token.encode()):
        return "wrong token"
    return None


def token_middleware(
    token: str, open_paths: frozenset[str] = PROBE_PATHS, challenge: str = BEARER_CHALLENGE
) -> Middleware:
    """An aiohttp middleware that answers 401 (one-line JSON ``{"error": reason}``) to a request
    for any path but ``open_paths`` that :func:`refusal` refuses."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in open_paths:
            reason = refusal(request.headers.get("Authorization"), token)
            if reason is not None:
                return web.json_response(
                    {"error": reason}, status=401, headers={"WWW-Authenticate": challenge}
                )
        return await handler(request)

    return check


def auth_headers(token: str) -> dict[str, str]:
    """The headers that present ``token`` (none for an empty one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def page_request(url: str, token: str = "", data: bytes | None = None) -> urllib.request.Request:
    """A urllib request for a segflow page, with the token when there is one."""
    method = "POST" if data is not None else "GET"
    return urllib.request.Request(url, data=data, headers=auth_headers(token), method=method)
