"""Profiles: files of SEGFLOW_* lines that load_settings and the CLI read (engine.profiles)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.profiles import DEMO_MARK, profile_lines, write_profile, written_by_demo
from engine.settings import SettingsError, load_settings, namespaced
from engine.worker_process import settings_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SEGFLOW_* variable of the shell, and a fresh working directory without a profile."""
    for name in list(os.environ):
        if name.upper().startswith("SEGFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_local_profile_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / ".segflow.env", "# a comment", "SEGFLOW_APP_ID=from-file", "SEGFLOW_WEB_PORT=7000")
    assert (load_settings().app_id, load_settings().web_port) == ("from-file", 7000)
    monkeypatch.setenv("SEGFLOW_WEB_PORT", "7001")
    assert (load_settings().app_id, load_settings().web_port) == ("from-file", 7001)


def test_named_profile_beats_the_local_one_and_none_reads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / ".segflow.env", "SEGFLOW_APP_ID=local")
    named = write(tmp_path / "other.env", "SEGFLOW_APP_ID=named")
    monkeypatch.setenv("SEGFLOW_PROFILE", str(named))
    assert load_settings().app_id == "named"
    assert load_settings(write(tmp_path / "explicit.env", "SEGFLOW_APP_ID=explicit")).app_id == "explicit"
    for off in ("none", "", "NONE"):
        monkeypatch.setenv("SEGFLOW_PROFILE", off)
        assert load_settings().app_id == "segflow"
    monkeypatch.delenv("SEGFLOW_PROFILE")
    assert load_settings(read_profile=False).app_id == "segflow"


def test_missing_or_invalid_profile_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGFLOW_PROFILE", str(tmp_path / "nope.env"))
    with pytest.raises(SettingsError, match=r"profile .*nope\.env not found"):
        load_settings()
    monkeypatch.setenv("SEGFLOW_PROFILE", str(write(tmp_path / "bad.env", "SEGFLOW_WEB_PORT=lots")))
    with pytest.raises(SettingsError, match="SEGFLOW_WEB_PORT"):
        load_settings()


def test_written_profile_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    base = load_settings(read_profile=False)
    run = namespaced(base, "segflow-demo-1", "demo1").model_copy(
        update={"group_attribute": "channel", "rules_file": tmp_path / "my rules #1.yaml"}
    )
    path = tmp_path / ".segflow.env"
    write_profile(run, path, "the demo run 1")
    assert written_by_demo(path)
    text = path.read_text()
    assert text.startswith(DEMO_MARK)
    assert "SEGFLOW_KAFKA_BOOTSTRAP" not in text  # defaults are left out
    assert load_settings() == run
    assert set(profile_lines(run)) <= set(text.splitlines())


def test_a_persons_profile_is_not_the_demos(tmp_path: Path) -> None:
    assert not written_by_demo(write(tmp_path / "mine.env", "SEGFLOW_APP_ID=mine"))
    assert not written_by_demo(tmp_path / "absent.env")


def test_child_processes_read_no_profile() -> None:
    assert settings_env(load_settings())["SEGFLOW_PROFILE"] == "none"


def test_cli_profile_option_and_config_show_the_profile(tmp_path: Path) -> None:
    runner = CliRunner()
    write(tmp_path / ".segflow.env", "SEGFLOW_APP_ID=local")
    shown = runner.invoke(cli, ["config"], standalone_mode=False)
    assert shown.exit_code == 0, shown.output
    assert f"# profile: {tmp_path / '.segflow.env'}" in shown.output
    assert "SEGFLOW_APP_ID=local" in shown.output
    other = write(tmp_path / "other.env", "SEGFLOW_APP_ID=other")
    shown = runner.invoke(cli, ["--profile", str(other), "config"], standalone_mode=False)
    assert shown.exit_code == 0, shown.output
    assert "SEGFLOW_APP_ID=other" in shown.output
    missing = runner.invoke(cli, ["--profile", str(tmp_path / "nope.env"), "config"])
    assert missing.exit_code != 0
