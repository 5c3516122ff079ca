"""Which catalogue features feed the models, and how a snapshot becomes a model input.

Model inputs are the numeric catalogue features (minus explicit exclusions such as quality
counters) plus, for every nullable ("float?") feature, an indicator ``<name>__missing``. The
indicator is always present (1.0 or 0.0), so every input dict has the same keys and the model can
tell "never purchased" (recency None -> 0.0 with indicator 1.0) from "purchased today" (0.0, 0.0).

The fairness guard runs when the inputs are chosen, i.e. at startup: a protected attribute that
would reach a model is an error, never a warning.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from features.catalogue import FeatureSpec

MISSING_SUFFIX = "__missing"
INPUT_SCALE_VERSION = 2
"""Bumped whenever an input's scale changes (2: counts and ages on log scale, ``is_log_scaled``):
a model learned on the old scale must not score the new one (``models.config`` fingerprint)."""
NUMERIC_KINDS = frozenset({"int", "float", "float?"})
NULLABLE_KIND = "float?"


class ProtectedAttributeError(ValueError):
    """A protected attribute (e.g. age, gender) would be used as a model input."""


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The catalogue features read by the models, in order, and which of them may be None."""

    features: tuple[str, ...]
    nullable: frozenset[str]

    @property
    def names(self) -> list[str]:
        """Model input names: each feature, followed by ``<feature>__missing`` when nullable."""
        names: list[str] = []
        for feature in self.features:
            names.append(feature)
            if feature in self.nullable:
                names.append(feature + MISSING_SUFFIX)
        return names

    @classmethod
    def from_catalogue(
        cls,
        catalogue_specs: Iterable[FeatureSpec],
        exclude: Iterable[str] = (),
        protected: Iterable[str] = (),
        include: Sequence[str] | None = None,
    ) -> InputSpec:
        """The inputs chosen from ``catalogue_specs``; see ``input_features``."""
        specs = {spec.name: spec for spec in catalogue_specs if spec.kind in NUMERIC_KINDS}
        excluded = set(exclude)
        if include is not None:
            blocked = [name for name in protected if name in include]
        else:
            blocked = [name for name in protected if name in specs and name not in excluded]
        if blocked:
            raise ProtectedAttributeError(
                f"protected attribute(s) {', '.join(map(repr, blocked))} must not be model inputs:"
                " exclude them and do not request them"
            )
        unknown = sorted({*excluded, *(include or ())} - specs.keys())
        if unknown:
            raise KeyError(
                f"unknown feature(s) {', '.join(map(repr, unknown))}: not numeric catalogue features"
            )
        candidates = list(include) if include is not None else list(specs)
        chosen = [name for name in candidates if name not in excluded]
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"feature names repeated in {chosen!r}")
        nullable = frozenset(name for name in chosen if specs[name].kind == NULLABLE_KIND)
        return cls(tuple(chosen), nullable)


def input_features(
    catalogue_specs: Iterable[FeatureSpec],
    exclude: Iterable[str] = (),
    protected: Iterable[str] = (),
    include: Sequence[str] | None = None,
) -> list[str]:
    """The ordered model input names drawn from ``catalogue_specs``.

    All numeric catalogue features in catalogue order (or exactly ``include``, in its order),
    except ``exclude``; every nullable feature is followed by its ``<name>__missing`` indicator.

    Raises ``ProtectedAttributeError`` if a name in ``protected`` would be an input, or is asked
    for in ``include`` (even if also excluded), and ``KeyError`` for an ``exclude`` or ``include``
    name that is not a numeric catalogue feature (a misspelled exclusion would otherwise let the
    feature through silently). Call it at startup.
    """
    return InputSpec.from_catalogue(catalogue_specs, exclude, protected, include).names


def _as_float(name: str, value: object) -> float:
    if not isinstance(value, numbers.Real):
        raise TypeError(f"feature {name!r} is not a number: {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"feature {name!r} is not finite: {result!r}")
    return result


def to_model_input(snapshot: Mapping[str, float | int | None], names: Sequence[str]) -> dict[str, float]:
    """The model input for ``names`` (as returned by ``input_features``) from ``snapshot``.

    Every name (for an indicator, its feature) must be in ``snapshot``, else ``KeyError`` naming
    it. Ints and bools become floats; None becomes 0.0 and sets ``<name>__missing`` to 1.0 (it is
    0.0 when the value is present). A None for a feature without an indicator in ``names`` raises
    ``ValueError``, as do NaN and infinities.
    """
    return dict(zip(names, input_row(snapshot, names), strict=True))


def input_row(snapshot: Mapping[str, float | int | None], names: Sequence[str]) -> list[float]:
    """The values of ``to_model_input(snapshot, names)`` as a list in ``names`` order.

    Same roles (indicators, None as 0.0, money, counts and ages on a signed log scale:
    ``is_log_scaled``) and the same errors.
    """
    row: list[float] = []
    append = row.append
    for name, feature, role in _plan(names if isinstance(names, tuple) else tuple(names)):
        try:
            value = snapshot[feature]
        except KeyError:
            raise KeyError(f"unknown feature {feature!r}: not in the snapshot") from None
        if role == _INDICATOR:
            append(1.0 if value is None else 0.0)
            continue
        if value is None:
            if role not in (_NULLABLE_LOG, _NULLABLE):
                raise ValueError(f"feature {feature!r} is None but has no {MISSING_SUFFIX} indicator input")
            append(0.0)
            continue
        kind = type(value)
        # Exact float/int first: isinstance against numbers.Real is an ABC check, slow per value.
        if (kind is float and -_INF < value < _INF) or kind is int:
            number = float(value)
        else:
            number = _as_float(name, value)
        append(math.copysign(math.log1p(abs(number)), number) if role >= _LOG else number)
    return row


def snapshot_row(snapshot: Mapping[str, float | int | None], names: tuple[str, ...]) -> list[float]:
    """``input_row`` for a catalogue snapshot, by a function generated once per input layout.

    The catalogue makes every value an int, a float or None, so the generated code only converts;
    anything else it meets (a NaN, an infinity, a None without an indicator, a missing feature)
    sends the snapshot through ``input_row``, which raises the precise error.
    """
    try:
        row = _row_function(names)(snapshot)
    except (KeyError, TypeError, ValueError):
        return input_row(snapshot, names)
    if -_INF < sum(row) < _INF:  # NaN and infinities make the sum non-finite
        return row
    return input_row(snapshot, names)


@functools.lru_cache(maxsize=16)
def _row_function(names: tuple[str, ...]) -> Callable[[Mapping[str, float | int | None]], list[float]]:
    # Generated from our own input names only (as string literals): no user text is compiled.
    plan = _plan(names)
    features = sorted({feature for _, feature, _ in plan})
    local = {feature: f"v{i}" for i, feature in enumerate(features)}
    # The signed log is written out inline, as in ``input_row``: a function call per value was 4%
    # of a replay's profile.
    lines = ["def row(s, _f=float, _c=_copysign, _l=_log1p):"]
    lines += [f"    {local[feature]} = s[{feature!r}]" for feature in features]
    items = []
    for i, (_name, feature, role) in enumerate(plan):
        v = local[feature]
        if role == _INDICATOR:
            items.append(f"(1.0 if {v} is None else 0.0)")
        elif role == _LOG:
            lines.append(f"    x{i} = _f({v})")
            items.append(f"_c(_l(abs(x{i})), x{i})")
        elif role == _NULLABLE_LOG:  # None is 0.0, whose signed log is 0.0
            lines.append(f"    x{i} = 0.0 if {v} is None else _f({v})")
            items.append(f"_c(_l(abs(x{i})), x{i})")
        elif role == _NULLABLE:
            items.append(f"(0.0 if {v} is None else _f({v}))")
        else:
            items.append(f"_f({v})")
    lines.append("    return [" + ", ".join(items) + "]")
    namespace: dict[str, object] = {"_copysign": math.copysign, "_log1p": math.log1p}
    exec(compile("\n".join(lines), "<model input row>", "exec"), namespace)
    return namespace["row"]  # type: ignore[return-value]


_INDICATOR, _PLAIN, _NULLABLE, _LOG, _NULLABLE_LOG = range(5)  # log-scaled roles last: ``>= _LOG``
_INF = math.inf


@functools.lru_cache(maxsize=16)
def _plan(names: tuple[str, ...]) -> tuple[tuple[str, str, int], ...]:
    """Per input name: (name, its feature, role), worked out once per input layout."""
    wanted = set(names)
    plan = []
    for name in names:
        feature = name.removesuffix(MISSING_SUFFIX)
        if name != feature:
            plan.append((name, feature, _INDICATOR))
            continue
        nullable = feature + MISSING_SUFFIX in wanted
        if is_log_scaled(name):
            plan.append((name, feature, _NULLABLE_LOG if nullable else _LOG))
        else:
            plan.append((name, feature, _NULLABLE if nullable else _PLAIN))
    return tuple(plan)


MONEY_PREFIXES = ("monetary", "revenue_", "avg_order_value", "balance_", "total_balance", "btyd_clv")
COUNT_PREFIXES = (
    "frequency", "orders_", "logins_", "sessions_", "tickets_", "call_center_", "open_tickets",
    "products_held", "distinct_features_used", "engagement_score", "btyd_expected_purchases",
)  # fmt: skip
AGE_PREFIXES = ("recency_days", "tenure_days", "days_since_")
_LOG_SCALED_PREFIXES = MONEY_PREFIXES + COUNT_PREFIXES + AGE_PREFIXES


def is_log_scaled(name: str) -> bool:
    """Money, counts and ages in days: the inputs the models see as sign(x) * log(1 + |x|).

    Amounts of money are heavy-tailed: without it, one large balance scaled by a young scaler's
    tiny variance swamps a linear model (seen as CLV predictions in the hundreds of millions).
    Counts and ages are heavy-tailed too. On raw scale a purchase-only history (every login,
    session and ticket input 0) is carried by a few inputs whose rare large values (a 300-day
    recency, 40 orders) dominate a young scaler; on log scale the first days and orders count
    most, as they do for churn (a hazard that falls with log recency).
    """
    return name.startswith(_LOG_SCALED_PREFIXES)
