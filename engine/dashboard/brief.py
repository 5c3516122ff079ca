"""``segflow brief FAMILY SEGMENT``: a one-page HTML brief on one segment for marketing, and its PDF.

It holds the segment's size and revenue share (the aggregates), its trend (sizes by day replayed
from the segment-changes topic), what distinguishes it (members' median features against the
population's, from a scan of the customer records), the rules that define it (the rules file in
force) and a suggested action: each ``on_enter`` action of the segment with its measured lift
from the outcomes topic (``engine.activation.lift_table``), or, without one, the standard
playbook's suggestion, marked as not measured.

The page is static HTML with an inline SVG chart and no script, so it prints the same anywhere;
``print_pdf`` prints it to one A4 page with headless Chromium.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.activation.experiments.assignment import ExperimentSpec
from engine.activation.lift_table import LiftRow, lift_table
from engine.activation.program import ActionSpec
from engine.app import load_rule_set
from engine.cli.lift_cmd import experiments_of
from engine.dashboard.playbook import suggestion
from engine.dashboard.population import FeatureContrast, PopulationScan, scan_population
from engine.dashboard.segment_page import rules_rows
from engine.dashboard.timeline import ChangeLog, read_once
from engine.reports import segment_sizes
from engine.rules.model import Family, Segment
from engine.settings import Settings

TOP_FEATURES = 6
TREND_DAYS = 30
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
)
"""Headless printing of a local file: no network at all (the closed network refuses it anyway)."""
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@dataclass(frozen=True, slots=True)
class ActionContext:
    """The segment's ``on_enter`` actions and the experiments the rules declare."""

    actions: tuple[ActionSpec, ...]
    experiments: Mapping[str, ExperimentSpec]
    bandits: frozenset[str]


def action_specs(settings: Settings, segment: Segment) -> ActionContext:
    """The actions a segment's entry triggers, from the rules in force."""
    rules = load_rule_set(settings)
    actions = tuple(rules.activation.actions[a] for a in segment.on_enter if a in rules.activation.actions)
    specs, bandits = experiments_of(settings)
    return ActionContext(actions, specs, bandits)


@dataclass(frozen=True, slots=True)
class ActionLift:
    """One action of the segment and the lift measured for decisions its entry caused."""

    action: ActionSpec
    rows: list[LiftRow]
    outcomes: int


@dataclass
class BriefContent:
    """Everything on the brief."""

    family: Family
    segment: Segment
    currency: str
    customers: int
    family_customers: int
    revenue: float
    family_revenue: float
    days: list[int] = field(default_factory=list)
    trend: list[int] = field(default_factory=list)
    contrasts: list[FeatureContrast] = field(default_factory=list)
    rules: list[tuple[str, str]] = field(default_factory=list)
    actions: list[ActionLift] = field(default_factory=list)
    playbook: str | None = None
    scan_as_of: float | None = None
    generated: float = field(default_factory=time.time)


def build_brief(
    family: Family,
    segment: Segment,
    sizes: Mapping[str, Mapping[str, Mapping[str, float]]],
    log: ChangeLog,
    scan: PopulationScan | None,
    context: ActionContext,
    currency: str,
    params: Mapping[str, object] | None = None,
) -> BriefContent:
    """The brief's content from what was read (pure)."""
    rows = sizes.get(family.name, {})
    mine = rows.get(segment.name, {"customers": 0, "revenue": 0.0})
    days, series = log.sizes_over_time(family.name)
    outcomes = [o for o in log.outcomes.values() if o.family == family.name and o.segment == segment.name]
    actions = []
    for action in context.actions:
        own = [o for o in outcomes if o.action == action.name]
        table = lift_table(own, context.experiments, bandits=context.bandits)
        actions.append(ActionLift(action, [r for r in table.rows if r.segment == "*"], table.outcomes))
    return BriefContent(
        family=family,
        segment=segment,
        currency=currency,
        customers=int(mine["customers"]),
        family_customers=int(sum(r["customers"] for r in rows.values())),
        revenue=float(mine["revenue"]),
        family_revenue=float(sum(r["revenue"] for r in rows.values())),
        days=days,
        trend=series.get(segment.name, [0] * len(days)),
        contrasts=[] if scan is None else scan.contrasts(family.name, segment.name)[:TOP_FEATURES],
        rules=rules_rows(family, segment, params),
        actions=actions,
        playbook=suggestion(family.name, segment.name),
        scan_as_of=None if scan is None else scan.as_of,
    )


async def gather_brief(settings: Settings, family_name: str, segment_name: str) -> BriefContent:
    """Read everything a brief needs (aggregates, topics, records) and build it."""
    rules = load_rule_set(settings)
    family = rules.family(family_name)
    if family is None:
        known = ", ".join(f.name for f in rules.families)
        raise ValueError(f"unknown family {family_name!r}; known: {known}")
    segment = family.segment(segment_name)
    if segment is None:
        known = ", ".join(s.name for s in family.segments)
        raise ValueError(f"unknown segment {segment_name!r} of {family_name}; known: {known}")
    sizes = (await segment_sizes(settings))["families"]
    log = await read_once(settings)
    scan = await scan_population(settings)
    context = action_specs(settings, segment)
    return build_brief(family, segment, sizes, log, scan, context, settings.currency, rules.params)


def _e(value: object) -> str:
    return html.escape(str(value))


def _share(part: float, whole: float) -> str:
    return "-" if not whole else f"{100 * part / whole:.1f}%"


def trend_svg(sizes: Sequence[int], days: Sequence[int], width: int = 640, height: int = 96) -> str:
    """Daily sizes as an inline SVG line with its first and last dates (no script)."""
    if not sizes:
        return "<p class=note>no segment change yet</p>"
    top = max(max(sizes), 1)
    step = width / max(1, len(sizes) - 1)
    base = height - 18
    points = " ".join(f"{i * step:.1f},{base - (height - 30) * s / top:.1f}" for i, s in enumerate(sizes))
    first, last = (time.strftime("%Y-%m-%d", time.gmtime(d * 86_400)) for d in (days[0], days[-1]))
    return (
        f'<svg class="trend" viewBox="-40 0 {width + 50} {height}" width="{width + 50}" height="{height}">'
        f'<line x1="0" y1="{height - 18}" x2="{width}" y2="{height - 18}" stroke="#bbb"/>'
        f'<polyline fill="none" stroke="#3b6ea5" stroke-width="2.5" points="{points}"/>'
        f'<text x="-36" y="16" font-size="11">{top}</text>'
        f'<text x="-36" y="{base}" font-size="11">0</text>'
        f'<text x="0" y="{height - 3}" font-size="11">{first}</text>'
        f'<text x="{width}" y="{height - 3}" font-size="11" text-anchor="end">{last}</text></svg>'
    )


def _trend_text(content: BriefContent) -> str:
    if not content.trend:
        return "No change event yet."
    now = content.trend[-1]
    back = content.trend[-TREND_DAYS - 1] if len(content.trend) > TREND_DAYS else content.trend[0]
    span = min(TREND_DAYS, len(content.trend) - 1)
    return (
        f"{now:,} customers at the end of the last day with a change; "
        f"{now - back:+,} over the last {span} days."
    )


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f} pp"


def _action_html(item: ActionLift) -> str:
    action = item.action
    what = f"<b>{_e(action.name)}</b> ({_e(action.channel)}"
    if action.experiment is not None:
        arms = ", ".join(v.name for v in action.experiment.variants)
        what += f"; experiment {_e(action.experiment.name)}, {_e(action.policy)}: {_e(arms)}"
    what += ")"
    if not item.rows:
        return f"<li>{what}: no outcome measured yet for entries into this segment.</li>"
    lines = []
    for row in item.rows:
        lift = row.lift
        if not row.control_exposures:
            lines.append(
                f"<li>{_e(row.comparison)}, {_e(row.arm)}: {lift.exposures:,} treated, no control outcome "
                "yet: no lift to measure</li>"
            )
            continue
        significant = lift.interval.lower is not None and lift.interval.lower > 0
        verdict = "measured gain" if significant else "not distinguishable from control yet"
        lines.append(
            f"<li>{_e(row.comparison)}, {_e(row.arm)}: {_pp(lift.absolute_lift)} "
            f"[{_pp(lift.interval.lower)}, {_pp(lift.interval.upper)}] on {lift.exposures:,} treated vs "
            f"{row.control_exposures:,} control ({_e(verdict)})</li>"
        )
    return f"<li>{what}, {item.outcomes:,} outcomes:<ul>{''.join(lines)}</ul></li>"


STYLE = """
@page{size:A4;margin:12mm}
body{font-family:system-ui,'DejaVu Sans',sans-serif;font-size:9.5pt;color:#222;margin:0}
h1{font-size:18pt;margin:0 0 1mm} h2{font-size:11pt;margin:3.5mm 0 1mm;color:#2a5d9f}
.kpis{display:flex;gap:5mm;margin:2mm 0} .kpi{border:1px solid #ccd;border-radius:2mm;padding:1.5mm 3.5mm}
.kpi b{display:block;font-size:14pt} table{border-collapse:collapse;width:100%} p{margin:1mm 0}
td,th{padding:.6mm 2mm;text-align:left;vertical-align:top;border-bottom:1px solid #eee}
td.n,th.n{text-align:right} .note{color:#666;font-size:8.5pt} code{font-size:9pt}
ul{margin:1mm 0;padding-left:5mm}
"""


def render_brief(content: BriefContent) -> str:
    """The brief as one static HTML page."""
    family, segment = content.family, content.segment
    c = content.currency
    kpis = (
        f'<div class="kpi">customers<b id="brief-customers">{content.customers:,}</b>'
        f"{_share(content.customers, content.family_customers)} of {_e(family.name)}</div>"
        f'<div class="kpi">revenue<b>{content.revenue:,.0f} {_e(c)}</b>'
        f"{_share(content.revenue, content.family_revenue)} of the family's</div>"
        f'<div class="kpi">revenue per customer<b>{content.revenue / max(1, content.customers):,.0f} '
        f"{_e(c)}</b>"
        f"family: {content.family_revenue / max(1, content.family_customers):,.0f}</div>"
    )
    features = "".join(
        f"<tr><td>{_e(x.name)}</td><td class=n>{x.segment_median:,.2f}</td><td class=n>"
        f"{x.population_median:,.2f}</td><td>{'higher' if x.effect > 0 else 'lower'} "
        f"({abs(x.effect):.1f} IQR)</td></tr>"
        for x in content.contrasts
    )
    distinct = (
        "<table><tr><th>feature</th><th class=n>segment median</th><th class=n>population median</th>"
        f"<th>difference</th></tr>{features}</table>"
        if features
        else "<p class=note>no members in the records scan</p>"
    )
    rules = "".join(f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in content.rules)
    playbook = f"<p>Standard playbook (not measured): {_e(content.playbook)}</p>" if content.playbook else ""
    if content.actions:
        action = f"<ul>{''.join(_action_html(a) for a in content.actions)}</ul>{playbook}"
    elif content.playbook:
        action = (
            f"<p>{_e(content.playbook)} <span class=note>(standard playbook: no action in the rules, "
            "not measured)</span></p>"
        )
    else:
        action = "<p>No action is attached to this segment in the rules (<code>on_enter</code>).</p>"
    scanned = content.scan_as_of
    as_of = "-" if scanned is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(scanned))
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime(content.generated))
    description = f"<p class=note>{_e(family.description)}</p>" if family.description else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Segment brief: {_e(segment.name)}</title><style>{STYLE}</style></head><body>
<h1>{_e(segment.name)} <span class=note>{_e(family.name)}</span></h1>{description}
<div class="kpis">{kpis}</div>
<h2>Trend</h2>{trend_svg(content.trend, content.days)}<p>{_e(_trend_text(content))}</p>
<h2>What distinguishes it</h2>{distinct}
<h2>Who is in it (the rules)</h2><table>{rules}</table>
<h2>Suggested action</h2>{action}
<p class=note>segflow brief, {made}. Sizes and revenue: the workers' aggregates; trend: the segment-changes
topic by event time; features: customer records as of {as_of} UTC (event time); lift: the outcomes topic.</p>
</body></html>"""


def find_chromium(explicit: str | None = None) -> str:
    """The Chromium executable to print with (``ValueError`` with the fix when there is none)."""
    if explicit:
        return explicit
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ValueError(
        "no Chromium to print the PDF with: install it (apt-get install chromium; "
        "deploy/local/setup.sh does) or give --chromium PATH"
    )


def print_pdf(page: Path, pdf: Path, chromium: str | None = None, timeout: float = 90.0) -> Path:
    """Print an HTML file to ``pdf`` with headless Chromium (a fresh profile, no network)."""
    executable = find_chromium(chromium)
    pdf = pdf.resolve()
    pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="segflow-chromium-") as profile:
        command = [
            executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf}",
            page.resolve().as_uri(),
        ]
        env = {**os.environ, "HOME": profile}
        done = subprocess.run(command, capture_output=True, timeout=timeout, env=env, check=False)
    if not pdf.is_file() or pdf.stat().st_size == 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ValueError(f"Chromium did not print {pdf} (exit {done.returncode}): {' | '.join(tail)}")
    return pdf
