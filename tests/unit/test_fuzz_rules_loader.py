"""Fuzzing the rules loader (``engine.rules.loader.parse_rules``) with broken and hostile files.

Whatever the text, loading either gives a rule set or raises ``RulesError`` whose message is one
line ``FILE:LINE: problem`` with LINE inside the file; never another exception. Hostile shapes
(too large, too deep, too many or too long expressions, alias bombs) hit the documented bounds
(README "Rules and segments": 256 KiB, 32 YAML levels, 1,000 expressions of 50,000 characters in
all, each at most 10,000 characters and 100 levels deep) and fail at once with their line.
"""

from __future__ import annotations

import re
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.rules.loader import DEFAULT_RULES_PATH, RulesError, parse_rules
from engine.rules.variables import known_variables
from features.catalogue import catalogue
from features.config import FeatureConfig
from models.registry import model_specs

FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
SOURCE = "fuzzed.yaml"
FEATURES = [spec.name for spec in catalogue(FeatureConfig())] + ["days_since_last_activity"]
KNOWN = known_variables(FEATURES, [spec.name for spec in model_specs(FeatureConfig().products)])
DEFAULT = DEFAULT_RULES_PATH.read_text()
LINE = re.compile(r"fuzzed\.yaml:(\d+): \S")


def load(text: str) -> None:
    """Load ``text``; a RulesError must name a line of the file, on one line."""
    lines = len(text.splitlines()) + 1  # YAML breaks lines at \r and \x85 too
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning printed at a (re)load either
            parse_rules(text, SOURCE, KNOWN)
    except RulesError as exc:
        message = str(exc)
        found = LINE.match(message)
        assert found is not None and "\n" not in message, message
        assert 1 <= int(found.group(1)) <= lines, message


def rules_with(when: str) -> str:
    """A small valid file whose one condition is ``when`` (at line 6)."""
    return f'version: "v1"\nfamilies:\n  - name: f\n    segments:\n      - name: s\n        when: {when}\n'


@FUZZ
@given(st.text(max_size=400))
def test_any_text_loads_or_fails_with_a_line(text: str) -> None:
    load(text)


@FUZZ
@given(st.data())
def test_mutated_default_rules_load_or_fail_with_a_line(data: st.DataObject) -> None:
    text = DEFAULT
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 40)))
        insert = data.draw(
            st.one_of(st.just(""), st.text(max_size=12), st.sampled_from(list("{}[]:-&*!|>'\"\n\t#%@`")))
        )
        text = text[:start] + insert + text[end:]
    load(text)


tokens = st.sampled_from(
    [
        "recency_days", "score_churn", "r_score", "frequency", "nope", "(", ")", "[", "]", ",", "and", "or",
        "not", "<", "<=", "==", "!=", "in", "+", "-", "*", "/", "**", "0", "1.5", "1e400", "9" * 400, "None",
        "True", "'a'", "'\\d'", "'\\ud800'", "min(", "abs(", "coalesce(", "lambda x:", ".", "__class__",
        "\x00",
        "if", "else", ":=", "f'{x}'",
    ]
)  # fmt: skip


@FUZZ
@given(st.lists(tokens, min_size=1, max_size=30))
def test_fuzzed_expressions_fail_at_their_line(parts: list[str]) -> None:
    expression = " ".join(parts).replace('"', "")
    try:
        parse_rules(rules_with(f'"{expression}"'), SOURCE, KNOWN)
    except RulesError as exc:
        assert str(exc).startswith(f"{SOURCE}:6: "), str(exc)


def test_the_size_bound() -> None:
    padding = "#" * 1000 + "\n"
    text = rules_with("recency_days > 1") + padding * (256 * 1024 // len(padding) + 1)
    with pytest.raises(RulesError, match=r"^fuzzed\.yaml:1: rules file larger than 262144 bytes$"):
        parse_rules(text, SOURCE, KNOWN)


@pytest.mark.parametrize(("depth", "fails"), [(30, False), (200, True), (50_000, True)])
def test_the_yaml_depth_bound(depth: int, fails: bool) -> None:
    text = rules_with("recency_days > 1") + "params:\n  x: " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(RulesError) as caught:
        parse_rules(text, SOURCE, KNOWN)
    # 30 levels pass the YAML bound, then fail as a param that is no scalar (line 8 either way)
    expected = "nested deeper than 32 levels" if fails else "param 'x' must be a number, a string or a bool"
    assert str(caught.value).startswith(f"{SOURCE}:8: ") and expected in str(caught.value)


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("recency_days > " + " + ".join(["1"] * 5_000), "expression longer than 10000 characters"),
        ("recency_days" + " + 1" * 150 + " > 1", "expression nested deeper than 100 levels"),
        ("(" * 300 + "recency_days" + ")" * 300 + " > 1", "invalid syntax .*too many nested parentheses"),
        ("recency_days > " + "-" * 5_000 + "1", "invalid expression .null byte or nested too deeply."),
    ],
)
def test_the_expression_bounds(when: str, problem: str) -> None:
    with pytest.raises(RulesError, match=rf"^fuzzed\.yaml:6: when: {problem}"):
        parse_rules(rules_with(f'"{when}"'), SOURCE, KNOWN)


def test_aliases_count_each_time_they_are_used() -> None:
    # One expression written once and used 1,001 times through its alias.
    segments = '\n      - {name: s0, when: &w "recency_days > 1"}'
    segments += "".join(f"\n      - {{name: s{i}, when: *w}}" for i in range(1, 1_001))
    text = 'version: "v1"\nfamilies:\n  - name: f\n    segments:' + segments + "\n"
    with pytest.raises(RulesError, match=r"^fuzzed\.yaml:5: more than 1000 expressions"):
        parse_rules(text, SOURCE, KNOWN)


def test_a_control_character_fails_at_its_line() -> None:
    with pytest.raises(RulesError, match=r"^fuzzed\.yaml:6: invalid YAML: unacceptable character #x0000"):
        parse_rules(rules_with('"recency_days > 1\x00"'), SOURCE, KNOWN)


def test_the_shipped_rules_load() -> None:
    assert parse_rules(DEFAULT, SOURCE, KNOWN).families
