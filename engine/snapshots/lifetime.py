"""BTYD fits of the population, sealed with the population snapshots (pure: no Redis).

The BG/NBD purchase model and the Gamma-Gamma spend model (``models.btyd``) are fitted on the
population's per-customer summaries, taken from the merged histogram of a sealed day, so the
fit is a function of the log like the quintile cuts are. Fitting costs ~0.1-0.3 s for a few
thousand distinct summaries, so it is done once a week of event time: on the last day of each
block of ``FIT_EVERY_DAYS`` UTC days counted from 1970-01-01 (day indexes 6, 13, 20, ...). A
decision reading population day ``V`` reads the fit of ``fit_day_of(V)``, the latest fit day
at or before ``V``: sealable before ``V`` is, since every partition passed it first.

Summaries in days: a customer placed at (first purchase day f, last purchase day l, orders n)
has ``x = n - 1`` repeat purchases, ``t_x = l - f`` and ``T = max(D + 1 - f, t_x)``, their age
at the end of day ``D`` (a partition records its population a little after that end, so a
purchase of day ``D + 1`` may be counted: ``T`` never falls below ``t_x``). Spend is the mean
over all of a customer's purchases, in whole major units, of customers with n >= 1 and revenue
> 0 (Gamma-Gamma on every transaction's value, not only the repeats as the CDNOW studies do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.snapshots.cuts import Histogram
from models.btyd import BgNbdParams, fit_bgnbd
from models.gamma_gamma import GammaGammaParams, fit_gamma_gamma

log = logging.getLogger(__name__)

FIT_EVERY_DAYS = 7
MIN_CUSTOMERS = 50
"""Fewer buyers than this give no fit: BTYD scores stay None (warming up)."""
MIN_REPEATERS = 10
"""Nor do fewer customers with a repeat purchase (the dropout process is not identified)."""


def is_fit_day(day: int) -> bool:
    """Whether the sealed cuts of ``day`` carry a fit."""
    return day % FIT_EVERY_DAYS == FIT_EVERY_DAYS - 1


def fit_day_of(version: int) -> int:
    """The fit day a decision reading population day ``version`` uses (at or before it)."""
    return version - (version - (FIT_EVERY_DAYS - 1)) % FIT_EVERY_DAYS


@dataclass(frozen=True, slots=True)
class LifetimeFit:
    """The population's BTYD parameters, fitted on day ``day`` (time in days)."""

    day: int
    purchases: BgNbdParams
    spend: GammaGammaParams | None

    def encode(self) -> dict[str, Any]:
        """A plain dict for the sealed cuts (msgpack)."""
        return {
            "day": self.day,
            "bg_nbd": self.purchases.encode(),
            "gamma_gamma": None if self.spend is None else self.spend.encode(),
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> LifetimeFit:
        """Inverse of ``encode``."""
        spend = data.get("gamma_gamma")
        return cls(
            int(data["day"]),
            BgNbdParams.decode(data["bg_nbd"]),
            None if spend is None else GammaGammaParams.decode(spend),
        )


def summaries(day: int, histogram: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T, customers) arrays of the BG/NBD summaries as of the end of ``day``."""
    rows = sorted(histogram.lifetimes.items())
    first = np.array([k[0] for k, _ in rows], dtype=np.float64)
    last = np.array([k[1] for k, _ in rows], dtype=np.float64)
    orders = np.array([k[2] for k, _ in rows], dtype=np.float64)
    weights = np.array([c for _, c in rows], dtype=np.float64)
    t_x = np.maximum(last - first, 0.0)
    return orders - 1, t_x, np.maximum(day + 1 - first, t_x), weights


def fit_lifetime(day: int, histogram: Histogram) -> LifetimeFit | None:
    """The fit of ``day``'s population; None when it is too small or the fit fails."""
    x, t_x, T, weights = summaries(day, histogram)
    if weights.sum() < MIN_CUSTOMERS or weights[x > 0].sum() < MIN_REPEATERS:
        return None
    try:
        purchases = fit_bgnbd(x, t_x, T, weights)
    except ValueError as exc:
        log.info("no BG/NBD fit for day %d: %s", day, exc)
        return None
    spend_rows = [(k, c) for k, c in sorted(histogram.spends.items()) if k[0] >= 1 and k[1] > 0]
    spend: GammaGammaParams | None = None
    if sum(c for _, c in spend_rows) >= MIN_CUSTOMERS:
        n = np.array([k[0] for k, _ in spend_rows], dtype=np.float64)
        mean = np.array([k[1] / k[0] for k, _ in spend_rows], dtype=np.float64)
        try:
            spend = fit_gamma_gamma(n, mean, np.array([c for _, c in spend_rows], dtype=np.float64))
        except ValueError as exc:
            log.info("no Gamma-Gamma fit for day %d: %s", day, exc)
    return LifetimeFit(day, purchases, spend)
