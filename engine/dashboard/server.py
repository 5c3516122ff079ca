"""The dashboard's web server (aiohttp, loopback only).

=====================================  ==========================================================
route                                  what
=====================================  ==========================================================
``/``                                  the main page (``page``)
``/segment/<family>/<segment>``        a segment's page (``segment_page``), ``?page=N``
``/segment/<family>/<segment>.csv``    its members for a campaign: ``segflow scores export
                                       --segment`` as CSV (read fresh from the records)
``/brief/<family>/<segment>``          the one-page brief (``brief``), as ``segflow brief`` writes it
``/api/summary``                       the main numbers as JSON
``/static/plotly.min.js``              plotly.js from the installed ``plotly`` wheel (no CDN)
=====================================  ==========================================================

With ``SEGFLOW_WEB_TOKEN`` set every route needs it (``engine.web_auth``): ``Authorization: Bearer
<token>``, or a browser's login prompt with the token as the password (any user name).

The topics are followed from the start for as long as the server runs. The scan of the
customer records runs when the server starts and again when a page needs it and the last one is
older than ``scan_seconds`` (the page then shows the previous scan while the new one runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web
from redis.exceptions import RedisError

from engine.app import load_rule_set
from engine.dashboard import brief, charts
from engine.dashboard.data import ModelHistory, consumer_lag, gather
from engine.dashboard.page import render_page
from engine.dashboard.population import PopulationScan, scan_population
from engine.dashboard.segment_page import SegmentView, render_segment_page
from engine.dashboard.timeline import ChangeLog, follow
from engine.exports.scores import ExportCounts, ExportPlan, export_rows
from engine.reports import segment_sizes
from engine.rules.model import Family, Segment
from engine.settings import Settings
from engine.web_auth import BASIC_CHALLENGE, token_middleware

log = logging.getLogger(__name__)
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#3b6ea5"/></svg>'
)


class Dashboard:
    """The server's state: the followed topics, the model history and the latest records scan."""

    def __init__(self, settings: Settings, scan_seconds: float = 30.0, refresh_seconds: float = 30.0) -> None:
        self.settings = settings
        self.scan_seconds = scan_seconds
        self.refresh_seconds = refresh_seconds
        self.log = ChangeLog()
        self.history = ModelHistory()
        self._scan: PopulationScan | None = None
        self._scan_error: str | None = None
        self._scanning: asyncio.Task[None] | None = None

    async def _rescan(self) -> None:
        try:
            self._scan = await scan_population(self.settings)
            self._scan_error = None
        except (OSError, RedisError, ValueError) as exc:
            self._scan_error = f"{type(exc).__name__}: {exc}"
            log.warning("dashboard: scan of the customer records failed: %s", self._scan_error)

    def start_scan(self) -> asyncio.Task[None]:
        """Start a scan unless one runs; the task of the one running."""
        if self._scanning is None or self._scanning.done():
            self._scanning = asyncio.create_task(self._rescan())
        return self._scanning

    async def scan(self) -> PopulationScan | None:
        """The latest scan (waiting for the first); starts a new one when it is stale."""
        if self._scan is None:
            await self.start_scan()
        elif time.time() - self._scan.scanned_wall > self.scan_seconds:
            self.start_scan()
        return self._scan

    def scan_note(self, scan: PopulationScan | None) -> str:
        """Where the scan's numbers come from, for the page."""
        if scan is None:
            return f"no scan of the customer records ({self._scan_error or 'none yet'})"
        at = time.strftime("%H:%M:%S", time.localtime(scan.scanned_wall))
        return f"Scan of {len(scan.ids)} customer records at {at}."

    def lookup(self, request: web.Request) -> tuple[Family, Segment, Mapping[str, object]]:
        """The family and segment a request names, and the rules' params (404: no such segment)."""
        rules = load_rule_set(self.settings)
        family = rules.family(request.match_info["family"])
        segment = family.segment(request.match_info["segment"]) if family is not None else None
        if family is None or segment is None:
            raise web.HTTPNotFound(text="no such segment in the rules in force")
        return family, segment, rules.params

    async def main_page(self, _request: web.Request) -> web.Response:
        """``/``."""
        scan = await self.scan()
        heat = scan.heat_map() if scan is not None else None
        data = await gather(self.settings, self.log, self.history, heat, self.scan_note(scan))
        text = render_page(data, self.settings.currency, self.refresh_seconds)
        return web.Response(text=text, content_type="text/html")

    async def segment_page(self, request: web.Request) -> web.Response:
        """``/segment/<family>/<segment>``."""
        family, segment, params = self.lookup(request)
        scan = await self.scan()
        if scan is None:
            raise web.HTTPServiceUnavailable(text=self.scan_note(None))
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            raise web.HTTPBadRequest(text="page must be a number") from None
        live = await self._live(family.name, segment.name)
        members = scan.members(family.name, segment.name)
        view = SegmentView(family, segment, scan, members, live[0], live[1], page, params)
        return web.Response(text=render_segment_page(view), content_type="text/html")

    async def _live(self, family: str, segment: str) -> tuple[int | None, float | None]:
        try:
            row = (await segment_sizes(self.settings))["families"][family][segment]
        except (OSError, RedisError, KeyError):
            return None, None
        return int(row["customers"]), float(row["revenue"])

    async def segment_csv(self, request: web.Request) -> web.StreamResponse:
        """``/segment/<family>/<segment>.csv``: every member's row of ``segflow scores export``."""
        family, segment, _ = self.lookup(request)
        plans: list[ExportPlan] = []
        rows = export_rows(self.settings, None, (family.name, segment.name), plans.append, ExportCounts())
        try:
            first = await anext(rows, None)
        except ValueError as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        name = f"{family.name}-{segment.name}.csv".replace(" ", "_").replace("'", "")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            }
        )
        await response.prepare(request)
        header = plans[0].columns if plans else ["customer_id"]
        await response.write(_csv_line(header))
        if first is not None:
            await response.write(_csv_line(first))
            async for row in rows:
                await response.write(_csv_line(row))
        await response.write_eof()
        return response

    async def brief_page(self, request: web.Request) -> web.Response:
        """``/brief/<family>/<segment>``: the brief from what the server follows."""
        family, segment, params = self.lookup(request)
        scan = await self.scan()
        sizes = (await segment_sizes(self.settings))["families"]
        specs = brief.action_specs(self.settings, segment)
        content = brief.build_brief(
            family, segment, sizes, self.log, scan, specs, self.settings.currency, params
        )
        return web.Response(text=brief.render_brief(content), content_type="text/html")

    async def summary(self, _request: web.Request) -> web.Response:
        """``/api/summary``: the main numbers as JSON."""
        scan = await self.scan()
        heat = scan.heat_map() if scan is not None else None
        lag = await consumer_lag(self.settings)
        body: dict[str, Any] = {
            "sizes": (await segment_sizes(self.settings))["families"],
            "sizes_from_changes": self.log.sizes(),
            "sizes_from_records": None if scan is None else scan.sizes(),
            "transitions": {f"{f}: {a} -> {b}": n for (f, a, b), n in self.log.transitions.items()},
            "dead_letters": dict(self.log.dead_reasons),
            "changes": len(self.log.seen_ids),
            "outcomes": len(self.log.outcomes),
            "lag": None if lag.error else lag.total,
            "rfm_grid": None if heat is None else heat.counts,
        }
        return web.json_response(body)


def _csv_line(row: list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else v for v in row])
    return out.getvalue().encode()


async def _plotly(_request: web.Request) -> web.Response:
    return web.Response(
        text=charts.plotly_js(),
        content_type="application/javascript",
        headers={"Cache-Control": "max-age=86400"},
    )


async def _favicon(_request: web.Request) -> web.Response:
    return web.Response(text=FAVICON, content_type="image/svg+xml")


def build_app(dashboard: Dashboard) -> web.Application:
    """The aiohttp application of ``dashboard`` (the CSV route before the page it looks like)."""
    token = dashboard.settings.web_secret
    guard = token_middleware(token, frozenset(), BASIC_CHALLENGE)
    app = web.Application(middlewares=[guard] if token else [])
    app.add_routes(
        [
            web.get("/", dashboard.main_page),
            web.get("/segment/{family}/{segment}.csv", dashboard.segment_csv),
            web.get("/segment/{family}/{segment}", dashboard.segment_page),
            web.get("/brief/{family}/{segment}", dashboard.brief_page),
            web.get("/api/summary", dashboard.summary),
            web.get("/static/plotly.min.js", _plotly),
            web.get("/favicon.svg", _favicon),
            web.get("/favicon.ico", _favicon),
        ]
    )
    return app


async def serve(
    settings: Settings,
    port: int,
    seconds: float | None,
    scan_seconds: float = 30.0,
    refresh_seconds: float = 30.0,
) -> None:
    """Serve the dashboard on 127.0.0.1:``port`` (for ``seconds``, or until cancelled)."""
    dashboard = Dashboard(settings, scan_seconds, refresh_seconds)
    follower = asyncio.create_task(follow(settings, dashboard.log))
    dashboard.start_scan()
    runner = web.AppRunner(build_app(dashboard))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        if seconds is None:
            await follower
        else:
            await asyncio.sleep(seconds)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower
        await runner.cleanup()
