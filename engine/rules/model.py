"""The rules model: a :class:`RuleSet` of families, each an ordered list of segments.

Objects here are immutable and built by ``engine.rules.loader`` from a YAML file (the file
format is described there and in ``README_RULES.md``). Everything a scheduler or an evaluator
needs per event is precomputed at load: each segment's effective exit condition, each family's
segment index, and the rule set's ``(variable, threshold)`` crossing points.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from engine.rules.expressions import Expression, Variables

SECONDS_PER_DAY = 86_400.0
ParamValue = int | float | str | bool


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of a family.

    ``enter`` must hold to enter; ``exit`` (None: the default ``not enter``) must hold to leave,
    and not before ``min_dwell_seconds`` of event time after entering. ``labels`` are
    ``(when, text)`` pairs: the first whose ``when`` holds names the segment for people, else
    ``label`` does. ``priority`` is the segment's index in its family (0 = checked first).
    """

    name: str
    enter: Expression
    exit: Expression | None
    min_dwell_seconds: float
    label: str
    labels: tuple[tuple[Expression, str], ...]
    priority: int
    exit_condition: Expression = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exit_condition", self.exit or self.enter.negated())

    def label_for(self, variables: Variables) -> str:
        """The human-readable label for ``variables``: the first matching ``labels`` entry, else ``label``."""
        for when, text in self.labels:
            if when.evaluate(variables):
                return text
        return self.label

    def expressions(self) -> Iterator[Expression]:
        """Every expression of the segment: enter, effective exit, then the label conditions."""
        yield self.enter
        yield self.exit_condition
        for when, _ in self.labels:
            yield when


@dataclass(frozen=True, slots=True)
class Family:
    """A family of mutually exclusive segments, in priority order (first match wins)."""

    name: str
    description: str
    key_features: tuple[str, ...]
    segments: tuple[Segment, ...]
    _index: Mapping[str, Segment] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {segment.name: segment for segment in self.segments})

    def segment(self, name: str | None) -> Segment | None:
        """The segment called ``name``, or None if the family has none of that name."""
        return None if name is None else self._index.get(name)


def _crossing_points(families: tuple[Family, ...]) -> tuple[tuple[str, float | None], ...]:
    points: dict[tuple[str, float | None], None] = {}
    for family in families:
        for segment in family.segments:
            for expression in segment.expressions():
                points.update(dict.fromkeys(expression.crossing_points()))
    return tuple(points)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A loaded rules file.

    ``version`` is stamped on change events as ``rules_version``; ``fingerprint`` is the first 16
    hex digits of the SHA-256 of the file's bytes. ``crossing_points`` are the distinct
    ``(variable, threshold)`` pairs of every expression (threshold None: any change of the
    variable matters), used by ``engine.rules.evaluate.next_due``; ``names`` are all variables read.
    """

    version: str
    source: str
    params: Mapping[str, ParamValue]
    families: tuple[Family, ...]
    fingerprint: str
    crossing_points: tuple[tuple[str, float | None], ...] = field(init=False, repr=False, compare=False)
    names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "crossing_points", _crossing_points(self.families))
        names = frozenset(
            name
            for family in self.families
            for segment in family.segments
            for expression in segment.expressions()
            for name in expression.names
        )
        key_features = frozenset(name for family in self.families for name in family.key_features)
        object.__setattr__(self, "names", names | key_features)

    def family(self, name: str) -> Family | None:
        """The family called ``name``, or None."""
        for family in self.families:
            if family.name == name:
                return family
        return None

    @property
    def segment_count(self) -> int:
        """Segments over all families."""
        return sum(len(family.segments) for family in self.families)
