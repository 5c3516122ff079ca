"""The variables segment rules can read, by name.

Three kinds: the catalogue's features (``features.catalogue``), one ``score_<model>`` per model
(``models.registry.model_specs``: ``score_churn``, ``score_clv``, ``score_propensity_<product>``;
external batch models of ``SEGFLOW_EXTERNAL_SCORES`` are passed in the same way)
and the RFM quintiles ``r_score``, ``f_score`` and ``m_score`` (1..5, 5 best; None for a customer
without a purchase). ``days_since_last_activity`` (days since the last login or purchase) is always
known, whether or not the catalogue passed in lists it yet.
"""

from __future__ import annotations

from collections.abc import Iterable

SCORE_PREFIX = "score_"
QUINTILE_NAMES: tuple[str, ...] = ("r_score", "f_score", "m_score")
_QUINTILES = {
    "r_score": "recency quintile 1..5 (5 = most recent purchase); none without a purchase",
    "f_score": "frequency quintile 1..5 (5 = most orders); none without a purchase",
    "m_score": "monetary quintile 1..5 (5 = most revenue); none without a purchase",
}
ALWAYS_KNOWN: dict[str, str] = {"days_since_last_activity": "days since the last login or purchase"}


def _name_and_description(item: object, default: str) -> tuple[str, str]:
    if isinstance(item, str):
        return item, default
    return str(item.name), str(getattr(item, "description", default) or default)  # type: ignore[attr-defined]


def known_variables(feature_names: Iterable[object], model_names: Iterable[object]) -> dict[str, str]:
    """Every name a rule may read, mapped to a short description, in a stable order.

    ``feature_names`` are catalogue feature names (or ``FeatureSpec`` objects, whose descriptions
    are then used); ``model_names`` are model names such as ``"churn"`` (or ``ModelSpec`` objects),
    each giving the variable ``score_<name>``. The quintiles and ``days_since_last_activity`` are
    always included.
    """
    known: dict[str, str] = {}
    for item in feature_names:
        name, description = _name_and_description(item, "feature")
        known.setdefault(name, description)
    for name, description in ALWAYS_KNOWN.items():
        known.setdefault(name, description)
    for item in model_names:
        name, description = _name_and_description(item, "")
        text = f"prediction of model {name}" + (f": {description}" if description else "")
        known.setdefault(f"{SCORE_PREFIX}{name}", text)
    for name in QUINTILE_NAMES:
        known.setdefault(name, _QUINTILES[name])
    return known
