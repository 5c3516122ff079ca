"""Model inputs: chosen from the catalogue, guarded for fairness, None made explicit."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.catalogue import FeatureSnapshot, FeatureSpec, catalogue
from features.config import FeatureConfig
from models.inputs import (
    MISSING_SUFFIX,
    InputSpec,
    ProtectedAttributeError,
    input_features,
    to_model_input,
)

SPECS = [
    FeatureSpec("recency_days", "rfm", "float?", ""),
    FeatureSpec("frequency", "rfm", "int", ""),
    FeatureSpec("monetary", "rfm", "float", ""),
    FeatureSpec("age", "demographics", "int", ""),
    FeatureSpec("late_events_dropped", "quality", "int", ""),
]


def _snapshot(values: dict[str, float | int | None]) -> FeatureSnapshot:
    return FeatureSnapshot("c1", 0.0, values, {}, {})


def test_standard_catalogue_inputs() -> None:
    specs = catalogue(FeatureConfig())
    names = input_features(specs, exclude=("late_events_dropped",))
    assert "late_events_dropped" not in names
    features = [n for n in names if not n.endswith(MISSING_SUFFIX)]
    assert features == [s.name for s in specs if s.name != "late_events_dropped"]
    nullable = {s.name for s in specs if s.kind == "float?"}
    for name in nullable:
        assert names[names.index(name) + 1] == name + MISSING_SUFFIX
    assert len(names) == len(features) + len(nullable)


def test_input_spec_records_nullable_features() -> None:
    spec = InputSpec.from_catalogue(SPECS, exclude=("age", "late_events_dropped"))
    assert spec.features == ("recency_days", "frequency", "monetary")
    assert spec.nullable == frozenset({"recency_days"})
    assert spec.names == ["recency_days", "recency_days__missing", "frequency", "monetary"]


def test_protected_attribute_in_catalogue_raises_at_build_time() -> None:
    with pytest.raises(ProtectedAttributeError) as excinfo:
        input_features(SPECS, protected=("age", "gender"))
    assert "'age'" in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_excluded_protected_attribute_is_allowed() -> None:
    names = input_features(SPECS, exclude=("age",), protected=("age", "gender"))
    assert "age" not in names


def test_protected_attribute_requested_explicitly_raises_even_if_excluded() -> None:
    with pytest.raises(ProtectedAttributeError):
        input_features(SPECS, exclude=("age",), protected=("age",), include=("monetary", "age"))


def test_include_selects_in_order() -> None:
    names = input_features(SPECS, include=("monetary", "recency_days"), protected=("age",))
    assert names == ["monetary", "recency_days", "recency_days__missing"]


@pytest.mark.parametrize("kwargs", [{"exclude": ("late_event_dropped",)}, {"include": ("monetory",)}])
def test_unknown_feature_in_selection_raises(kwargs: dict[str, tuple[str, ...]]) -> None:
    with pytest.raises(KeyError, match=r"late_event_dropped|monetory"):
        input_features(SPECS, **kwargs)


def test_misspelled_name_raises_key_error_naming_it() -> None:
    snap = _snapshot({"recency_days": 1.0, "frequency": 2, "monetary": 3.0})
    with pytest.raises(KeyError, match="monetory"):
        to_model_input(snap, ["frequency", "monetory"])
    with pytest.raises(KeyError, match="recency_dayz"):
        to_model_input(snap, ["recency_dayz__missing"])
    with pytest.raises(KeyError, match="frequency"):
        to_model_input({"monetary": 1.0}, ["frequency"])


def test_none_becomes_zero_with_indicator() -> None:
    names = ["recency_days", "recency_days__missing", "frequency", "monetary"]
    never = to_model_input(_snapshot({"recency_days": None, "frequency": 0, "monetary": 0.0}), names)
    today = to_model_input(_snapshot({"recency_days": 0.0, "frequency": 1, "monetary": 9.5}), names)
    assert never == {"recency_days": 0.0, "recency_days__missing": 1.0, "frequency": 0.0, "monetary": 0.0}
    assert today == {
        "recency_days": 0.0,
        "recency_days__missing": 0.0,
        "frequency": math.log(2.0),
        "monetary": math.log(10.5),
    }
    assert list(never) == list(today) == names


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("monetary", 0.0, 0.0),
        ("revenue_30d", math.e - 1, 1.0),
        ("balance_credit_card", -(math.e**2 - 1), -2.0),
        ("total_balance", 99.0, math.log(100.0)),
        ("frequency", 99.0, math.log(100.0)),  # counts: log scale too
        ("orders_30d", 0, 0.0),
        ("recency_days", math.e**3 - 1, 3.0),  # ages in days
        ("days_since_last_login", 0.0, 0.0),
        ("btyd_expected_purchases", math.e - 1, 1.0),
        ("btyd_clv", 99.0, math.log(100.0)),
        ("key_feature_adoption", 0.75, 0.75),  # a fraction: unchanged
        ("btyd_p_alive", 0.5, 0.5),  # a probability: unchanged
        ("worst_open_severity", 3, 3.0),  # an ordinal level: unchanged
    ],
)
def test_heavy_tailed_inputs_are_seen_on_a_signed_log_scale(name: str, value: float, expected: float) -> None:
    assert to_model_input({name: value}, [name])[name] == pytest.approx(expected)


def test_none_without_indicator_is_an_error() -> None:
    with pytest.raises(ValueError, match="recency_days"):
        to_model_input({"recency_days": None}, ["recency_days"])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="monetary"):
        to_model_input({"monetary": bad}, ["monetary"])


def test_non_numbers_rejected() -> None:
    with pytest.raises(TypeError, match="monetary"):
        to_model_input({"monetary": "12"}, ["monetary"])  # type: ignore[dict-item]


def test_ints_and_bools_become_floats() -> None:
    result = to_model_input({"worst_open_severity": 3, "flag": True}, ["worst_open_severity", "flag"])
    assert result == {"worst_open_severity": 3.0, "flag": 1.0}
    assert all(type(v) is float for v in result.values())


@given(
    recency=st.none() | st.floats(min_value=0, max_value=1e6),
    frequency=st.integers(min_value=0, max_value=10**6),
)
def test_inputs_always_have_the_same_keys(recency: float | None, frequency: int) -> None:
    names = input_features(SPECS, exclude=("age", "late_events_dropped"))
    result = to_model_input({"recency_days": recency, "frequency": frequency, "monetary": 1.0}, names)
    assert list(result) == names
    assert all(type(v) is float and math.isfinite(v) for v in result.values())
    assert result["recency_days__missing"] == (1.0 if recency is None else 0.0)
