"""The scores a decision may read: ready models' scores and the customer's BTYD quantities.

Model scores come from the sealed model snapshot of the decision's moment; a model that is not
ready (warming up, ``models.readiness``) gives the rules nothing (``None`` in a comparison).
The BTYD quantities are served in closed form from the population's BTYD fit that the
decision's population snapshot carries
(``engine.snapshots.lifetime``) and the customer's own purchases, so they replay like the
quintiles do:

=================================  =========================================================
score                              meaning (time in days, money in major units)
=================================  =========================================================
``p_alive``                        probability the customer is still "alive" (BG/NBD)
``expected_purchases_<N>d``        expected purchases in the next N days (BG/NBD, eq. 10)
``clv_<N>d``                       expected revenue in the next N days: expected purchases
                                   times the Gamma-Gamma expected spend (undiscounted)
=================================  =========================================================

N is ``SEGFLOW_CLV_DAYS``. A customer who never bought, or a population without a fit yet
(fewer than ``MIN_CUSTOMERS`` buyers, or in its first week), has none of them.

External batch scores (``score`` events, ``engine.stream.external_scores``) join them from the
customer's own state. Precedence, lowest first: external scores, the ready models' scores, the
BTYD scores; an external score whose name is any engine model's (ready or warming up) is left
out, so a warming-up model still reads as None rather than as someone else's number.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from engine.snapshots.lifetime import LifetimeFit
from engine.stream.external_scores import external_values
from features.event import SECONDS_PER_DAY
from features.state import CustomerState
from models.btyd import expected_purchases, p_alive
from models.gamma_gamma import expected_spend

MINOR_PER_MAJOR = 100


def lifetime_names(horizon_days: float) -> tuple[str, str, str]:
    """The names of the BTYD scores for a horizon of ``horizon_days``."""
    n = f"{horizon_days:g}"
    return ("p_alive", f"expected_purchases_{n}d", f"clv_{n}d")


def lifetime_scores(
    fit: LifetimeFit | None, state: CustomerState, as_of: float, horizon_days: float
) -> dict[str, float]:
    """The customer's BTYD scores at ``as_of`` (empty without a fit or a purchase)."""
    first, last = state.first_purchase_ts, state.last_purchase_ts
    if fit is None or first is None or last is None or state.orders <= 0:
        return {}
    x = state.orders - 1
    t_x = max(0.0, (last - first) / SECONDS_PER_DAY)
    age = max((as_of - first) / SECONDS_PER_DAY, t_x)
    alive_name, purchases_name, clv_name = lifetime_names(horizon_days)
    purchases = expected_purchases(fit.purchases, horizon_days, x, t_x, age)
    scores = {alive_name: p_alive(fit.purchases, x, t_x, age), purchases_name: purchases}
    if fit.spend is not None:
        mean = state.revenue_minor / MINOR_PER_MAJOR / state.orders
        if mean > 0:
            scores[clv_name] = purchases * expected_spend(fit.spend, state.orders, mean)
    return scores


def rule_scores(
    model_scores: Mapping[str, float],
    ready: Collection[str],
    lifetime: Mapping[str, float],
    state: CustomerState,
) -> dict[str, float]:
    """What the rules and change events see: external scores, scores of ``ready`` models, then
    the customer's BTYD scores ``lifetime`` (``lifetime_scores``; later ones win a name)."""
    scores = external_values(state, model_scores) if state.external_scores else {}
    scores.update((name, value) for name, value in model_scores.items() if name in ready)
    scores.update(lifetime)
    return scores
