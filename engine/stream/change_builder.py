"""Segment-change events as a customer step emits them: scores with top contributions, reasons."""

from __future__ import annotations

from collections.abc import Callable

from engine.output import SegmentChange, change_id
from engine.rules.evaluate import FamilyDecision
from engine.rules.model import Family, RuleSet
from engine.segmentation import SCORE_PREFIX, RuleVariables
from engine.stream.external_scores import score_entries
from engine.stream.model_gate import VersionModels

TOP_CONTRIBUTIONS = 3


class ChangeBuilder:
    """Builds the change event of one family decision (top contributions of the models it reads)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._family_models: dict[tuple[str, str], tuple[str, ...]] = {}

    def models_of(self, rules: RuleSet, family: Family) -> tuple[str, ...]:
        """The models whose scores ``family``'s rules read (their change events carry top contributions)."""
        key = (rules.fingerprint, family.name)
        if key not in self._family_models:
            names = {n for s in family.segments for e in s.expressions() for n in e.names}
            self._family_models[key] = tuple(
                sorted(n[len(SCORE_PREFIX) :] for n in names if n.startswith(SCORE_PREFIX))
            )
        return self._family_models[key]

    def change(
        self,
        customer_id: str,
        rules: RuleSet,
        family: Family,
        decision: FamilyDecision,
        variables: RuleVariables,
        models: VersionModels,
        row: list[float],
        as_of: float,
        cause: dict[str, object],
        position: int | str,
    ) -> SegmentChange:
        """The change event of ``decision`` at ``as_of``, caused by ``cause`` at ``position``."""
        partition = int(cause["partition"])  # type: ignore[call-overload]
        scores = score_entries(variables.scores, variables.state)
        for name in self.models_of(rules, family):
            top = models.contributions(name, row, TOP_CONTRIBUTIONS) if name in variables.scores else None
            if top is not None:
                scores[name] = {
                    "score": round(variables.scores[name], 6),
                    "top": [[feature, round(value, 6)] for feature, value in top],
                }
        key_features = {name: _plain(variables[name]) for name in family.key_features}
        return SegmentChange(
            change_id=change_id(
                customer_id, family.name, decision.previous, decision.segment, partition, position
            ),
            customer_id=customer_id,
            family=family.name,
            from_segment=decision.previous,
            to_segment=decision.segment,
            event_ts_ms=round(as_of * 1000),
            emitted_ts_ms=round(self._clock() * 1000),
            rules_version=rules.version,
            population_version=variables.cuts.version_label,
            model_version=models.label,
            reason=decision.reason,
            features=key_features,
            cause=cause,
            label=decision.label,
            scores=scores,
        )


def _plain(value: object) -> object:
    return round(value, 6) if isinstance(value, float) else value
