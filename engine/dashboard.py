"""``segflow dashboard``: a live web page of segment sizes, transitions and dead letters.

Segment sizes and revenue per segment come from the aggregates the workers keep in Redis
(``engine.stream.aggregates``: no scan); model quality and readiness ("ready" or "warming up:
<reason>") from the worker's ``/segflow/models`` page.
Transitions, the latest changes and dead letters are materialised from the segment-changes and
dead-letter topics (read from the beginning, without joining a consumer group), so they show
exactly what campaign systems see; duplicate deliveries are dropped by ``change_id``.
"""

from __future__ import annotations

import asyncio
import html
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.exceptions import RedisError

from engine.cli.io import format_change
from engine.codecs import decode_msgpack
from engine.reports import segment_sizes
from engine.settings import Settings
from engine.topics import start_or_close, topic_partitions
from engine.worker_process import models_status_of, read_metrics


@dataclass
class DashboardView:
    """What the page shows, updated one record at a time."""

    membership: dict[tuple[str, str], str] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    transitions: Counter[str] = field(default_factory=Counter)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=25))
    dead_reasons: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0

    def apply_change(self, change: dict[str, Any]) -> None:
        """Fold one segment-change record into the view (duplicates by id are ignored)."""
        if change["change_id"] in self.seen_ids:
            self.duplicates += 1
            return
        self.seen_ids.add(change["change_id"])
        key = (change["family"], change["customer_id"])
        if change["to"] is None:
            self.membership.pop(key, None)
        else:
            self.membership[key] = change["to"]
        self.transitions[f"{change['family']}: {change['from'] or '(none)'} -> {change['to']}"] += 1
        self.recent.appendleft(change)

    def apply_dead_letter(self, letter: dict[str, Any]) -> None:
        """Count one dead letter by reason."""
        self.dead_reasons[str(letter.get("reason"))] += 1

    def sizes(self) -> dict[str, dict[str, int]]:
        """Current segment sizes per family."""
        out: dict[str, Counter[str]] = {}
        for (family, _customer), segment in self.membership.items():
            out.setdefault(family, Counter())[segment] += 1
        return {family: dict(counts.most_common()) for family, counts in out.items()}


def render_page(
    view: DashboardView,
    metrics: dict[str, int],
    sizes: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
) -> str:
    """The HTML page (refreshes itself every 2 seconds)."""
    rows = []
    families = (sizes or {}).get("families") or {
        f: {s: {"customers": n, "revenue": None} for s, n in counts.items()}
        for f, counts in view.sizes().items()
    }
    for family, segments in families.items():
        total = sum(row["customers"] for row in segments.values()) or 1
        for segment, row in segments.items():
            count = row["customers"]
            width = round(300 * count / total)
            revenue = "" if row["revenue"] is None else f"{row['revenue']:,.2f}"
            rows.append(
                f"<tr><td>{html.escape(family)}</td><td>{html.escape(segment)}</td><td>{count}</td>"
                f"<td>{revenue}</td>"
                f'<td><div style="background:#4a7;height:12px;width:{width}px"></div></td></tr>'
            )
    quality = []
    status = models or {}
    readiness = status.get("models") or {}
    for name, report in ((status.get("learner") or {}).get("reports") or {}).items():
        ready = html.escape(str(readiness.get(name, "-")))
        for group in ("prequential", "holdout"):
            row = report[group]
            metric = "roc_auc" if report["task"] == "classification" else "mae"
            value = "-" if row.get(metric) is None else f"{row[metric]:.3f}"
            quality.append(
                f"<tr><td>{html.escape(name)}</td><td>{ready}</td><td>{group}</td><td>{row['n']}</td>"
                f"<td>{metric}</td><td>{value}</td></tr>"
            )
    transitions = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{n}</td></tr>" for t, n in view.transitions.most_common()
    )
    recent = "".join(f"<li><code>{html.escape(format_change(c))}</code></li>" for c in view.recent)
    dead = "".join(f"<tr><td>{html.escape(r)}</td><td>{n}</td></tr>" for r, n in view.dead_reasons.items())
    stats = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in metrics.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>segflow dashboard</title><style>body{{font-family:sans-serif;margin:1.5em}} td{{padding:2px 10px}}
table{{border-collapse:collapse}} tr:nth-child(even){{background:#f3f3f3}} h2{{margin-top:1.2em}}</style>
</head><body><h1>segflow</h1>
<h2>Segment sizes</h2><table><tr><th>family</th><th>segment</th><th>customers</th><th>revenue</th>
<th></th></tr>{"".join(rows)}</table>
<h2>Models (the learner's latest sealed version)</h2><table><tr><th>model</th><th>readiness</th>
<th>group</th><th>labels</th><th>metric</th><th>value</th></tr>{"".join(quality)}</table>
<h2>Transitions</h2><table>{transitions}</table>
<h2>Worker</h2><table>{stats}</table>
<h2>Dead letters by reason</h2><table>{dead}</table>
<h2>Latest changes</h2><ul>{recent}</ul>
<p>{len(view.seen_ids)} changes, {view.duplicates} duplicate deliveries dropped</p></body></html>"""


WORKER_METRICS = (
    "segflow_events_applied_total",
    "segflow_events_duplicate_total",
    "segflow_events_dead_lettered_total",
    "segflow_segment_changes_sent_total",
    "segflow_labels_sent_total",
    "segflow_customers_ticked_total",
)


async def follow(settings: Settings, view: DashboardView) -> None:
    """Keep ``view`` up to date from the changes and dead-letter topics."""
    # earliest: assign()'s own offset lookup must not land at the end after the seek to the
    # beginning below (see engine.cli.io.read_to_end).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await start_or_close(consumer)
    try:
        assigned = []
        for topic in (settings.changes_topic, settings.dlq_topic):
            for partition in await topic_partitions(settings, topic):
                assigned.append(TopicPartition(topic, partition))
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for tp, messages in batches.items():
                for message in messages:
                    record = decode_msgpack(message.value)
                    if tp.topic == settings.changes_topic:
                        view.apply_change(record)
                    else:
                        view.apply_dead_letter(record)
    finally:
        await consumer.stop()


async def serve(settings: Settings, port: int, seconds: float | None) -> None:
    """Serve the dashboard on 127.0.0.1:``port`` (for ``seconds``, or until cancelled)."""
    view = DashboardView()
    follower = asyncio.create_task(follow(settings, view))

    async def page(_request: web.Request) -> web.Response:
        counters = await asyncio.to_thread(read_metrics, settings.web_port)
        metrics = {name: counters.get(name, 0) for name in WORKER_METRICS}
        models = await asyncio.to_thread(models_status_of, settings)
        try:
            sizes = await segment_sizes(settings)
        except (OSError, RedisError):
            sizes = None
        return web.Response(text=render_page(view, metrics, sizes, models), content_type="text/html")

    async def summary(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "sizes": (await segment_sizes(settings))["families"],
                "transitions": dict(view.transitions),
                "dead_letters": dict(view.dead_reasons),
                "changes": len(view.seen_ids),
            }
        )

    app = web.Application()
    app.add_routes([web.get("/", page), web.get("/api/summary", summary)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        if seconds is None:
            await follower
        else:
            await asyncio.sleep(seconds)
    finally:
        follower.cancel()
        await runner.cleanup()
