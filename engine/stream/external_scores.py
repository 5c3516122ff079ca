"""External batch scores (``score`` events) as the rules and change events see them.

A batch job (a nightly scikit-learn or warehouse model) publishes ``score`` events; the customer's
state keeps the latest per model (``features.state``), so they replay like every other part of
the record. The rules read them as ``score_<model>``; the engine's own scores take precedence
over an external one of the same name (the schema already rejects those names,
``engine.schemas.external_model_problem``; this keeps a later engine model from being shadowed).
Change events and ``segflow explain`` carry each external score with its version, its as-of
time (epoch ms) and ``"source": "external"``.
"""

from __future__ import annotations

from collections.abc import Mapping

from features.state import CustomerState

EXTERNAL_SOURCE = "external"


def external_values(state: CustomerState, taken: Mapping[str, float]) -> dict[str, float]:
    """The customer's external scores whose names are not in ``taken`` (the engine's own)."""
    return {name: entry[0] for name, entry in state.external_scores.items() if name not in taken}


def score_entry(name: str, value: float, state: CustomerState | None) -> dict[str, object]:
    """A score as a change event or an explanation carries it: the value, and for an external
    score (one whose stored value it is) its version, as-of time in epoch ms and source."""
    row: dict[str, object] = {"score": round(value, 6)}
    entry = None if state is None else state.external_scores.get(name)
    if entry is not None and round(entry[0], 6) == row["score"]:
        row |= {"version": entry[1], "as_of": round(entry[2] * 1000), "source": EXTERNAL_SOURCE}
    return row


def score_entries(scores: Mapping[str, float], state: CustomerState | None) -> dict[str, object]:
    """Every score of ``scores`` as ``score_entry`` gives it."""
    return {name: score_entry(name, value, state) for name, value in scores.items()}
