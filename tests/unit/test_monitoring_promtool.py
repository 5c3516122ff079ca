"""promtool (Debian's ``prometheus`` package) accepts deploy/monitoring and the local stack's config.

``promtool check rules`` / ``check config`` validate syntax and PromQL; ``promtool test rules``
runs deploy/monitoring/alerts_test.yml, which feeds series to the alert rules and says which
alerts fire. deploy/local/setup.sh installs the package; CI (CI=true) fails without it, a
developer's machine skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_files import ALERTS, MONITORING

from engine.settings import load_settings
from engine.stack import prometheus as local_prometheus


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: deploy/local/setup.sh installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def run(promtool: str, *args: str | Path) -> str:
    done = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_alert_rules_check(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "check", "rules", ALERTS)


def test_alert_rules_fire_as_their_unit_tests_say(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "test", "rules", MONITORING / "alerts_test.yml")


def checkable_copy(name: str, directory: Path) -> Path:
    """``name`` beside a copy of alerts.yml, its token files (which the deployment mounts, and
    promtool wants to exist) pointed at a file in ``directory``."""
    config = yaml.safe_load((MONITORING / name).read_text())
    token = directory / "web-token"
    token.write_text("t" * 32 + "\n")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
    shutil.copy(ALERTS, directory / "alerts.yml")
    copy = directory / name
    copy.write_text(yaml.safe_dump(config, sort_keys=False))
    return copy


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-k8s.yml"])
def test_deployment_scrape_configs_check(promtool: str, name: str, tmp_path: Path) -> None:
    out = run(promtool, "check", "config", checkable_copy(name, tmp_path))
    assert "1 rule files found" in out  # alerts.yml, beside the config


def test_local_stack_config_checks(promtool: str, tmp_path: Path) -> None:
    settings = load_settings(read_profile=False, stack_dir=tmp_path, prometheus_port=39090)
    paths = local_prometheus.PrometheusPaths.of(settings)
    paths.home.mkdir(parents=True)
    paths.config.write_text(local_prometheus.render_config(settings))
    out = run(promtool, "check", "config", paths.config)
    assert "1 rule files found" in out


def test_local_stack_config_with_a_token_checks(promtool: str, tmp_path: Path) -> None:
    settings = load_settings(
        read_profile=False, stack_dir=tmp_path, prometheus_port=39090, web_token="k" * 24
    )
    paths = local_prometheus.PrometheusPaths.of(settings)
    paths.home.mkdir(parents=True)
    paths.config.write_text(local_prometheus.render_config(settings))
    local_prometheus.write_token(settings)
    assert "SUCCESS" in run(promtool, "check", "config", paths.config)
