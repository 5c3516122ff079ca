"""The dashboard's main page as HTML (charts are plotly figures drawn by the locally served plotly.js)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from engine.cli.io import format_change
from engine.dashboard import charts
from engine.dashboard.data import DashboardData, Lag
from engine.dashboard.population import QUINTILES, HeatMap

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222;max-width:1400px}
h1{margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.4em 0} td,th{padding:2px 10px;text-align:left}
td.n,th.n{text-align:right} tr:nth-child(even){background:#f4f4f4}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
.note{color:#666;font-size:.9em} .chart{min-height:260px} a{color:#2a5d9f}
"""
RENDER = """
<script>
(function () {
  var drawn = 0;
  document.querySelectorAll("div.chart").forEach(function (div) {
    var figure = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    Plotly.newPlot(div, figure.data, figure.layout, {displaylogo: false, responsive: true});
    drawn += 1;
  });
  document.body.dataset.charts = String(drawn);
})();
</script>
"""


def esc(value: object) -> str:
    """Text for HTML."""
    return html.escape(str(value))


def segment_href(family: str, segment: str, suffix: str = "") -> str:
    """The segment page's path (``suffix``: ``.csv`` for the export)."""
    return f"/segment/{quote(family, safe='')}/{quote(segment, safe='')}{suffix}"


def money(value: float | None) -> str:
    """A sum of money with thousands separators (``-`` for none)."""
    return "-" if value is None else f"{value:,.2f}"


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage (``-`` for none)."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], attrs: str = "") -> str:
    """An HTML table; cells are HTML already, a header starting with ``#`` is right-aligned."""
    head = "".join(
        f'<th class="n">{esc(h[1:])}</th>' if h.startswith("#") else f"<th>{esc(h)}</th>" for h in headers
    )
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table {attrs}><tr>{head}</tr>{body}</table>"


def cell(value: object, numeric: bool = False, attrs: str = "", css: str = "") -> str:
    """One table cell holding text (``css``: its classes; numbers are right-aligned)."""
    classes = " ".join(c for c in ("n" if numeric else "", css) if c)
    head = f' class="{classes}"' if classes else ""
    return f"<td{head}{' ' + attrs if attrs else ''}>{esc(value)}</td>"


class Charts:
    """The figures of one page, numbered in order."""

    def __init__(self) -> None:
        self.count = 0

    def div(self, figure: charts.Figure, css_id: str = "") -> str:
        """A chart's container and its figure's JSON."""
        self.count += 1
        name = f"fig-{self.count}"
        ident = f' id="{esc(css_id)}"' if css_id else ""
        return (
            f'<div class="chart"{ident} data-figure="{name}"></div>'
            f'<script type="application/json" id="{name}">{charts.figure_json(figure)}</script>'
        )


def shell(title: str, body: str, refresh_seconds: float = 0) -> str:
    """A whole page: the head (style, plotly.js), ``body`` and the script that draws the charts."""
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds:g}">' if refresh_seconds > 0 else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}<title>{esc(title)}</title>'
        f'<link rel="icon" href="/favicon.svg"><style>{STYLE}</style>'
        f'<script src="/static/plotly.min.js"></script></head><body>{body}{RENDER}</body></html>'
    )


def _sizes(data: DashboardData, figures: Charts) -> str:
    if data.sizes is None:
        return f'<p class="note">segment sizes unavailable: {esc(data.sizes_error)}</p>'
    parts = []
    for family, segments in data.sizes.items():
        customers = sum(row["customers"] for row in segments.values())
        revenue = sum(row["revenue"] for row in segments.values())
        rows = []
        for segment, row in segments.items():
            key = f'data-family="{esc(family)}" data-segment="{esc(segment)}"'
            link = f'<a href="{esc(segment_href(family, segment))}">{esc(segment)}</a>'
            rows.append(
                [
                    f"<td>{link}</td>",
                    cell(int(row["customers"]), True, key, "customers"),
                    cell(pct(row["customers"] / customers if customers else None), True),
                    cell(money(row["revenue"]), True),
                    cell(pct(row["revenue"] / revenue if revenue else None), True),
                ]
            )
        total = ["<td><b>all</b></td>", cell(customers, True), cell(""), cell(money(revenue), True), cell("")]
        rows.append(total)
        heading = ["segment", "#customers", "#share", "#revenue", "#revenue share"]
        tables = table(heading, rows, f'class="sizes" data-family="{esc(family)}"')
        chart = figures.div(charts.share_figure(family, segments))
        parts.append(f"<div><h3>{esc(family)}</h3>{tables}{chart}</div>")
    return f'<div class="grid">{"".join(parts)}</div>'


def heat_map_table(grid: HeatMap) -> str:
    """The R x F grid as a table (R=5 on top), each cell ``customers / revenue``."""
    rows = []
    for r in range(QUINTILES, 0, -1):
        cells = [f"<th>R={r}</th>"]
        for f in range(1, QUINTILES + 1):
            n, revenue = grid.counts[r - 1][f - 1], grid.revenue[r - 1][f - 1]
            cells.append(cell(f"{n} / {revenue:,.0f}", True, f'data-r="{r}" data-f="{f}" data-n="{n}"'))
        rows.append(cells)
    return table(["", *(f"#F={f}" for f in range(1, QUINTILES + 1))], rows, 'class="rfm-grid"')


def _rfm(data: DashboardData, figures: Charts, currency: str) -> str:
    grid = data.heat_map
    if grid is None:
        return f'<p class="note">no family reads both r_score and f_score. {esc(data.scan_note)}</p>'
    note = (
        f"{grid.ranked} customers ranked, {grid.unranked} without quintiles. Quintiles as each customer's "
        f"last judgement read them (the sealed population snapshot of its day). {data.scan_note}"
    )
    chart = figures.div(charts.heat_map_figure(grid, currency), "rfm-heat-map")
    grid_table = f'{heat_map_table(grid)}<p class="note">{esc(note)}</p>'
    return f'<div class="grid"><div>{chart}</div><div>{grid_table}</div></div>'


def _over_time(data: DashboardData, figures: Charts) -> str:
    families = list(data.sizes or {}) or sorted(data.log.deltas)
    parts = []
    for family in families:
        days, series = data.log.sizes_over_time(family)
        if series:
            parts.append(f"<div>{figures.div(charts.over_time_figure(family, days, series))}</div>")
    if not parts:
        return '<p class="note">no segment change yet</p>'
    truncated = (
        '<p class="note">the changes topic no longer starts at offset 0 (retention): sizes before its '
        "oldest change are missing</p>"
        if data.log.truncated
        else ""
    )
    return f'<div class="grid">{"".join(parts)}</div>{truncated}'


def _transitions(data: DashboardData, figures: Charts) -> str:
    rows = data.log.top_transitions()
    if not rows:
        return '<p class="note">no segment change yet</p>'
    listed = [[cell(f), cell(a), cell(b), cell(n, True)] for (f, a, b), n in rows]
    return (
        f'<div class="grid"><div>{figures.div(charts.transitions_figure(rows))}</div>'
        f"<div>{table(['family', 'from', 'to', '#changes'], listed)}</div></div>"
    )


def lag_section(lag: Lag) -> str:
    """The worker group's lag per events partition."""
    if lag.error:
        return f'<p class="note">lag unavailable: {esc(lag.error)}</p>'
    rows = [
        [cell(p), cell(end, True), cell("-" if c is None else c, True), cell(end - (c or 0), True)]
        for p, (end, c) in sorted(lag.partitions.items())
    ]
    return (
        f'<p>group <code>{esc(lag.group)}</code>: <b id="lag-total">{lag.total}</b> events not committed</p>'
        + table(["partition", "#end offset", "#committed", "#lag"], rows)
    )


def _lift(data: DashboardData, figures: Charts) -> str:
    lift = data.lift
    if lift is None or not lift.rows:
        return '<p class="note">no measured decision yet (no outcome on the outcomes topic)</p>'
    rows = []
    for row in lift.rows:
        low, high = row.lift.interval.lower, row.lift.interval.upper
        measured = f"{pct(row.lift.absolute_lift, 2)} [{pct(low, 2)}, {pct(high, 2)}]"
        rows.append(
            [
                cell(row.comparison),
                cell(row.segment),
                cell(row.arm),
                cell(row.lift.exposures, True),
                cell(pct(row.lift.rate, 2), True),
                cell(row.control_exposures, True),
                cell(pct(row.lift.control_rate, 2), True),
                cell(measured if row.control_exposures else "no control outcome yet", True),
                cell(money(row.lift.incremental_revenue), True),
            ]
        )
    headers = ["comparison", "segment", "arm", "#treated", "#rate", "#control", "#control rate"]
    checks = "".join(
        f"<li>sample ratio {esc(name)}: p = {check.p_value:.3g}"
        f"{' <b>MISMATCH</b>' if check.flagged else ' ok'}</li>"
        for name, check in lift.ratio_checks.items()
    )
    note = f"{lift.outcomes} outcomes ({lift.duplicates} repeated ids ignored)"
    return (
        f"{figures.div(charts.lift_figure(lift))}"
        + table([*headers, "#lift [95% CI]", "#incr. revenue"], rows, 'class="lift"')
        + f'<ul>{checks}</ul><p class="note" id="lift-outcomes">{esc(note)}</p>'
    )


def _models(data: DashboardData, figures: Charts) -> str:
    learner = data.learner
    readiness = learner.get("readiness") or {}
    reports = learner.get("reports") or {}
    latest = data.history[-1] if data.history else None
    rows = []
    for name in sorted(set(reports) | set(readiness) | set(latest.models if latest else ())):
        model = latest.models.get(name) if latest else None
        state = (readiness.get(name) or {}).get("text")
        if state is None and model is not None:
            state = "ready" if model.ready else f"warming up: {model.reason}"
        metric = model.metric if model is not None else "-"
        holdout = None if model is None else model.holdout.get(metric)
        ready = [v.period_start for v in data.history if name in v.models and v.models[name].ready]
        became = ready[0] if ready else None
        rows.append(
            [
                cell(name),
                cell(state or "-", css="readiness"),
                cell("-" if model is None else model.labels_learned, True),
                cell(metric),
                cell("-" if holdout is None else f"{holdout:.3f}", True),
                cell("-" if became is None else charts.day_text(int(became // 86_400))),
            ]
        )
    if data.sealed_version is None:
        summary = "no model snapshot sealed yet (is a worker or `segflow learner` running?)"
    else:
        updated = learner.get("updated_wall_ts")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(updated)) if updated else "-"
        summary = (
            f"sealed version {data.sealed_version}; labels consumed {learner.get('labels_consumed', 0)}, "
            f"learned {learner.get('labels_learned', 0)}; learner lag {learner.get('lag', '-')}; "
            f"report of {when}"
        )
    headers = ["model", "readiness", "#labels learned", "metric", "#holdout", "first ready (period)"]
    quality = charts.quality_figures(data.history, data.min_labels)
    graphs = "".join(f"<div>{figures.div(f)}</div>" for f in quality)
    return f'<p>{esc(summary)}</p>{table(headers, rows, "class=models")}<div class="grid">{graphs}</div>'


def _footer(data: DashboardData) -> str:
    log = data.log
    worker = table(["counter", "#value"], [[cell(k), cell(v, True)] for k, v in data.worker.items()])
    if not data.worker:
        worker = '<p class="note">no worker answers on its web port</p>'
    reasons = [[cell(r), cell(n, True)] for r, n in log.dead_reasons.most_common()]
    dead = table(["reason", "#dead letters"], reasons)
    recent = "".join(f"<li><code>{esc(format_change(c))}</code></li>" for c in log.recent)
    return (
        f"<h2>Worker</h2>{worker}<h2>Dead letters by reason</h2>{dead}"
        f"<h2>Latest changes</h2><ul>{recent}</ul>"
        f'<p class="note">{len(log.seen_ids)} changes, {log.duplicates} duplicate deliveries dropped</p>'
    )


def render_page(data: DashboardData, currency: str = "EUR", refresh_seconds: float = 0) -> str:
    """The main page."""
    figures = Charts()
    body = (
        f"<h1>segflow</h1><p class=note>rules {esc(data.rules_version or '-')}</p>"
        f'<h2 id="sizes">Segment sizes and revenue share</h2>{_sizes(data, figures)}'
        f'<h2 id="rfm">R x F</h2>{_rfm(data, figures, currency)}'
        f'<h2 id="over-time">Segment sizes over time (event time)</h2>{_over_time(data, figures)}'
        f'<h2 id="transitions">Top transitions</h2>{_transitions(data, figures)}'
        f'<h2 id="lag">Lag</h2>{lag_section(data.lag)}'
        f'<h2 id="lift">Lift per experiment</h2>{_lift(data, figures)}'
        f'<h2 id="models">Model quality over time</h2>{_models(data, figures)}'
        f"{_footer(data)}"
    )
    return shell("segflow dashboard", body, refresh_seconds)
