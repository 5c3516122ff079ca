"""The dashboard's pages, scan and brief on hand-made inputs (no servers).

Expected numbers are worked out by hand from the inputs below.
"""

from __future__ import annotations

import json
import re

from engine.activation.outcomes import Outcome
from engine.app import load_rule_set
from engine.dashboard.brief import ActionContext, build_brief, render_brief, trend_svg
from engine.dashboard.data import DashboardData, Lag, ModelQuality, VersionQuality, lift_of
from engine.dashboard.page import render_page
from engine.dashboard.population import PopulationScan, rfm_family
from engine.dashboard.segment_page import SegmentView, render_segment_page, rules_rows
from engine.dashboard.timeline import DAY_MS, ChangeLog
from engine.settings import load_settings

RULES = load_rule_set(load_settings())
FEATURES = ("recency_days", "frequency", "monetary")


def scan() -> PopulationScan:
    """Six customers: four in rfm (two Champions), one unranked, one never placed."""
    made = PopulationScan(as_of=1.0e9, scanned_wall=0.0, feature_names=FEATURES, rfm="rfm")
    for family in ("rfm", "lifecycle"):
        made.segments[family], made.since[family] = [], []
    rows = [
        ("c1", 500.0, {"rfm": ("Champions", 1.0), "lifecycle": ("active", 1.0)}, (5, 5), [1.0, 9.0, 500.0]),
        ("c2", 300.0, {"rfm": ("Champions", 2.0)}, (5, 4), [2.0, 7.0, 300.0]),
        ("c3", 300.0, {"rfm": ("Lost", 3.0)}, (1, 1), [90.0, 1.0, 300.0]),
        ("c0", 20.0, {"rfm": ("Lost", 4.0)}, (1, 1), [80.0, 1.0, 20.0]),
        ("c4", 0.0, {"lifecycle": ("new", 5.0)}, (0, 0), [float("nan"), 0.0, 0.0]),
        ("c5", 0.0, {}, (0, 0), [float("nan"), 0.0, 0.0]),
    ]
    for cid, revenue, members, rf, values in rows:
        made.add(cid, revenue, members, rf, values)
    return made


def test_the_scan_gives_the_grid_members_and_contrasts() -> None:
    grid = scan().heat_map()
    assert grid is not None and grid.ranked == 4 and grid.unranked == 2
    assert grid.counts[4][4] == 1 and grid.counts[4][3] == 1 and grid.counts[0][0] == 2
    assert grid.revenue[0][0] == 320.0 and grid.top_segment[0][0] == "Lost" and grid.top_segment[2][2] is None
    assert scan().members("rfm", "Lost") == [2, 3]  # revenue first, then id: c3 (300), c0 (20)
    assert scan().members("rfm", "Champions") == [0, 1]
    assert scan().sizes() == {"rfm": {"Champions": 2, "Lost": 2}, "lifecycle": {"active": 1, "new": 1}}
    contrasts = {c.name: c for c in scan().contrasts("rfm", "Champions")}
    # frequency: members 9, 7 -> median 8; everyone 9, 7, 1, 1, 0, 0 -> median 1; IQR 0.25..5.5 = 5.25
    assert contrasts["frequency"].segment_median == 8.0 and contrasts["frequency"].population_median == 1.0
    assert abs(contrasts["frequency"].effect - 7 / 5.25) < 1e-9
    # recency: 4 of 6 defined (1, 2, 90, 80 -> median 41); members 1.5
    assert contrasts["recency_days"].population_median == 41.0 and contrasts["recency_days"].effect < 0
    assert scan().value(4, "recency_days") is None and scan().value(0, "monetary") == 500.0
    assert rfm_family(RULES) == "rfm"


def _change(cid: str, family: str, source: str | None, target: str, day: int) -> dict[str, object]:
    return {
        "change_id": f"{cid}{family}{day}",
        "customer_id": cid,
        "family": family,
        "from": source,
        "to": target,
        "event_ts": (20_000 + day) * DAY_MS,
    }


def _log() -> ChangeLog:
    log = ChangeLog()
    for record in (
        _change("c1", "rfm", None, "Champions", 0),
        _change("c2", "rfm", None, "Can't Lose Them", 1),
        _change("c2", "rfm", "Can't Lose Them", "Champions", 3),
        _change("c1", "lifecycle", None, "lapsing", 2),
    ):
        log.apply_change(record)
    return log


def _outcome(oid: str, group: str, converted: bool, variant: str | None = "plain") -> Outcome:
    return Outcome(
        oid, oid, "churn_winback_email", "email", group, "winback_offer", variant, 0.45, "ab",
        "lifecycle", "lapsing", (0, 1), converted, 10.0 if converted else 0.0, 1, "purchase",
    )  # fmt: skip


def _data(log: ChangeLog) -> DashboardData:
    warming = ModelQuality("regression", 3, False, "3 labels learned < 200", {"n": 3, "mae": None}, {"n": 3})
    ready = ModelQuality("classification", 250, True, None, {"roc_auc": 0.8}, {"roc_auc": 0.82})
    history = [
        VersionQuality(20_000, 20_000 * 86_400.0, {"clv": warming, "churn": ready}),
        VersionQuality(20_001, 20_001 * 86_400.0, {"clv": warming, "churn": ready}),
    ]
    sizes = {
        "rfm": {
            "Champions": {"customers": 2, "revenue": 800.0},
            "Can't Lose Them": {"customers": 0, "revenue": 0.0},
        }
    }
    learner = {"readiness": {"clv": {"text": "warming up: 3 labels learned < 200"}}, "reports": {"clv": {}}}
    return DashboardData(
        "v1", sizes, None, scan().heat_map(), "scan of 6", log, Lag("g", {0: (10, 7), 1: (5, None)}),
        lift_of(load_settings(), log), 20_001, learner, history, 200, {},
    )  # fmt: skip


def test_the_main_page_shows_sizes_grid_lag_readiness_and_valid_figures() -> None:
    log = _log()
    for n in range(40):
        log.apply_outcome(_outcome(f"t{n}", "treated", n % 4 == 0).to_wire())
        log.apply_outcome(_outcome(f"k{n}", "control", n % 10 == 0, None).to_wire())
    page = render_page(_data(log))
    assert '<td class="n customers" data-family="rfm" data-segment="Champions">2</td>' in page
    assert 'href="/segment/rfm/Can%27t%20Lose%20Them"' in page and "Can&#x27;t Lose Them" in page
    assert 'data-r="5" data-f="5" data-n="1"' in page and 'data-r="1" data-f="1" data-n="2"' in page
    assert '<b id="lag-total">8</b>' in page  # (10 - 7) + (5 - 0)
    assert '<td class="readiness">warming up: 3 labels learned &lt; 200</td>' in page
    assert '<td class="readiness">ready</td>' in page
    assert "80 outcomes (0 repeated ids ignored)" in page
    figures = re.findall(r'<script type="application/json" id="(fig-\d+)">(.*?)</script>', page)
    assert len(figures) == page.count('<div class="chart"') >= 6
    for _, text in figures:
        figure = json.loads(text)
        assert figure["data"] and "layout" in figure
    assert '<script src="/static/plotly.min.js"></script>' in page and "cdn" not in page.lower()


def test_the_segment_page_pages_members_and_states_its_rules() -> None:
    family = RULES.family("rfm")
    assert family is not None
    segment = family.segment("Lost")
    assert segment is not None
    made = scan()
    view = SegmentView(family, segment, made, made.members("rfm", "Lost"), 2, 320.0, 1, RULES.params)
    page = render_segment_page(view)
    assert re.findall(r'<td class="customer">(\w+)</td>', page) == ["c3", "c0"]
    assert '<b id="members-count">2</b>' in page and 'href="/segment/rfm/Lost.csv"' in page
    assert ("params", "lost_days = 365") in rules_rows(family, segment, RULES.params)


def test_the_brief_has_size_share_trend_rules_and_measured_lift() -> None:
    log = _log()
    for n in range(30):
        log.apply_outcome(_outcome(f"t{n}", "treated", n % 2 == 0).to_wire())
        log.apply_outcome(_outcome(f"k{n}", "control", n % 10 == 0, None).to_wire())
    lifecycle = RULES.family("lifecycle")
    assert lifecycle is not None
    lapsing = lifecycle.segment("lapsing")
    assert lapsing is not None
    settings = load_settings()
    actions = (RULES.activation.actions["churn_winback_email"],)
    specs = {a.experiment.name: a.experiment for a in RULES.activation.actions.values() if a.experiment}
    context = ActionContext(actions, specs, frozenset())
    sizes = {
        "lifecycle": {
            "active": {"customers": 3, "revenue": 90.0},
            "lapsing": {"customers": 1, "revenue": 10.0},
        }
    }
    content = build_brief(lifecycle, lapsing, sizes, log, scan(), context, settings.currency, RULES.params)
    html = render_brief(content)
    assert '<b id="brief-customers">1</b>25.0% of lifecycle' in html and "10.0% of the family" in html
    assert content.trend == [0, 0, 1, 1]
    # treated 15/30 = 50%, control 3/30 = 10%: +40 pp, an interval above 0
    assert "+40.00 pp" in html and "measured gain" in html and "churned_days = 30" in html
    assert "<script" not in html and "<svg" in html
    no_action = lifecycle.segment("active")
    assert no_action is not None
    plain = build_brief(lifecycle, no_action, sizes, log, None, ActionContext((), {}, frozenset()), "EUR")
    assert "(standard playbook: no action in the rules, not measured)" in render_brief(plain)
    assert "no segment change yet" in trend_svg([], [])
