"""The dashboard in real Chromium, on what a real worker made of a seeded stream.

Every number checked is worked out without dashboard code: segment sizes from the customers'
stored records and, separately, from the change events on the topic; the R x F cells from the
rules table (README, "The default rules") and those sizes; the outcome count from the outcomes
topic; readiness from the learner's report hash; lag from the group's committed offsets.
Screenshots go to a pytest tmp dir and to ``.artifacts/``.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from dashboard_stream import (
    Run,
    get_bytes,
    get_json,
    in_thread,
    keep_artifact,
)

from engine.app import load_rule_set
from features.client import connect
from models.snapshots import report_key

pytestmark = pytest.mark.integration


def _wait_caught_up(url: str, changes: int, outcomes: int, timeout: float = 60) -> dict[str, Any]:
    """The dashboard's summary once it has read every change and outcome of the run."""
    deadline = time.monotonic() + timeout
    while True:
        summary = get_json(f"{url}/api/summary")
        if summary["changes"] == changes and summary["outcomes"] == outcomes:
            return summary
        assert time.monotonic() < deadline, (summary["changes"], changes, summary["outcomes"], outcomes)
        time.sleep(0.5)


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(url)
    page.wait_for_function("document.body.dataset.charts !== undefined", timeout=30_000)
    return page, problems


CHART_STATE = """() => Array.from(document.querySelectorAll("div.chart")).map(div => ({
  id: div.id,
  traces: (div.data || []).length,
  rendered: div.querySelectorAll(".plot-container .main-svg").length,
  marks: div.querySelectorAll(".scatterlayer path.js-line, .barlayer .point path, .heatmaplayer image").length
}))"""


def _redis_report(run: Run) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        client = connect(run.settings.redis_url)
        try:
            raw = await client.hgetall(report_key(run.settings.key_prefix))
        finally:
            await client.aclose()
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    return in_thread(read())


def test_main_page_shows_the_runs_numbers_with_charts(
    dashboard_run: Run, dashboard_url: str, browser: Any, tmp_path: Path
) -> None:
    started = time.monotonic()
    from_records = dashboard_run.sizes()
    assert from_records == dashboard_run.sizes_from_changes(), "records and change events disagree"
    outcomes = len(dashboard_run.outcome.outcomes)
    assert outcomes, "the win-back on 'lapsing' measured no decision: no lift to show"
    changes = len(dashboard_run.outcome.changes)
    _wait_caught_up(dashboard_url, changes, outcomes)

    page, problems = _open(browser, dashboard_url + "/")
    shown = page.eval_on_selector_all(
        "td.customers",
        "cells => cells.map(c => [c.dataset.family, c.dataset.segment, Number(c.textContent)])",
    )
    rules = load_rule_set(dashboard_run.settings)
    expected = [
        [f.name, s.name, from_records.get(f.name, Counter())[s.name]]
        for f in rules.families
        for s in f.segments
    ]
    assert shown == expected

    grid = {
        (int(c[0]), int(c[1])): int(c[2])
        for c in page.eval_on_selector_all(
            "table.rfm-grid td", "cells => cells.map(c => [c.dataset.r, c.dataset.f, c.dataset.n])"
        )
    }
    rfm = from_records["rfm"]
    # 40 days: nobody's recency passes 180 days, so the table decides alone (README, default rules).
    assert sum(grid.values()) == sum(rfm.values())
    assert grid[(5, 1)] == rfm["New Customers"] and grid[(4, 1)] == rfm["Promising"]
    assert grid[(3, 3)] == rfm["Need Attention"]
    assert grid[(1, 5)] + grid[(2, 5)] == rfm["Can't Lose Them"]
    assert sum(grid[(r, f)] for r in (3, 4, 5) for f in (4, 5)) == rfm["Champions"] + rfm["Loyal Customers"]

    assert page.inner_text("#lag-total") == "0"
    assert page.inner_text("#lift-outcomes").startswith(f"{outcomes} outcomes")
    readiness = {name: r["text"] for name, r in _redis_report(dashboard_run)["readiness"].items()}
    rows = page.eval_on_selector_all(
        "table.models tr", "rows => rows.slice(1).map(r => [r.cells[0].textContent, r.cells[1].textContent])"
    )
    assert dict(rows) == readiness and any(t.startswith("warming up") for t in readiness.values())
    assert f"{changes} changes" in page.inner_text("body")

    charts = page.evaluate(CHART_STATE)
    families_with_changes = {f for f, c in from_records.items() if c}
    assert len(charts) >= 4 + 1 + len(families_with_changes) + 1 + 1 + 2, charts
    assert all(c["traces"] and c["rendered"] for c in charts), charts
    assert next(c for c in charts if c["id"] == "rfm-heat-map")["marks"] == 1
    assert sum(c["marks"] for c in charts) > len(charts), charts
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    keep_artifact(shot)
    assert shot.stat().st_size > 50_000
    assert problems == []
    page.close()
    print(
        f"main page test: {time.monotonic() - started:.1f}s after the stream ({dashboard_run.seconds:.1f}s)"
    )


def test_segment_page_lists_its_members_and_exports_them(
    dashboard_run: Run, dashboard_url: str, browser: Any, tmp_path: Path
) -> None:
    segment, size = dashboard_run.sizes()["rfm"].most_common(1)[0]
    members = dashboard_run.members("rfm", segment)
    states = dashboard_run.outcome.states
    ordered = sorted(members, key=lambda c: (-states[c].revenue_minor, c))  # type: ignore[union-attr]
    path = f"/segment/rfm/{quote(segment, safe='')}"

    page, problems = _open(browser, dashboard_url + path)
    assert page.inner_text("#members-count") == str(size)
    assert page.eval_on_selector_all("td.customer", "cells => cells.map(c => c.textContent)") == ordered[:50]
    assert page.locator("table.contrasts tr").count() > 10
    charts = page.evaluate(CHART_STATE)
    assert charts and charts[0]["id"] == "contrast-chart" and charts[0]["marks"] > 0, charts
    href = page.get_attribute("#csv-export", "href")
    shot = tmp_path / "segment.png"
    page.screenshot(path=str(shot), full_page=True)
    keep_artifact(shot)
    assert problems == []
    page.close()

    content_type, body = get_bytes(dashboard_url + str(href))
    assert content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert sorted(r["customer_id"] for r in rows) == sorted(members)
    assert {r["segment_rfm"] for r in rows} == {segment}
