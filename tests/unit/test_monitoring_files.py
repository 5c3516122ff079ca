"""deploy/monitoring: alert rules and the Grafana dashboard name only documented metrics.

The documented list is engine/ops/metric_names.py; a name outside it (a typo, a renamed
counter) fails here rather than as an empty panel or an alert that can never fire.
"""

from __future__ import annotations

import yaml
from deploy_files import (
    COMPOSE_DIR,
    DATASOURCES,
    MONITORING,
    alert_rules,
    compose,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
)

from engine.ops.metric_names import BY_NAME, EXTERNAL, family_of, known, referenced_series
from engine.stack import prometheus as local_prometheus


def unknown_in(exprs: list[str]) -> dict[str, set[str]]:
    return {expr: bad for expr in exprs if (bad := {n for n in referenced_series(expr) if not known(n)})}


def test_alert_rules_name_documented_metrics() -> None:
    rules = alert_rules()
    assert all(
        "alert" in rule and rule["labels"]["severity"] in ("critical", "warning", "info") for rule in rules
    )
    assert unknown_in([rule["expr"] for rule in rules]) == {}
    used = {n for rule in rules for n in referenced_series(rule["expr"])}
    wanted = {
        "segflow_consumer_lag",  # lag growing
        "segflow_events_dead_lettered_total",  # DLQ rate
        "segflow_model_drift_detections",  # drift
        "up",  # worker down
        "probe_success",  # readiness (blackbox)
    }
    assert wanted <= used


def test_alert_jobs_are_the_scraped_jobs() -> None:
    jobs = {
        job["job_name"]
        for job in yaml.safe_load((MONITORING / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert set(local_prometheus.JOBS) <= jobs
    for rule in alert_rules():
        for job in ("segflow-worker", "segflow-deliver", "segflow-ready"):
            if f'job="{job}"' in rule["expr"]:
                assert job in jobs


def test_dashboard_names_documented_metrics_and_covers_the_brief() -> None:
    exprs = dashboard_exprs()
    assert unknown_in(exprs) == {}
    families = {family_of(n) for expr in exprs for n in referenced_series(expr)} - {None}
    for needed in (
        "segflow_events_total",  # throughput
        "segflow_events_applied_total",
        "segflow_consumer_lag",  # lag
        "segflow_dead_letters_total",  # DLQ
        "segflow_batch_seconds",  # batch latency quantiles
        "segflow_segment_size",  # segment sizes
        "segflow_model_metric",  # model quality
        "segflow_lift_absolute",  # lift
    ):
        assert needed in families, needed
    assert any("histogram_quantile(0.99" in e and "segflow_batch_seconds_bucket" in e for e in exprs)
    histograms = {n for n, m in BY_NAME.items() if m.kind == "histogram"}
    for expr in exprs:  # a histogram is read through its buckets, sum or count
        assert not referenced_series(expr) & histograms, expr


def test_dashboard_is_valid_grafana_json_on_the_provisioned_datasource() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])


def test_compose_mounts_the_monitoring_files_where_their_configs_expect_them() -> None:
    services = compose()["services"]
    prom_mounts = dict(m.split(":")[:2] for m in services["prometheus"]["volumes"])
    assert (
        COMPOSE_DIR / next(k for k, v in prom_mounts.items() if v == "/etc/prometheus")
    ).resolve() == MONITORING
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana = dict(m.split(":")[:2] for m in services["grafana"]["volumes"])
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/segflow.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert (COMPOSE_DIR / next(k for k, v in grafana.items() if v == dashboards_path)).resolve() == (
        MONITORING / "grafana" / "dashboards"
    )
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (
        home.startswith(dashboards_path)
        and (MONITORING / "grafana/dashboards" / home.rsplit("/", 1)[1]).is_file()
    )


def test_external_names_are_documented() -> None:
    assert {"up", "probe_success"} <= set(EXTERNAL)
