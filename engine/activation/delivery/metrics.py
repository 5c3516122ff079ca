"""The metrics page of ``segflow deliver``: its counters in Prometheus text, and a health page.

Endpoints on ``SEGFLOW_WEB_BIND``:``SEGFLOW_DELIVER_WEB_PORT`` (``--web-port``; 0: no page), as the
worker's pages are:
  GET /segflow/metrics   counters (per destination, per withheld reason) and the in-flight gauge
  GET /segflow/health    JSON: ok, and the counters

With ``SEGFLOW_WEB_TOKEN`` set, the metrics page needs it (``engine.web_auth``); health stays open.
"""

from __future__ import annotations

from aiohttp import web

from engine.activation.actions import WITHHELD_REASONS
from engine.activation.delivery.counters import DeliveryCounters
from engine.web_auth import token_middleware

_TOTALS = (
    ("read", "Records read from the actions topic."),
    ("delivered", "Send actions a destination accepted."),
    ("dead_lettered", "Records written to the actions dead-letter topic (malformed ones included)."),
    ("malformed", "Records that are not a valid action (dead-lettered)."),
    ("commits", "Offset commits of the actions topic."),
)
_PER_DESTINATION = (
    ("attempts", "Delivery attempts (requests or SMTP sends), retries included."),
    ("delivered", "Actions the destination accepted."),
    ("retried", "Attempts that failed transiently and were tried again."),
    ("dead_lettered", "Actions dead-lettered after the destination refused them or every attempt failed."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(counters: DeliveryCounters) -> str:
    """Prometheus exposition text of ``counters``."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, int]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    for attr, help_text in _TOTALS:
        metric(f"segflow_deliver_{attr}_total", "counter", help_text, [("", getattr(counters, attr))])
    reasons = sorted(set(WITHHELD_REASONS) | set(counters.withheld))
    metric(
        "segflow_deliver_withheld_total",
        "counter",
        "Decisions not to send (skipped, not delivered), per reason.",
        [(f'{{reason="{_label(r)}"}}', counters.withheld.get(r, 0)) for r in reasons],
    )
    for attr, help_text in _PER_DESTINATION:
        metric(
            f"segflow_deliver_destination_{attr}_total",
            "counter",
            help_text,
            [
                (f'{{destination="{_label(name)}"}}', getattr(c, attr))
                for name, c in sorted(counters.destinations.items())
            ],
        )
    metric(
        "segflow_deliver_in_flight",
        "gauge",
        "Records read and not yet delivered, dead-lettered or withheld.",
        [("", counters.in_flight)],
    )
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves ``counters`` on ``port`` while the service runs (behind ``token`` when there is one)."""

    def __init__(
        self, counters: DeliveryCounters, port: int, host: str = "127.0.0.1", token: str = ""
    ) -> None:
        self.counters, self.port, self.host, self.token = counters, port, host, token
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; raises ``OSError`` naming the port when it cannot."""
        app = web.Application(middlewares=[token_middleware(self.token)] if self.token else [])
        app.router.add_get("/segflow/metrics", self._metrics)
        app.router.add_get("/segflow/health", self._health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                f"cannot serve delivery metrics on port {self.port}: {exc.strerror or exc}"
            ) from None
        self._runner = runner

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(text=render_metrics(self.counters), content_type="text/plain", charset="utf-8")

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, **self.counters.as_dict()})
