"""The generated model-input row equals ``input_row`` (and raises the same errors)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.app import model_inputs
from engine.settings import Settings
from models.inputs import MISSING_SUFFIX, input_row, snapshot_row

NAMES = tuple(model_inputs(Settings()))
FEATURES = sorted({name.removesuffix(MISSING_SUFFIX) for name in NAMES})
NULLABLE = {name.removesuffix(MISSING_SUFFIX) for name in NAMES if name.endswith(MISSING_SUFFIX)}

values = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)


def outcome(function, snapshot):  # type: ignore[no-untyped-def]
    try:
        return ("ok", function(snapshot, NAMES))
    except (KeyError, TypeError, ValueError) as exc:
        return (type(exc).__name__, str(exc))


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({name: values for name in FEATURES}), st.sets(st.sampled_from(FEATURES)))
def test_generated_row_equals_input_row(snapshot: dict[str, object], dropped: set[str]) -> None:
    for name in list(dropped)[:1]:
        del snapshot[name]
    fast, careful = outcome(snapshot_row, snapshot), outcome(input_row, snapshot)
    assert fast[0] == careful[0]
    if fast[0] == "ok":
        assert [math.copysign(1, v) if v == 0 else v for v in fast[1]] == [
            math.copysign(1, v) if v == 0 else v for v in careful[1]
        ]
    else:
        assert fast == careful


def test_a_typical_snapshot_takes_the_generated_path() -> None:
    snapshot = {name: (None if name in NULLABLE else 1.5) for name in FEATURES}
    row = snapshot_row(snapshot, NAMES)
    assert row == input_row(snapshot, NAMES)
    with pytest.raises(ValueError, match="not finite"):
        snapshot_row({**snapshot, FEATURES[0]: math.nan}, NAMES)
