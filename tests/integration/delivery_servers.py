"""Real servers for the delivery tests: an aiohttp webhook receiver and an aiosmtpd SMTP server
on loopback, each in its own thread and event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller


def free_port() -> int:
    """A TCP port nothing listens on now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Reply:
    """What the receiver answers to one request, after ``delay`` seconds."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Arrival:
    """One request the receiver got."""

    at: float  # time.monotonic() on arrival
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    duplicate: bool  # a 2xx answer to an Idempotency-Key already processed: not processed again


Respond = Callable[[int, float], Reply]
"""(request index, seconds since the first request) -> the reply."""


def always(status: int, headers: dict[str, str] | None = None) -> Respond:
    return lambda _i, _t: Reply(status, headers or {})


class Receiver:
    """An aiohttp server on 127.0.0.1 that records every request and answers with ``respond``.

    It deduplicates as a receiver should: a request answered 2xx is processed (counted in
    ``processed``) only if its ``Idempotency-Key`` was not processed before; it is processed on
    arrival, before a delayed reply, as a server whose answer is lost on the way back.
    ``listen_after``: the port is not listened on for that long after ``start`` (connections
    are refused), as a receiver that is down and comes back.
    """

    def __init__(self, respond: Respond | None = None, listen_after: float = 0.0) -> None:
        self.respond = respond or always(200)
        self.listen_after = listen_after
        self.port = free_port()
        self.arrivals: list[Arrival] = []
        self.processed: Counter[str] = Counter()  # Idempotency-Key -> times processed (0 or 1)
        self._lock = threading.Lock()
        self._first: float | None = None
        self._listening = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        if self.listen_after == 0:
            assert self._listening.wait(10), "receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)

    def processed_keys(self) -> Counter[str]:
        with self._lock:
            return Counter(self.processed)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await asyncio.wait_for(self._stop.wait(), self.listen_after)
            return
        except TimeoutError:
            pass
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._listening.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.monotonic()
        key = request.headers.get("Idempotency-Key", "")
        with self._lock:
            if self._first is None:
                self._first = now
            reply = self.respond(len(self.arrivals), now - self._first)
            accepted = 200 <= reply.status < 300
            duplicate = accepted and key in self.processed
            if accepted and not duplicate:
                self.processed[key] += 1
            self.arrivals.append(
                Arrival(
                    now, request.method, request.path, dict(request.headers), body, reply.status, duplicate
                )
            )
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers)


class _Sink:
    def __init__(self, refuse_first: int) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refuse_first = refuse_first
        self.refused: list[EmailMessage] = []

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:  # aiosmtpd calls it by this name
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        if len(self.refused) < self.refuse_first:
            self.refused.append(message)  # type: ignore[arg-type]
            return "451 4.3.0 Try again later"
        self.messages.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it receives.

    ``refuse_first``: the first that many messages are answered ``451`` (a temporary failure,
    the message not kept), as a server that is busy for a while; ``refused`` keeps them.
    """

    def __init__(self, refuse_first: int = 0) -> None:
        self.port = free_port()
        self._sink = _Sink(refuse_first)
        self._controller = Controller(self._sink, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        return list(self._sink.messages)

    @property
    def refused(self) -> list[EmailMessage]:
        return list(self._sink.refused)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
