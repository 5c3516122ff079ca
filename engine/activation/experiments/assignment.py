"""Deterministic assignment: global control, per-experiment holdout, sticky weighted variants.

Every bucket is a uniform number in [0, 1) read from a hash, never from a random generator, so a
customer lands in the same group on every worker, after every restart and after every rules
reload that leaves the experiment's name, salt and allocation unchanged:

    unit_hash(*parts) = int(sha256(msgpack([*parts]))[:8], big-endian) / 2**64

msgpack of the list (``engine.codecs.encode_msgpack``) separates the parts unambiguously (the
action ids are built the same way). Three independent buckets are used, each from its own parts:

    global control   unit_hash("global_control", salt, epoch, customer_id)   < fraction
    holdout          unit_hash("holdout", salt, experiment, customer_id)     < holdout_percent / 100
    variant          unit_hash("variant", salt, experiment, customer_id)     -> weighted pick

Keeping the holdout and the variant buckets separate means that raising the holdout only moves
some treated customers into control, and changing one variant's weight moves only the customers
at the boundaries it shifts; nobody else changes variant.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from engine.codecs import encode_msgpack

CONTROL = "control"
GLOBAL_CONTROL = "global_control"
GLOBAL_CONTROL_SALT = "segflow-global-control"
EXPERIMENT_SALT = "segflow-experiments"
# A global control group smaller than 1% measures nothing in useful time; larger than 15% costs
# too much of the treatable population. 0 disables it.
GLOBAL_CONTROL_MIN = 0.01
GLOBAL_CONTROL_MAX = 0.15


def unit_hash(*parts: str | int) -> float:
    """A uniform number in [0, 1) from the parts: the first 8 bytes of sha256(msgpack(parts))."""
    digest = hashlib.sha256(encode_msgpack(list(parts))).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def validate_global_control_fraction(fraction: float) -> float:
    """``fraction`` if it is 0 (disabled) or within [0.01, 0.15], else ``ValueError``."""
    if fraction == 0:
        return 0.0
    if not GLOBAL_CONTROL_MIN <= fraction <= GLOBAL_CONTROL_MAX:
        raise ValueError(
            f"global control fraction must be 0 (disabled) or within "
            f"[{GLOBAL_CONTROL_MIN}, {GLOBAL_CONTROL_MAX}], got {fraction!r}"
        )
    return float(fraction)


def global_control(
    customer_id: str, fraction: float, salt: str = GLOBAL_CONTROL_SALT, epoch: str | int = 0
) -> bool:
    """Whether ``customer_id`` is in the global control group (withheld from every action).

    ``fraction`` is 0 (disabled) or within [0.01, 0.15]. ``epoch`` is a configuration value the
    user bumps to reshuffle the group (at most monthly: customers held out for longer drift away
    from the treated population, and reshuffling more often leaves too little time in the group
    to measure long-run lift). The same (salt, epoch) always gives the same group; a new epoch
    draws an independent one. The logged probability of a global-control decision is ``fraction``.
    """
    fraction = validate_global_control_fraction(fraction)
    if fraction == 0:
        return False
    return unit_hash(GLOBAL_CONTROL, salt, epoch, customer_id) < fraction


@dataclass(frozen=True, slots=True)
class Variant:
    """One treated arm of an experiment; ``weight`` is relative (weights need not sum to 1)."""

    name: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    """An experiment: its holdout (percent of customers never treated) and its variants."""

    name: str
    variants: tuple[Variant, ...]
    holdout_percent: float = 0.0
    salt: str = EXPERIMENT_SALT

    def __post_init__(self) -> None:
        validate_variants(self.variants)
        if not (math.isfinite(self.holdout_percent) and 0.0 <= self.holdout_percent < 100.0):
            raise ValueError(f"holdout_percent must be within [0, 100), got {self.holdout_percent!r}")
        if not self.name:
            raise ValueError("an experiment needs a name (it is part of every bucket's hash)")

    @property
    def holdout_fraction(self) -> float:
        """The holdout as a fraction in [0, 1)."""
        return self.holdout_percent / 100.0

    @property
    def arms(self) -> tuple[str, ...]:
        """The variants' names in declaration order (the order that breaks ties everywhere)."""
        return tuple(variant.name for variant in self.variants)


def validate_variants(variants: tuple[Variant, ...]) -> None:
    """``ValueError`` unless there is at least one variant, names are unique and not "control",
    and every weight is positive and finite."""
    if not variants:
        raise ValueError("an experiment needs at least one variant")
    names = [variant.name for variant in variants]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
    if CONTROL in names:
        raise ValueError(f"{CONTROL!r} is reserved for the holdout and cannot name a variant")
    for variant in variants:
        if not variant.name:
            raise ValueError("a variant needs a name")
        if not (math.isfinite(variant.weight) and variant.weight > 0):
            raise ValueError(
                f"variant {variant.name!r} needs a positive finite weight, got {variant.weight!r}"
            )


@dataclass(frozen=True, slots=True)
class Assignment:
    """What a customer is assigned to, and the probability of that assignment."""

    variant: str  # a variant's name, or CONTROL
    probability: float

    @property
    def is_control(self) -> bool:
        """Whether the customer is in the experiment's holdout."""
        return self.variant == CONTROL


def in_holdout(spec: ExperimentSpec, customer_id: str) -> bool:
    """Whether ``customer_id`` is in the experiment's holdout (sticky; independent of variants)."""
    return unit_hash("holdout", spec.salt, spec.name, customer_id) < spec.holdout_fraction


def variant_probabilities(spec: ExperimentSpec) -> dict[str, float]:
    """The allocation: P(control) = h and P(variant i) = (1 - h) * w_i / sum(w), control first.

    E.g. holdout 10%, variants A:1 and B:3 -> control 0.1, A 0.225, B 0.675. This is also the
    expected allocation to check the observed exposures against (``lift.sample_ratio_mismatch``).
    """
    holdout = spec.holdout_fraction
    total = math.fsum(variant.weight for variant in spec.variants)
    allocation = {CONTROL: holdout} if holdout > 0 else {}
    for variant in spec.variants:
        allocation[variant.name] = (1.0 - holdout) * variant.weight / total
    return allocation


def pick_variant(spec: ExperimentSpec, customer_id: str) -> Variant:
    """The sticky weighted variant of a treated customer (the holdout is not consulted)."""
    cumulative: list[float] = []
    running = 0.0
    for variant in spec.variants:
        running += variant.weight
        cumulative.append(running)
    point = unit_hash("variant", spec.salt, spec.name, customer_id) * running
    index = min(bisect.bisect_right(cumulative, point), len(spec.variants) - 1)
    return spec.variants[index]


def assign(spec: ExperimentSpec, customer_id: str) -> Assignment:
    """Holdout first, then the sticky weighted variant; with the probability of the result."""
    allocation = variant_probabilities(spec)
    if in_holdout(spec, customer_id):
        return Assignment(CONTROL, allocation[CONTROL])
    variant = pick_variant(spec, customer_id)
    return Assignment(variant.name, allocation[variant.name])


def treated_probability(spec: ExperimentSpec, policy_probability: float) -> float:
    """The logged probability of an arm a bandit chose for a customer outside the holdout.

    The holdout is decided by hash before the policy runs, so P(arm) = (1 - h) * P(policy picks arm).
    """
    return (1.0 - spec.holdout_fraction) * policy_probability


def variants_from_weights(weights: Mapping[str, float]) -> tuple[Variant, ...]:
    """``{"A": 1, "B": 3}`` -> (Variant("A", 1.0), Variant("B", 3.0)), in the mapping's order."""
    return tuple(Variant(name, float(weight)) for name, weight in weights.items())
