"""The rules file names the models' label horizons (``labels:``): parsed, validated, in force,
and never changed by a hot reload (they define what a score predicts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.app import label_rules, model_config, pipeline_config, specs
from engine.rules.loader import RulesError, load_label_horizons, parse_rules
from engine.settings import load_settings
from models.labels import LabelRules

BODY = """\
version: "h-1"
{labels}families:
  - name: activity
    segments:
      - name: Active
        when: "frequency >= 1"
"""


def rules_file(tmp_path: Path, labels: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(BODY.format(labels=labels))
    return path


def test_the_labels_section_is_parsed_and_optional() -> None:
    text = BODY.format(labels="labels:\n  churn_days: 60\n  clv_days: 273\n")
    rules = parse_rules(text, "r.yaml", {"frequency"})
    assert dict(rules.labels) == {"churn_days": 60.0, "clv_days": 273.0}
    assert dict(parse_rules(BODY.format(labels=""), "r.yaml", {"frequency"}).labels) == {}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("labels:\n  churn_days: 0\n", "r.yaml:3: labels.churn_days must be a positive number of days"),
        ("labels:\n  churn_days: -5\n", "r.yaml:3: labels.churn_days must be a positive number of days"),
        ("labels:\n  churn_days: soon\n", "r.yaml:3: labels.churn_days must be a number"),
        ("labels:\n  churn_weeks: 4\n", "r.yaml:3: unknown key 'churn_weeks' in labels"),
        ("labels: 30\n", "r.yaml:2: labels must be a mapping"),
    ],
)
def test_bad_horizons_are_one_line_errors(labels: str, message: str) -> None:
    with pytest.raises(RulesError) as excinfo:
        parse_rules(BODY.format(labels=labels), "r.yaml", {"frequency"})
    assert str(excinfo.value).startswith(message)


def test_the_files_horizons_override_the_settings_everywhere(tmp_path: Path) -> None:
    path = rules_file(tmp_path, "labels:\n  churn_days: 60\n")
    assert load_label_horizons(path) == {"churn_days": 60.0}
    settings = load_settings(rules_file=path, churn_days=30.0, clv_days=120.0, propensity_days=14.0)
    assert label_rules(settings) == LabelRules(churn_days=60.0, clv_days=120.0, propensity_days=14.0)
    churn = next(spec for spec in specs(settings) if spec.name == "churn")
    assert churn.horizon_days == 60.0 and "60 days" in churn.description
    assert model_config(settings).rules.churn_days == 60.0
    assert pipeline_config(settings).step.labels.churn_days == 60.0
    without = load_settings(rules_file=rules_file(tmp_path, ""), churn_days=45.0)
    assert label_rules(without).churn_days == 45.0


def test_a_hot_reload_never_changes_a_horizon(tmp_path: Path) -> None:
    from engine.app import reloadable_rules

    path = rules_file(tmp_path, "labels:\n  churn_days: 60\n")
    load = reloadable_rules(load_settings(rules_file=path, churn_days=30.0), {"frequency"})
    assert load(path).labels == {"churn_days": 60.0}
    path.write_text(BODY.format(labels="labels:\n  churn_days: 60\n  clv_days: 90\n"))  # 90: the default
    assert load(path).version == "h-1"
    for labels in ("labels:\n  churn_days: 90\n", ""):  # another horizon, or back to the setting (30)
        path.write_text(BODY.format(labels=labels))
        with pytest.raises(RulesError, match="label horizons changed"):
            load(path)
