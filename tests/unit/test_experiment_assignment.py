"""Hash assignment (engine.activation.experiments.assignment): the buckets are the documented
sha256 of msgpack, stable across processes, split in the stated proportions, and changing the
holdout or one weight moves only the customers the change has to move."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import msgpack
import pytest
from scipy import stats

from engine.activation.experiments.assignment import (
    CONTROL,
    EXPERIMENT_SALT,
    GLOBAL_CONTROL_SALT,
    ExperimentSpec,
    Variant,
    assign,
    global_control,
    in_holdout,
    treated_probability,
    unit_hash,
    validate_global_control_fraction,
    variant_probabilities,
    variants_from_weights,
)

CUSTOMERS = [f"c{i}" for i in range(40_000)]
SPEC = ExperimentSpec("winback", variants_from_weights({"A": 1, "B": 3}), holdout_percent=10.0)


def _independent_hash(*parts: str | int) -> float:
    digest = hashlib.sha256(msgpack.packb(list(parts), use_bin_type=True)).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def test_unit_hash_is_the_documented_sha256_of_msgpack() -> None:
    assert unit_hash("holdout", EXPERIMENT_SALT, "winback", "c1") == _independent_hash(
        "holdout", EXPERIMENT_SALT, "winback", "c1"
    )
    holdout = [_independent_hash("holdout", EXPERIMENT_SALT, "winback", c) < 0.10 for c in CUSTOMERS[:2000]]
    assert [in_holdout(SPEC, c) for c in CUSTOMERS[:2000]] == holdout
    in_group = [
        _independent_hash("global_control", GLOBAL_CONTROL_SALT, 0, c) < 0.05 for c in CUSTOMERS[:2000]
    ]
    assert [global_control(c, 0.05) for c in CUSTOMERS[:2000]] == in_group


def test_assignment_is_the_same_in_another_process() -> None:
    """A restart or another worker (another hash seed for str) assigns everyone the same."""
    code = (
        "import json; from engine.activation.experiments.assignment import *\n"
        "spec = ExperimentSpec('winback', variants_from_weights({'A': 1, 'B': 3}), holdout_percent=10.0)\n"
        "rows = [[assign(spec, f'c{i}').variant, global_control(f'c{i}', 0.05)] for i in range(500)]\n"
        "print(json.dumps(rows))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = [[assign(SPEC, c).variant, global_control(c, 0.05)] for c in CUSTOMERS[:500]]
    assert json.loads(out.stdout) == here


def test_allocation_and_logged_probabilities() -> None:
    expected = {CONTROL: 0.1, "A": 0.225, "B": 0.675}  # (1 - 0.1) * 1/4 and (1 - 0.1) * 3/4
    assert variant_probabilities(SPEC) == pytest.approx(expected, abs=1e-15)
    assignments = [assign(SPEC, c) for c in CUSTOMERS]
    for assignment in assignments[:1000]:
        assert assignment.probability == pytest.approx(expected[assignment.variant])
        assert assignment.is_control == (assignment.variant == CONTROL)
    observed = [sum(a.variant == arm for a in assignments) for arm in expected]
    p_value = stats.chisquare(observed, [len(CUSTOMERS) * share for share in expected.values()]).pvalue
    assert p_value > 0.001, (observed, p_value)
    assert treated_probability(SPEC, 0.5) == pytest.approx(0.45)


def test_a_reloaded_spec_assigns_the_same_and_another_name_reshuffles() -> None:
    reloaded = ExperimentSpec("winback", (Variant("A", 1.0), Variant("B", 3.0)), holdout_percent=10.0)
    assert [assign(reloaded, c) for c in CUSTOMERS[:5000]] == [assign(SPEC, c) for c in CUSTOMERS[:5000]]
    other = ExperimentSpec("upsell", SPEC.variants, holdout_percent=10.0)
    both = sum(in_holdout(SPEC, c) and in_holdout(other, c) for c in CUSTOMERS)
    assert both / len(CUSTOMERS) == pytest.approx(0.01, abs=0.003)  # independent: 10% of 10%


def test_raising_the_holdout_only_moves_treated_customers_into_control() -> None:
    wider = ExperimentSpec("winback", SPEC.variants, holdout_percent=20.0)
    moved = 0
    for customer in CUSTOMERS:
        before, after = assign(SPEC, customer), assign(wider, customer)
        if before.is_control:
            assert after.is_control
        elif not after.is_control:
            assert after.variant == before.variant
        else:
            moved += 1
    assert moved / len(CUSTOMERS) == pytest.approx(0.10, abs=0.01)


def test_changing_one_weight_moves_only_customers_into_that_variant() -> None:
    """A:B:C 1:1:1 -> 1:2:1 moves the boundaries 1/3 -> 1/4 and 2/3 -> 3/4: 1/6 move, all into B."""
    equal = ExperimentSpec("split", variants_from_weights({"A": 1, "B": 1, "C": 1}))
    heavier = ExperimentSpec("split", variants_from_weights({"A": 1, "B": 2, "C": 1}))
    changed = [(assign(equal, c).variant, assign(heavier, c).variant) for c in CUSTOMERS]
    moved = [(before, after) for before, after in changed if before != after]
    assert {after for _, after in moved} == {"B"}
    assert len(moved) / len(CUSTOMERS) == pytest.approx(1 / 6, abs=0.01)


def test_global_control_group() -> None:
    group = [c for c in CUSTOMERS if global_control(c, 0.05)]
    assert len(group) / len(CUSTOMERS) == pytest.approx(0.05, abs=0.004)
    # independent of every experiment's holdout: 10% of the group is in this one's
    assert sum(in_holdout(SPEC, c) for c in group) / len(group) == pytest.approx(0.10, abs=0.025)
    reshuffled = {c for c in CUSTOMERS if global_control(c, 0.05, epoch=1)}
    assert len(reshuffled & set(group)) / len(CUSTOMERS) == pytest.approx(0.05 * 0.05, abs=0.001)
    assert not any(global_control(c, 0.0) for c in CUSTOMERS[:1000])


@pytest.mark.parametrize("fraction", [0.005, 0.16, -0.01, 1.0])
def test_global_control_outside_one_to_fifteen_percent_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="global control fraction"):
        validate_global_control_fraction(fraction)
    assert validate_global_control_fraction(0.01) == 0.01
    assert validate_global_control_fraction(0.15) == 0.15


@pytest.mark.parametrize(
    ("variants", "holdout", "message"),
    [
        ((), 0.0, "at least one variant"),
        ((Variant("A"), Variant("A")), 0.0, "unique"),
        ((Variant(CONTROL),), 0.0, "reserved"),
        ((Variant("A", 0.0),), 0.0, "positive finite weight"),
        ((Variant("A", float("inf")),), 0.0, "positive finite weight"),
        ((Variant("A"),), 100.0, "holdout_percent"),
        ((Variant("A"),), -1.0, "holdout_percent"),
    ],
)
def test_invalid_experiments_are_refused(variants: tuple[Variant, ...], holdout: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExperimentSpec("x", variants, holdout_percent=holdout)
