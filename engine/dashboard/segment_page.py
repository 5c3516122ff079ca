"""The segment page ``/segment/<family>/<segment>``: its customers (paged), their typical features
against the population's, the rules that define it and a CSV export for a campaign.

Members and features come from one scan of the customer records (``population``): membership as
each record holds it, features at the scan's moment T; the live size and revenue beside them
come from the aggregates (they can be ahead of the scan by what happened since).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from engine.dashboard import charts
from engine.dashboard.page import Charts, cell, esc, money, segment_href, shell, table
from engine.dashboard.population import FeatureContrast, PopulationScan
from engine.rules.model import Family, Segment

PAGE_SIZE = 50
TOP_CONTRASTS = 12


def when(ts: float | None) -> str:
    """Epoch seconds as a UTC date and time (``-`` for none)."""
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def rules_rows(
    family: Family, segment: Segment, params: Mapping[str, object] | None = None
) -> list[tuple[str, str]]:
    """What defines the segment in the rules file, as (what, text) pairs (with the params it reads)."""
    rows = [
        ("priority", f"{segment.priority + 1} of {len(family.segments)} in {family.name} (first match wins)"),
        ("enter" if segment.exit is not None else "when", segment.enter.text),
    ]
    if segment.exit is not None:
        rows.append(("exit", segment.exit.text))
    if segment.min_dwell_seconds:
        rows.append(("min dwell", f"{segment.min_dwell_seconds / 86_400:g} days"))
    higher = [s.name for s in family.segments if s.priority < segment.priority]
    if higher:
        rows.append(("unless in", ", ".join(higher) + " (checked first)"))
    rows += [(f"label when {when_.text}", text) for when_, text in segment.labels]
    if segment.on_enter:
        rows.append(("on enter", ", ".join(segment.on_enter)))
    # Params are constants once compiled (not among an expression's names): find them in the text.
    words = {w for e in segment.expressions() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", e.text)}
    used = sorted(words & set(params or {}))
    if used and params is not None:
        rows.append(("params", ", ".join(f"{n} = {params[n]}" for n in used)))
    return rows


@dataclass(frozen=True, slots=True)
class SegmentView:
    """What the segment page shows."""

    family: Family
    segment: Segment
    scan: PopulationScan
    members: list[int]
    live_customers: int | None
    live_revenue: float | None
    page: int
    params: Mapping[str, object] | None = None

    @property
    def pages(self) -> int:
        """Pages of ``PAGE_SIZE`` members (at least 1)."""
        return max(1, -(-len(self.members) // PAGE_SIZE))

    def contrasts(self) -> list[FeatureContrast]:
        """The members' medians against the population's, most distinct first."""
        return self.scan.contrasts(self.family.name, self.segment.name)


def _members_table(view: SegmentView) -> str:
    scan, family = view.scan, view.family
    start = (view.page - 1) * PAGE_SIZE
    features = [f for f in family.key_features if f in scan.feature_names]
    rows = []
    for index in view.members[start : start + PAGE_SIZE]:
        values = [scan.value(index, f) for f in features]
        rows.append(
            [
                cell(scan.ids[index], css="customer"),
                cell(money(scan.revenue[index]), True),
                cell(when(scan.since[family.name][index])),
                *(cell("-" if v is None else f"{v:,.2f}", True) for v in values),
            ]
        )
    return table(["customer", "#revenue", "in since", *(f"#{f}" for f in features)], rows, 'class="members"')


def _pager(view: SegmentView) -> str:
    base = segment_href(view.family.name, view.segment.name)
    links = []
    if view.page > 1:
        links.append(f'<a href="{esc(base)}?page={view.page - 1}">previous</a>')
    links.append(f"page {view.page} of {view.pages}")
    if view.page < view.pages:
        links.append(f'<a href="{esc(base)}?page={view.page + 1}">next</a>')
    return f'<p class="pager">{" · ".join(links)}</p>'


def contrast_rows(contrasts: list[FeatureContrast]) -> list[list[str]]:
    """Table rows of feature contrasts."""
    return [
        [
            cell(c.name),
            cell(f"{c.segment_median:,.2f}", True),
            cell(f"{c.population_median:,.2f}", True),
            cell(f"{c.effect:+.2f}", True),
            cell(f"{100 * c.coverage:.0f}%", True),
        ]
        for c in contrasts
    ]


CONTRAST_HEADERS = [
    "feature",
    "#segment median",
    "#population median",
    "#difference (IQRs)",
    "#members with it",
]


def contrast_figure(contrasts: list[FeatureContrast]) -> charts.Figure:
    """The most distinct features' differences, in population IQRs."""
    top = list(reversed(contrasts[:TOP_CONTRASTS]))
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [round(c.effect, 3) for c in top],
                "y": [c.name for c in top],
                "marker": {"color": [charts.PALETTE[0] if c.effect >= 0 else charts.PALETTE[3] for c in top]},
            }
        ],
        "layout": {
            "title": {"text": "median vs population (in population IQRs)", "font": {"size": 14}},
            "height": 360,
            "margin": {"l": 190, "r": 20, "t": 36, "b": 40},
        },
    }


def render_segment_page(view: SegmentView) -> str:
    """The segment page."""
    family, segment, scan = view.family, view.segment, view.scan
    figures = Charts()
    live = (
        f"live (aggregates): <b>{view.live_customers}</b> customers, revenue {money(view.live_revenue)}"
        if view.live_customers is not None
        else "live aggregates unavailable"
    )
    scanned = (
        f"scan of the customer records at {time.strftime('%H:%M:%S', time.localtime(scan.scanned_wall))}:"
        f' <b id="members-count">{len(view.members)}</b> members; features as of {when(scan.as_of)}'
        " (event time)"
    )
    csv = segment_href(family.name, segment.name, ".csv")
    brief = f"/brief/{quote(family.name, safe='')}/{quote(segment.name, safe='')}"
    contrasts = view.contrasts()
    defined = [
        [cell(k), f"<td><code>{esc(v)}</code></td>"] for k, v in rules_rows(family, segment, view.params)
    ]
    rules = table(["", "rule"], defined)
    typical = (
        f'<div class="grid"><div>{figures.div(contrast_figure(contrasts), "contrast-chart")}</div>'
        f"<div>{table(CONTRAST_HEADERS, contrast_rows(contrasts), 'class=contrasts')}</div></div>"
        if contrasts
        else '<p class="note">no members in the scan</p>'
    )
    body = (
        f'<p><a href="/">← dashboard</a></p><h1>{esc(family.name)}: {esc(segment.name)}</h1>'
        f"<p>{live}<br>{scanned}</p>"
        f'<p><a id="csv-export" href="{esc(csv)}">CSV export for a campaign</a> (every member: features, '
        "scores, segments; as <code>segflow scores export --segment</code>) · "
        f'<a href="{esc(brief)}">one-page brief</a></p>'
        f"<h2>What defines it</h2>{rules}"
        f"<h2>Typical features</h2>{typical}"
        f"<h2>Customers</h2>{_pager(view)}{_members_table(view)}{_pager(view)}"
    )
    return shell(f"segflow: {family.name} / {segment.name}", body)
