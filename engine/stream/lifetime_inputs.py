"""The BTYD quantities as model inputs, beside the catalogue features.

A linear model on raw counts and ages cannot tell a customer who buys every 60 days and was
last seen 50 days ago from one who bought once, 50 days ago: BG/NBD can, from the population's
purchase pattern. So the churn, clv and propensity models also read the customer's BTYD
quantities at the scoring moment, from the same sealed population snapshot (``fit``) the rules'
BTYD scores come from (``engine.stream.rule_scores``), so they replay like every other input:

===========================  ================================================================
input                        value
===========================  ================================================================
``btyd_p_alive``             P(alive) (BG/NBD), 0.0 when there is none
``btyd_expected_purchases``  expected purchases in the next N days (log scale: ``models.inputs``)
``btyd_clv``                 expected revenue in the next N days (money: log scale)
``btyd_missing``             1.0 when the customer has none of them (no purchase, or no fit yet)
===========================  ================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.stream.rule_scores import lifetime_names
from models.inputs import snapshot_row

LIFETIME_INPUTS = ("btyd_p_alive", "btyd_expected_purchases", "btyd_clv", "btyd_missing")


def lifetime_inputs(lifetime: Mapping[str, float], horizon_days: float) -> dict[str, float]:
    """The four ``LIFETIME_INPUTS`` from a customer's BTYD scores (``rule_scores.lifetime_scores``)."""
    alive, purchases, clv = lifetime_names(horizon_days)
    return {
        "btyd_p_alive": lifetime.get(alive, 0.0),
        "btyd_expected_purchases": lifetime.get(purchases, 0.0),
        "btyd_clv": lifetime.get(clv, 0.0),
        "btyd_missing": 0.0 if lifetime else 1.0,
    }


def reads_lifetime(input_names: Sequence[str]) -> bool:
    """Whether the model inputs include the BTYD quantities (then scoring reads the population)."""
    return LIFETIME_INPUTS[0] in input_names


def model_row(
    features: Mapping[str, float | int | None],
    input_names: tuple[str, ...],
    lifetime: Mapping[str, float] | None,
    horizon_days: float,
) -> list[float]:
    """One model input row: the catalogue ``features`` and, when ``lifetime`` is given (the inputs
    include the BTYD quantities), the customer's BTYD scores as inputs."""
    if lifetime is None:
        return snapshot_row(features, input_names)
    return snapshot_row({**features, **lifetime_inputs(lifetime, horizon_days)}, input_names)
