"""The local Prometheus's generated config and target files (engine.stack.prometheus), no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from engine.settings import Settings, load_settings
from engine.stack import manager
from engine.stack import prometheus as local_prometheus


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(read_profile=False, stack_dir=tmp_path / "stack", prometheus_port=39190)


def test_config_has_the_deployments_jobs_and_alert_rules(settings: Settings) -> None:
    config = yaml.safe_load(local_prometheus.render_config(settings))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"segflow-worker", "segflow-deliver"}
    targets = local_prometheus.PrometheusPaths.of(settings).targets
    for name, job in jobs.items():
        assert job["metrics_path"] == "/segflow/metrics"
        assert job["file_sd_configs"][0]["files"] == [str(targets / f"{name}-*.json")]
    assert config["rule_files"] == [str(local_prometheus.ALERTS)]
    assert local_prometheus.ALERTS.is_file()


def test_targets_are_files_prometheus_discovers(settings: Settings) -> None:
    path = local_prometheus.register_target(settings, "segflow-worker", "w1", 41234)
    assert path.name == "segflow-worker-w1.json"
    expected = [{"targets": ["127.0.0.1:41234"], "labels": {"segflow_target": "w1"}}]
    assert json.loads(path.read_text()) == expected
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    local_prometheus.unregister_target(settings, "segflow-worker", "w1")
    local_prometheus.unregister_target(settings, "segflow-worker", "w1")  # fine twice
    assert not path.exists()
    with pytest.raises(ValueError, match="unknown job"):
        local_prometheus.register_target(settings, "segflow-nope", "x", 1)


def test_not_running_is_not_listed_and_down_is_quiet(settings: Settings) -> None:
    assert not local_prometheus.running(settings)
    assert local_prometheus.status(settings).detail == "not running"
    assert local_prometheus.down(settings) is None
    assert "prometheus" not in [server.name for server in manager.status(settings).servers]


def test_with_a_page_token_the_jobs_read_it_from_a_private_file(tmp_path: Path) -> None:
    token = "a-page-token-of-24-chars"
    settings = load_settings(read_profile=False, stack_dir=tmp_path / "stack", web_token=token)
    paths = local_prometheus.PrometheusPaths.of(settings)
    text = local_prometheus.render_config(settings)
    assert token not in text
    for job in yaml.safe_load(text)["scrape_configs"]:
        assert job["authorization"] == {"type": "Bearer", "credentials_file": str(paths.token)}
    local_prometheus.write_token(settings)
    assert paths.token.read_text() == token + "\n"
    assert paths.token.stat().st_mode & 0o777 == 0o600
    untokened = settings.model_copy(update={"web_token": SecretStr("")})
    assert all(
        "authorization" not in job
        for job in yaml.safe_load(local_prometheus.render_config(untokened))["scrape_configs"]
    )
    local_prometheus.write_token(untokened)
    assert not paths.token.exists()
