"""The rules model: a :class:`RuleSet` of families, each an ordered list of segments.

Objects here are immutable and built by ``engine.rules.loader`` from a YAML file (the file
format is described there and in ``README_RULES.md``). Everything a scheduler or an evaluator
needs per event is precomputed at load: each segment's effective exit condition and label
function, each family's segment index and first-entering function (one call of generated code
for all its enter conditions), the rule set's ``(variable, threshold)`` crossing points, the
variables its expressions read and the families with a dwell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from engine.activation.program import NO_ACTIVATION, ActivationProgram
from engine.rules.expressions import Expression, Variables, first_match

SECONDS_PER_DAY = 86_400.0
ParamValue = int | float | str | bool


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of a family.

    ``enter`` must hold to enter; ``exit`` (None: the default ``not enter``) must hold to leave,
    and not before ``min_dwell_seconds`` of event time after entering. ``labels`` are
    ``(when, text)`` pairs: the first whose ``when`` holds names the segment for people, else
    ``label`` does. ``priority`` is the segment's index in its family (0 = checked first).
    ``label_of(variables)`` is :meth:`label_for` as one call of generated code.
    """

    name: str
    enter: Expression
    exit: Expression | None
    min_dwell_seconds: float
    label: str
    labels: tuple[tuple[Expression, str], ...]
    priority: int
    on_enter: tuple[str, ...] = ()
    """Actions (``RuleSet.activation``) a customer's entry into the segment triggers, in order."""
    exit_condition: Expression = field(init=False, repr=False, compare=False)
    label_of: Callable[[Variables], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exit_condition", self.exit or self.enter.negated())
        object.__setattr__(self, "label_of", first_match(self.labels, self.label))

    def label_for(self, variables: Variables) -> str:
        """The human-readable label for ``variables``: the first matching ``labels`` entry, else ``label``."""
        return self.label_of(variables)

    def expressions(self) -> Iterator[Expression]:
        """Every expression of the segment: enter, effective exit, then the label conditions."""
        yield self.enter
        yield self.exit_condition
        for when, _ in self.labels:
            yield when


@dataclass(frozen=True, slots=True)
class Family:
    """A family of mutually exclusive segments, in priority order (first match wins).

    ``first_entering(variables, before)`` is the first segment of priority < ``before`` whose
    ``enter`` holds, or None.
    """

    name: str
    description: str
    key_features: tuple[str, ...]
    segments: tuple[Segment, ...]
    _index: Mapping[str, Segment] = field(init=False, repr=False, compare=False)
    first_entering: Callable[[Variables, int], Segment | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {segment.name: segment for segment in self.segments})
        cases = [(segment.enter, segment) for segment in self.segments]
        object.__setattr__(self, "first_entering", first_match(cases, None, bounded=True))

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
    variable matters), used by ``engine.rules.evaluate.next_due``, and ``crossing_names`` the same
    points grouped by variable, in first-seen order; ``names`` are all variables read,
    ``expression_names`` those read by expressions (``names`` without key features only copied
    into change events), ``dwell_families`` the families with a segment that has a dwell.
    """

    version: str
    source: str
    params: Mapping[str, ParamValue]
    families: tuple[Family, ...]
    fingerprint: str
    labels: Mapping[str, float] = field(default_factory=dict)
    """The label horizons the file names (``churn_days``, ``clv_days``, ``propensity_days``):
    they override the ``SEGFLOW_*`` settings of the same name for the workers and the learner."""
    activation: ActivationProgram = NO_ACTIVATION
    """Actions, experiments, caps and quiet hours (the rules file's ``activation`` section)."""
    crossing_points: tuple[tuple[str, float | None], ...] = field(init=False, repr=False, compare=False)
    crossing_names: tuple[tuple[str, tuple[float | None, ...]], ...] = field(
        init=False, repr=False, compare=False
    )
    names: frozenset[str] = field(init=False, repr=False, compare=False)
    expression_names: frozenset[str] = field(init=False, repr=False, compare=False)
    dwell_families: tuple[Family, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "crossing_points", _crossing_points(self.families))
        by_name: dict[str, list[float | None]] = {}
        for name, threshold in self.crossing_points:
            by_name.setdefault(name, []).append(threshold)
        object.__setattr__(self, "crossing_names", tuple((n, tuple(t)) for n, t in by_name.items()))
        names = frozenset(
            name
            for family in self.families
            for segment in family.segments
            for expression in segment.expressions()
            for name in expression.names
        )
        key_features = frozenset(name for family in self.families for name in family.key_features)
        object.__setattr__(self, "names", names | key_features)
        object.__setattr__(self, "expression_names", names)
        dwell = tuple(f for f in self.families if any(s.min_dwell_seconds > 0 for s in f.segments))
        object.__setattr__(self, "dwell_families", dwell)

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
