"""Loading YAML rule sets: the model built, and one `FILE:LINE: problem` per kind of mistake."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.rules_cmds import rules as rules_group
from engine.rules.loader import DEFAULT_RULES_PATH, RulesError, load_rules, parse_rules
from engine.rules.variables import known_variables
from engine.settings import load_settings
from features.catalogue import catalogue
from features.config import FeatureConfig
from models.registry import model_specs

FEATURES = [spec.name for spec in catalogue(FeatureConfig())] + ["days_since_last_activity"]
KNOWN = known_variables(FEATURES, [spec.name for spec in model_specs(FeatureConfig().products)])
REPO = Path(__file__).resolve().parents[2]

VALID = """\
version: "test-1"
params:
  threshold: 0.7
  band: 0.05
families:
  - name: churn_risk
    description: "churn"
    key_features: [recency_days, frequency]
    segments:
      - name: Likely to Churn
        enter: "score_churn >= threshold"
        exit: "score_churn < threshold - band"
        min_dwell_days: 2
        label: "At risk"
        labels:
          - when: "key_feature_adoption < 0.5"
            text: "At risk, low adoption"
      - name: Fine
        when: "score_churn < threshold"
"""


def parse(text: str) -> object:
    return parse_rules(textwrap.dedent(text), "rules.yaml", KNOWN)


def error_of(text: str) -> str:
    with pytest.raises(RulesError) as excinfo:
        parse(text)
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_valid_rules_build_the_model() -> None:
    rule_set = parse(VALID)
    assert rule_set.version == "test-1"
    assert rule_set.source == "rules.yaml"
    assert rule_set.params == {"threshold": 0.7, "band": 0.05}
    assert rule_set.fingerprint == hashlib.sha256(VALID.encode()).hexdigest()[:16]
    (family,) = rule_set.families
    assert (family.name, family.description, family.key_features) == (
        "churn_risk",
        "churn",
        ("recency_days", "frequency"),
    )
    churn, fine = family.segments
    assert (churn.name, churn.priority, fine.priority) == ("Likely to Churn", 0, 1)
    assert churn.min_dwell_seconds == 2 * 86_400
    assert (churn.label, fine.label, fine.min_dwell_seconds, fine.exit) == ("At risk", "Fine", 0.0, None)
    assert churn.exit is not None and churn.exit.evaluate({"score_churn": 0.64}) is True
    assert fine.exit_condition.evaluate({"score_churn": 0.9}) is True  # default exit: not enter
    assert churn.label_for({"key_feature_adoption": 0.2}) == "At risk, low adoption"
    assert churn.label_for({"key_feature_adoption": 0.9}) == "At risk"
    assert family.segment("Fine") is fine and family.segment("Gone") is None
    assert rule_set.family("churn_risk") is family and rule_set.family("x") is None


def test_load_rules_from_a_file_fingerprints_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(VALID)
    rule_set = load_rules(path, KNOWN)
    assert rule_set.source == str(path)
    assert rule_set.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_the_shipped_default_rules_load() -> None:
    rule_set = load_rules(DEFAULT_RULES_PATH, KNOWN)
    assert [f.name for f in rule_set.families] == ["rfm", "lifecycle", "churn_risk", "next_best_action"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML syntax
        ('version: "x"\nfamilies: [\n', "rules.yaml:3: invalid YAML: expected the node content"),
        ('version: "x"\nfamilies: a: b\n', "rules.yaml:2: invalid YAML: mapping values are not allowed here"),
        ('version: "x"\n  families: 1\n', "rules.yaml:2: invalid YAML: expected <block end>"),
        ("", "rules.yaml:1: empty rules file"),
        # duplicate YAML keys
        (
            'version: "x"\nversion: "y"\nfamilies: []\n',
            "rules.yaml:2: duplicate key 'version' in the rules file",
        ),
        # wrong types
        ("version: 2026\nfamilies: []\n", "rules.yaml:1: version must be a string (quote it)"),
        ("- a\n- b\n", "rules.yaml:1: the rules file must be a mapping"),
        ('version: "x"\nfamilies: {a: 1}\n', "rules.yaml:2: families must be a list"),
        ('version: "x"\nfamilies: []\n', "rules.yaml:2: families must not be empty"),
        # missing and unknown keys
        ('version: "x"\n', "rules.yaml:1: missing key 'families' in the rules file"),
        (
            'version: "x"\nfamilys: []\nfamilies: []\n',
            "rules.yaml:2: unknown key 'familys' in the rules file",
        ),
    ],
)
def test_top_level_errors(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def family_doc(segments: str, extra: str = "", params: str = "") -> str:
    """A one-family document: ``extra`` family lines start at line 4, the segments at line 5 (one
    line later per line of ``params``)."""
    head = 'version: "x"\n' + (f"params:\n{params}" if params else "")
    return head + f"families:\n  - name: fam\n{extra}    segments:\n" + textwrap.indent(segments, "      ")


@pytest.mark.parametrize(
    ("segments", "line", "problem"),
    [
        (
            "- name: A\n  when: 'recncy_days > 30'\n",
            6,
            "when: unknown name 'recncy_days'; did you mean 'recency_days'?",
        ),
        (
            "- name: A\n  when: 'frequency > 1'\n- name: B\n  when: 'a.b > 1'\n",
            8,
            "when: attribute access is not allowed",
        ),
        (
            "- name: A\n  enter: 'frequency > 1'\n  exit: 'frequency ** 2 < 1'\n",
            7,
            "exit: operator '**' is not allowed",
        ),
        ("- name: A\n  when: 'frequency > 1'\n  whn: 'x'\n", 7, "unknown key 'whn' in a segment"),
        (
            "- name: A\n  when: 'frequency > 1'\n- name: A\n  when: 'frequency > 2'\n",
            7,
            "duplicate segment name 'A'",
        ),
        ("- name: A\n  when: 'frequency > 1'\n  min_dwell_days: two\n", 7, "min_dwell_days must be a number"),
        (
            "- name: A\n  when: 'frequency > 1'\n  min_dwell_days: -1\n",
            7,
            "min_dwell_days must not be negative",
        ),
        (
            "- name: A\n  when: 'frequency > 1'\n  min_dwell_days: true\n",
            7,
            "min_dwell_days must be a number",
        ),
        (
            "- name: A\n  when: 'frequency > 1'\n  min_dwell_days: 1" + "0" * 400 + "\n",
            7,
            "min_dwell_days must be a finite number",
        ),
        ("- name: A\n  when: 'frequency > 1" + "0" * 400 + "'\n", 6, "when: number out of range ('1000"),
        (
            "- name: A\n  when: 'frequency in (1, 2000000000 * 1" + "0" * 300 + ")'\n",
            6,
            "when: number out of",
        ),
        ("- name: A\n", 5, "segment 'A' needs when (or enter and exit)"),
        ("- when: 'frequency > 1'\n", 5, "missing key 'name' in a segment"),
        (
            "- name: A\n  when: 'frequency > 1'\n  enter: 'frequency > 1'\n",
            7,
            "segment 'A': give either when or enter, not both",
        ),
        (
            "- name: A\n  when: 'frequency > 1'\n  exit: 'frequency < 1'\n",
            7,
            "segment 'A': exit goes with enter, not with when",
        ),
        ("- name: A\n  when: 12\n", 6, "when must be a string"),
        ("- name: A\n  when: ''\n", 6, "when must not be empty"),
        (
            "- name: A\n  when: 'frequency > 1'\n  labels:\n    - when: 'frequency > 2'\n",
            8,
            "missing key 'text'",
        ),
        ("- name: A\n  when: 'frequency > 1'\n  labels: x\n", 7, "labels must be a list"),
        ("- name: A\n  when: 'frequency >'\n", 6, "when: invalid syntax"),
    ],
)
def test_segment_errors_point_at_the_offending_line(segments: str, line: int, problem: str) -> None:
    message = error_of(family_doc(segments))
    assert message.startswith(f"rules.yaml:{line}: {problem}"), message


def test_expression_error_line_is_that_of_the_scalar_even_when_multiline() -> None:
    segments = "- name: A\n  when: >-\n    frequency > 1\n    and recncy_days > 3\n"
    assert error_of(family_doc(segments)).startswith("rules.yaml:6: when: unknown name 'recncy_days'")


@pytest.mark.parametrize(
    ("extra", "line", "problem"),
    [
        (
            "    key_features: [recency_dayz]\n",
            4,
            "unknown key feature 'recency_dayz'; did you mean 'recency_days'?",
        ),
        ("    key_features: recency_days\n", 4, "key_features must be a list"),
        ("    key_features: [frequency, frequency]\n", 4, "key feature 'frequency' is listed twice"),
        ("    description: [a]\n", 4, "description must be a string"),
        ("    colour: red\n", 4, "unknown key 'colour' in a family"),
    ],
)
def test_family_errors(extra: str, line: int, problem: str) -> None:
    message = error_of(family_doc("- name: A\n  when: 'frequency > 1'\n", extra))
    assert message.startswith(f"rules.yaml:{line}: {problem}"), message


def test_family_name_errors() -> None:
    doc = 'version: "x"\nfamilies:\n  - name: Bad-Name\n    segments: [{name: A, when: "frequency > 1"}]\n'
    assert error_of(doc).startswith("rules.yaml:3: family name 'Bad-Name' must match [a-z][a-z0-9_]*")
    doc = (
        'version: "x"\nfamilies:\n  - name: a\n    segments: [{name: A, when: "frequency > 1"}]\n'
        '  - name: a\n    segments: [{name: A, when: "frequency > 1"}]\n'
    )
    assert error_of(doc).startswith("rules.yaml:5: duplicate family name 'a'")
    doc = 'version: "x"\nfamilies:\n  - name: a\n    segments: []\n'
    assert error_of(doc).startswith("rules.yaml:4: segments of family 'a' must not be empty")


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ("  t: [1, 2]\n", "param 't' must be a number, a string or a bool"),
        ("  t: null\n", "param 't' must be a number, a string or a bool"),
        ("  t: {a: 1}\n", "param 't' must be a number, a string or a bool"),
        ("  t: .nan\n", "param 't' must be a finite number"),
        ("  t: 1" + "0" * 400 + "\n", "param 't' must be a finite number"),  # float() overflowed
        ("  t: " + "1" * 5000 + "\n", "number of 5000 characters is out of range"),  # int() refused
        ("  recency_days: 3\n", "param 'recency_days' shadows a variable of the same name"),
        ("  min: 3\n", "param 'min' shadows the function min()"),
        ("  not: 3\n", "param name 'not' is not an identifier"),
        ("  2x: 3\n", "param name '2x' is not an identifier"),
    ],
)
def test_param_errors(params: str, problem: str) -> None:
    message = error_of(family_doc("- name: A\n  when: 'frequency > 1'\n", params=params))
    assert message.startswith(f"rules.yaml:3: {problem}"), message


def test_params_are_known_names_and_other_types_are_accepted() -> None:
    params = "  enabled: true\n  tier: gold\n  n: 3\n"
    doc = family_doc("- name: A\n  when: 'frequency > n and enabled'\n", params=params)
    rule_set = parse(doc)
    assert rule_set.params == {"enabled": True, "tier": "gold", "n": 3}
    assert rule_set.families[0].segments[0].enter.evaluate({"frequency": 4}) is True


def test_an_unreadable_file_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml", KNOWN)
    (tmp_path / "latin1.yaml").write_bytes(b"version: \xe9\n")
    with pytest.raises(RulesError, match=r"latin1.yaml:1: not UTF-8 text"):
        load_rules(tmp_path / "latin1.yaml", KNOWN)


def test_limits_bound_the_work_of_loading(tmp_path: Path) -> None:
    from engine.rules.loader import MAX_RULES_FILE_BYTES

    big = VALID + "#" * MAX_RULES_FILE_BYTES + "\n"
    (tmp_path / "big.yaml").write_text(big)
    for load in (lambda: load_rules(tmp_path / "big.yaml", KNOWN), lambda: parse(big)):
        with pytest.raises(RulesError, match=r":1: rules file larger than 262144 bytes$"):
            load()
    assert error_of('version: "x"\nfamilies: ' + "[" * 10_000 + "]" * 10_000 + "\n").startswith(
        "rules.yaml:2: invalid YAML: nested deeper than 32 levels"
    )
    deep = "- name: A\n  when: '" + "not " * 200 + "frequency > 1'\n"
    assert error_of(family_doc(deep)) == "rules.yaml:6: when: expression nested deeper than 100 levels"


def test_aliases_count_each_use_of_an_expression(monkeypatch: pytest.MonkeyPatch) -> None:
    # Aliases repeat work without growing the file (here 3 x 20 label expressions from 3 lines).
    import engine.rules.loader as loader

    monkeypatch.setattr(loader, "MAX_RULES_EXPRESSIONS", 50)
    monkeypatch.setattr(loader, "MAX_RULES_EXPRESSION_CHARS", 2_000)
    labels = "".join(f"    - {{when: 'frequency > {i}', text: t{i}}}\n" for i in range(20))
    segments = "- name: A\n  when: 'frequency > 1'\n  labels: &l\n" + labels
    segments += "".join(f"- {{name: S{i}, when: 'frequency > 1', labels: *l}}\n" for i in range(2))
    assert "more than 50 expressions (an alias counts each use)" in error_of(family_doc(segments))
    long = "frequency > 1" + " or frequency > 1" * 40
    segments = f"- name: A\n  when: &w '{long}'\n" + "- {name: B, when: *w}\n" * 2
    assert "expressions longer than 2000 characters in all" in error_of(family_doc(segments))
    assert len(parse(family_doc(f"- name: A\n  when: &w '{long}'\n- {{name: B, when: *w}}\n")).families) == 1


def test_a_lone_surrogate_is_not_unicode_text() -> None:
    # A YAML escape makes one; a change event naming the segment could then not be encoded.
    segments = '- name: "A\\ud800"\n  when: "frequency > 1"\n'
    assert error_of(family_doc(segments)) == (
        "rules.yaml:5: invalid YAML: a lone surrogate escape in a string (not Unicode text)"
    )
    assert (
        error_of(family_doc("- name: A\ud800\n  when: 'frequency > 1'\n")) == "rules.yaml:5: not UTF-8 text"
    )


BROKEN = (
    'version: "x"\nfamilies:\n  - name: fam\n    segments:\n'
    '      - name: A\n        when: "recncy_days > 3"\n'
)


def test_cli_check_reports_file_and_line_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = CliRunner().invoke(rules_group, ["check", str(path)], obj=load_settings())
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"{path}:6: when: unknown name 'recncy_days'; did you mean 'recency_days'?"
    )
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    result = CliRunner().invoke(rules_group, ["check", str(good)], obj=load_settings())
    assert result.exit_code == 0
    assert result.stdout.strip() == f"{good}: ok (version test-1, 1 families, 2 segments)"


def test_cli_show_prints_segments_in_priority_order() -> None:
    result = CliRunner().invoke(rules_group, ["show"], obj=load_settings())
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  1. Lost" in lines and "  11. Promising" in lines
    assert lines.index("  1. Lost") < lines.index("  2. Hibernating") < lines.index("  11. Promising")
    assert "       exit:  score_churn < churn_risk_threshold - churn_risk_band" in lines


def test_segflow_rules_check_subprocess_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    done = subprocess.run(
        [sys.executable, "-m", "engine", "rules", "check", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"{path}:6: when: unknown name 'recncy_days'")
    assert "Traceback" not in done.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "engine", "rules", "check", str(DEFAULT_RULES_PATH)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith("ok (version segments-2026.12.3, 4 families, 19 segments)")
