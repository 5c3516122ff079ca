"""Plotly figures (plain JSON-ready dicts) for the dashboard; plotly.js draws them in the browser.

plotly.js is the one the ``plotly`` wheel ships (``plotly.offline.get_plotlyjs()``), served by the
dashboard itself (``/static/plotly.min.js``): the page needs no network beyond the dashboard.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

from engine.activation.lift_table import ALL_SEGMENTS, LiftTable
from engine.dashboard.data import ModelQuality, VersionQuality
from engine.dashboard.population import QUINTILES, HeatMap

Figure = dict[str, Any]
PALETTE = ("#3b6ea5", "#e08a2e", "#4a9a5b", "#c0504d", "#8064a2", "#4bacc6", "#9b8b2e", "#d36fa4")
_MARGIN = {"l": 60, "r": 20, "t": 36, "b": 48}


@cache
def plotly_js() -> str:
    """plotly.js (minified) from the installed ``plotly`` wheel."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def day_text(day: int) -> str:
    """A UTC day index as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


def _layout(title: str, height: int = 300, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "height": height,
        "margin": _MARGIN,
        "legend": {"font": {"size": 10}},
        "font": {"family": "system-ui, sans-serif", "size": 11},
        **extra,
    }


def share_figure(family: str, segments: dict[str, dict[str, float]]) -> Figure:
    """Per segment of a family: its share of the family's customers and of its revenue (%)."""
    names = list(segments)
    customers = sum(row["customers"] for row in segments.values()) or 1
    revenue = sum(row["revenue"] for row in segments.values()) or 1
    return {
        "data": [
            {
                "type": "bar",
                "name": "customers %",
                "x": names,
                "y": [round(100 * segments[n]["customers"] / customers, 2) for n in names],
                "marker": {"color": PALETTE[0]},
            },
            {
                "type": "bar",
                "name": "revenue %",
                "x": names,
                "y": [round(100 * segments[n]["revenue"] / revenue, 2) for n in names],
                "marker": {"color": PALETTE[1]},
            },
        ],
        "layout": _layout(family, barmode="group", yaxis={"title": {"text": "% of family"}}),
    }


def heat_map_figure(grid: HeatMap, currency: str) -> Figure:
    """The R x F grid: colour by customers, each cell's count, revenue and commonest segment."""
    text = []
    for r in range(QUINTILES):
        row = []
        for f in range(QUINTILES):
            top = grid.top_segment[r][f]
            row.append(
                f"{grid.counts[r][f]}<br>{grid.revenue[r][f]:,.0f} {currency}" + (f"<br>{top}" if top else "")
            )
        text.append(row)
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [f"F={f}" for f in range(1, QUINTILES + 1)],
                "y": [f"R={r}" for r in range(1, QUINTILES + 1)],
                "z": grid.counts,
                "text": text,
                "texttemplate": "%{text}",
                "hovertemplate": "%{y} %{x}<br>%{text}<extra></extra>",
                "colorscale": [[0.0, "#f2f6fb"], [0.5, "#8fb3d9"], [1.0, "#1f4e85"]],
                "colorbar": {"title": {"text": "customers"}},
            }
        ],
        "layout": _layout(f"{grid.family}: R x F (customers, revenue)", height=420),
    }


def over_time_figure(family: str, days: Sequence[int], series: dict[str, list[int]]) -> Figure:
    """Each segment's size at the end of every day (event time)."""
    dates = [day_text(d) for d in days]
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": segment,
            "x": dates,
            "y": sizes,
            "line": {"color": PALETTE[i % len(PALETTE)], "width": 2},
        }
        for i, (segment, sizes) in enumerate(series.items())
    ]
    layout = _layout(f"{family}: customers per segment by day", yaxis={"rangemode": "tozero"})
    return {"data": data, "layout": layout}


def transitions_figure(rows: Sequence[tuple[tuple[str, str, str], int]]) -> Figure:
    """The most frequent moves, as horizontal bars (most frequent on top)."""
    ordered = list(reversed(rows))
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [n for _, n in ordered],
                "y": [f"{family}: {a} → {b}" for (family, a, b), _ in ordered],
                "marker": {"color": PALETTE[2]},
            }
        ],
        "layout": _layout(
            "top transitions", height=max(260, 24 * len(rows) + 80), margin={**_MARGIN, "l": 320}
        ),
    }


def lift_figure(table: LiftTable) -> Figure:
    """Absolute lift (percentage points) of each experiment arm over all segments, with its 95% interval."""
    rows = [r for r in table.rows if r.segment == ALL_SEGMENTS and r.lift.absolute_lift is not None]
    names = [f"{r.comparison}: {r.arm}" for r in rows]
    values = [100 * (r.lift.absolute_lift or 0.0) for r in rows]
    upper = [100 * (r.lift.interval.upper or 0.0) - v for r, v in zip(rows, values, strict=True)]
    lower = [v - 100 * (r.lift.interval.lower or 0.0) for r, v in zip(rows, values, strict=True)]
    return {
        "data": [
            {
                "type": "bar",
                "x": names,
                "y": values,
                "error_y": {"type": "data", "symmetric": False, "array": upper, "arrayminus": lower},
                "marker": {"color": PALETTE[4]},
            }
        ],
        "layout": _layout("lift vs control (pp, 95% Newcombe interval)", yaxis={"title": {"text": "pp"}}),
    }


def quality_figures(history: Sequence[VersionQuality], min_labels: int) -> list[Figure]:
    """Quality per sealed version, holdout (markers; hollow: warming up) and prequential (dotted),
    and the labels each model learned against the readiness threshold."""
    if not history:
        return []
    names = sorted({n for v in history for n in v.models})
    dates = [time.strftime("%Y-%m-%d", time.gmtime(v.period_start)) for v in history]
    figures = []
    for task, metric, label in (("classification", "roc_auc", "ROC AUC"), ("regression", "mae", "MAE")):
        data: list[dict[str, Any]] = []
        for i, name in enumerate(names):
            models = [v.models.get(name) for v in history]
            if not any(m is not None and m.task == task for m in models):
                continue
            color = PALETTE[i % len(PALETTE)]
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": name,
                    "legendgroup": name,
                    "x": dates,
                    "y": [None if m is None else m.holdout.get(metric) for m in models],
                    "text": [_readiness(m) for m in models],
                    "hovertemplate": "%{x} holdout: %{y}<br>%{text}<extra>" + name + "</extra>",
                    "line": {"color": color, "width": 1.5},
                    "marker": {
                        "color": color,
                        "size": 6,
                        "symbol": ["circle" if m is not None and m.ready else "circle-open" for m in models],
                    },
                }
            )
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{name} (prequential)",
                    "legendgroup": name,
                    "showlegend": False,
                    "x": dates,
                    "y": [None if m is None else m.prequential.get(metric) for m in models],
                    "hovertemplate": "%{x} prequential: %{y}<extra>" + name + "</extra>",
                    "line": {"color": color, "width": 1, "dash": "dot"},
                }
            )
        if data:
            title = f"{label} per sealed version: holdout (hollow: warming up), dotted: prequential"
            figures.append({"data": data, "layout": _layout(title)})
    learned = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": name,
            "x": dates,
            "y": [None if v.models.get(name) is None else v.models[name].labels_learned for v in history],
            "line": {"color": PALETTE[i % len(PALETTE)], "width": 1.5},
        }
        for i, name in enumerate(names)
    ]
    shapes = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": min_labels,
            "y1": min_labels,
            "line": {"dash": "dot", "color": "#888"},
        }
    ]
    layout = _layout(f"labels learned (dotted: {min_labels} needed)", shapes=shapes)
    figures.append({"data": learned, "layout": layout})
    return figures


def _readiness(model: ModelQuality | None) -> str:
    if model is None:
        return ""
    return "ready" if model.ready else f"warming up: {model.reason}"


def figure_json(figure: Figure) -> str:
    """A figure as JSON that is safe inside a ``<script type="application/json">`` element."""
    return json.dumps(figure, separators=(",", ":")).replace("</", "<\\/")
