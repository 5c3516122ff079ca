"""Settings from SEGFLOW_* environment variables, with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.settings import SettingsError, load_settings
from engine.topics import topic_specs


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SEGFLOW_* variable from the surrounding shell (nor a ./.segflow.env) leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("SEGFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SEGFLOW_PROFILE", "none")


def error_of(**overrides: object) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    return str(info.value)


def env_error(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    return str(info.value)


def test_documented_defaults() -> None:
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.redis_url == "redis://127.0.0.1:16379/0"
    assert (s.events_topic, s.changes_topic, s.dlq_topic) == (
        "segflow.events",
        "segflow.segment-changes",
        "segflow.events.dlq",
    )
    assert (s.events_partitions, s.changes_partitions) == (8, 8)
    assert s.log_level == "warn"
    assert s.currency == "EUR"
    assert (s.rules_file, s.rules_reload_seconds, s.idle_advance_seconds) == (None, 5.0, 30.0)
    assert (s.model_period_seconds, s.learner_embedded, s.rescore_days) == (86_400.0, True, 7.0)


def test_env_var_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFLOW_EVENTS_PARTITIONS", "3")
    s = load_settings()
    assert s.events_partitions == 3
    assert s.changes_partitions == 8  # untouched


def test_env_var_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("segflow_kafka_bootstrap", "10.0.0.1:9092")
    assert load_settings().kafka_bootstrap == "10.0.0.1:9092"


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("SEGFLOW_RESCORE_DAYS", "7.5", "rescore_days", 7.5),
        ("SEGFLOW_WEB_ENABLED", "false", "web_enabled", False),
        ("SEGFLOW_WEB_ENABLED", "1", "web_enabled", True),
        ("SEGFLOW_BATCH_WITHIN_SECONDS", "0.05", "batch_within_seconds", 0.05),
        ("SEGFLOW_CURRENCY", "USD", "currency", "USD"),
        ("SEGFLOW_LOG_LEVEL", "debug", "log_level", "debug"),
        ("SEGFLOW_RULES_FILE", "/tmp/r.yaml", "rules_file", Path("/tmp/r.yaml")),
        ("SEGFLOW_ALLOWED_LATENESS_DAYS", "0", "allowed_lateness_days", 0.0),
    ],
)
def test_env_var_values_are_typed(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(load_settings(), field) == expected


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFLOW_EVENTS_PARTITIONS", "3")
    assert load_settings(events_partitions=5).events_partitions == 5


def test_unknown_segflow_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFLOW_NO_SUCH_SETTING", "x")
    assert load_settings().events_partitions == 8


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.events_partitions = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SEGFLOW_EVENTS_PARTITIONS",
            "0",
            "invalid setting SEGFLOW_EVENTS_PARTITIONS: Input should be greater than or equal to 1",
        ),
        (
            "SEGFLOW_EVENTS_PARTITIONS",
            "1025",
            "invalid setting SEGFLOW_EVENTS_PARTITIONS: Input should be less than or equal to 1024",
        ),
        (
            "SEGFLOW_EVENTS_PARTITIONS",
            "three",
            "invalid setting SEGFLOW_EVENTS_PARTITIONS: Input should be a valid integer",
        ),
        ("SEGFLOW_KAFKA_PORT", "80", "invalid setting SEGFLOW_KAFKA_PORT: Input should be greater than"),
        ("SEGFLOW_WEB_PORT", "70000", "invalid setting SEGFLOW_WEB_PORT: Input should be less than"),
        (
            "SEGFLOW_BATCH_WITHIN_SECONDS",
            "0",
            "invalid setting SEGFLOW_BATCH_WITHIN_SECONDS: Input should be",
        ),
        ("SEGFLOW_RESCORE_DAYS", "-1", "invalid setting SEGFLOW_RESCORE_DAYS: Input should be"),
        (
            "SEGFLOW_WEB_ENABLED",
            "maybe",
            "invalid setting SEGFLOW_WEB_ENABLED: Input should be a valid boolean",
        ),
    ],
)
def test_invalid_env_value_gives_one_line_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    text = env_error(monkeypatch, name, value)
    assert text.startswith(message)
    assert "\n" not in text


@pytest.mark.parametrize("level", ["crit", "error", "warn", "info", "debug"])
def test_known_log_levels(level: str) -> None:
    assert load_settings(log_level=level).log_level == level


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFLOW_LOG_LEVEL", "WARN")
    assert load_settings().log_level == "warn"


@pytest.mark.parametrize("level", ["warning", "trace", "", "critical"])
def test_unknown_log_level(monkeypatch: pytest.MonkeyPatch, level: str) -> None:
    text = env_error(monkeypatch, "SEGFLOW_LOG_LEVEL", level)
    assert text.startswith("invalid setting SEGFLOW_LOG_LEVEL: ")
    for allowed in ("crit", "error", "warn", "info", "debug"):
        assert f"'{allowed}'" in text
    assert "\n" not in text


@pytest.mark.parametrize("currency", ["EUR", "USD", "JPY", "XAU"])
def test_currency_codes(currency: str) -> None:
    assert load_settings(currency=currency).currency == currency


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "E1R", "", " EUR", "EUR\n"])
def test_currency_must_be_three_capitals(currency: str) -> None:
    text = error_of(currency=currency)
    assert text.startswith("invalid setting SEGFLOW_CURRENCY: String should match pattern")
    assert "\n" not in text


def test_only_the_first_of_several_errors_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFLOW_EVENTS_PARTITIONS", "0")
    monkeypatch.setenv("SEGFLOW_CURRENCY", "eur")
    text = error_of()
    assert text.count("invalid setting SEGFLOW_") == 1
    assert "\n" not in text


def test_settings_error_is_not_a_pydantic_error() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(events_partitions=0)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True


def test_learner_settings_and_the_labels_topic() -> None:
    s = load_settings()
    assert (s.model_period_seconds, s.learner_lease_seconds) == (86_400.0, 10.0)
    assert s.labels_topic == "segflow.labels"
    assert load_settings(app_id="other").labels_topic == "other.labels"
    assert "invalid setting SEGFLOW_MODEL_PERIOD_SECONDS" in error_of(model_period_seconds=0)
    assert "invalid setting SEGFLOW_LEARNER_LEASE_SECONDS" in error_of(learner_lease_seconds=0)


def test_the_labels_topic_has_one_partition() -> None:
    s = load_settings(events_partitions=12)
    specs = {spec.name: spec for spec in topic_specs(s)}
    assert specs["segflow.labels"].partitions == 1
    assert specs["segflow.labels"].carries == "resolved labels (schema v1)"
