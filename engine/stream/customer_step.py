"""One customer's part of a batch: features, labels, scores, segments, and what to commit.

``CustomerStep.apply_events`` runs a customer's fresh events in order; ``CustomerStep.tick``
moves a customer on in event time when something of theirs falls due without any event (a
label matures, a recency threshold or a dwell ends). Both are plain computations over the
record read from Redis; the pipeline commits the returned write (compare-and-set) and only
then lets the models learn the labels it carries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.codecs import decode_msgpack, encode_msgpack
from engine.output import SegmentChange
from engine.rules.evaluate import changed_decisions, next_due
from engine.rules.model import RuleSet
from engine.schemas import attribute_text
from engine.segmentation import QUINTILE_NAMES, SCORE_PREFIX, PopulationCuts, RuleVariables, TimeModel
from engine.stream.change_builder import ChangeBuilder
from engine.stream.lifetime_inputs import model_row, reads_lifetime
from engine.stream.model_gate import VersionModels
from engine.stream.rule_scores import lifetime_names, lifetime_scores, rule_scores
from engine.stream.working import (
    BOOK_EXTRA,
    DUE_EXTRA,
    EVALUATED_EXTRA,
    GROUP_EXTRA,
    MEMBERSHIP_EXTRA,
    SCORES_EXTRA,
    UNKNOWN_DUE,
    Working,
)
from features.catalogue import snapshot
from features.config import FeatureConfig
from features.redis_store import CustomerRecord
from features.state import CustomerState
from models.evaluation import is_holdout
from models.label_messages import LabelMessage, label_message
from models.labels import LabelRules, ResolvedLabel
from models.pending import pack_row

__all__ = [
    "BOOK_EXTRA",
    "DUE_EXTRA",
    "EVALUATED_EXTRA",
    "GROUP_EXTRA",
    "MEMBERSHIP_EXTRA",
    "SCORES_EXTRA",
    "CustomerStep",
    "Scored",
    "StepConfig",
]
MAX_TICK_STEPS = 64
NO_CUTS = PopulationCuts()

ScoreRequest = tuple[VersionModels, list[float]]
"""What a step yields when it needs scores: the model snapshot to score with and one input row."""
Scored = Generator[ScoreRequest, dict[str, float], Any]
"""A step that yields score requests and is sent back each row's scores, model name -> score.

Steps are generators so that the pipeline can run every customer of a batch up to the point
where it needs scores, score all those rows at once (one matrix product per bank), and send the
scores back: each customer's events still run strictly in order, exactly as one at a time.
"""


@dataclass(frozen=True, slots=True)
class StepConfig:
    """The knobs of a customer step (the app derives them from settings)."""

    features: FeatureConfig
    labels: LabelRules
    input_names: tuple[str, ...]
    holdout_fraction: float = 0.1
    prediction_interval_seconds: float = 7 * 86_400.0
    rescore_seconds: float = 7 * 86_400.0
    group_attribute: str = ""
    """An event attribute (e.g. a region) whose latest value is kept, to report scores by group."""
    lifetime_horizon_days: float = 90.0
    """N of the BTYD scores ``expected_purchases_<N>d`` and ``clv_<N>d`` (``rule_scores``)."""


@dataclass(slots=True)
class StepResult:
    """What one customer's step produced."""

    labels: list[LabelMessage] = field(default_factory=list)
    partition: int = 0
    due: float | None = None


class CustomerStep:
    """Applies events and time to one customer's record at a time."""

    def __init__(
        self,
        config: StepConfig,
        rules: Callable[[], RuleSet],
        cuts: Callable[[float], PopulationCuts],
        models: Callable[[float], VersionModels],
        clock: Callable[[], float],
        next_cuts_moment: Callable[[float], float] | None = None,
    ) -> None:
        self.config = config
        self._rules = rules
        self._cuts = cuts
        self._models = models
        self._next_cuts_moment = next_cuts_moment or (lambda moment: moment + 86_400.0)
        self._clock = clock
        self._changes = ChangeBuilder(clock)
        self._population_readers: dict[str, tuple[bool, bool]] = {}
        self._horizon = config.lifetime_horizon_days
        self._lifetime_inputs = reads_lifetime(config.input_names)

    def variables(
        self, customer_id: str, state: CustomerState, scores: dict[str, float], as_of: float | None
    ):  # type: ignore[no-untyped-def]
        """The rules' variables of a customer at ``as_of`` (default: their latest event)."""
        features = snapshot(customer_id, state, self.config.features, as_of)
        return RuleVariables(
            features, scores, self._cuts_at(state.last_ts if as_of is None else as_of), state
        )

    @staticmethod
    def _resolved(
        customer_id: str, work: Working, partition: int, labels: Sequence[tuple[float, ResolvedLabel]]
    ) -> None:
        for due, label in labels:
            work.new_labels.append(label_message(customer_id, label, due, partition))

    def _score(self, customer_id: str, state: CustomerState, as_of: float) -> Scored:
        """Features, model row and scores at ``as_of``; the rules' scores and population cuts too
        (the BTYD scores are served once, for the rules and, when asked for, the model inputs)."""
        features = snapshot(customer_id, state, self.config.features, as_of)
        cuts = self._cuts_at(as_of)
        lifetime = lifetime_scores(cuts.lifetime, state, as_of, self._horizon)
        inputs = lifetime if self._lifetime_inputs else None
        row = model_row(features.raw, self.config.input_names, inputs, self._horizon)
        models = self._models(as_of)
        all_scores = yield models, row
        scores = rule_scores(all_scores, models.ready, lifetime, state)
        return features, row, all_scores, models, cuts, scores

    def apply_event(
        self,
        record: CustomerRecord,
        state: CustomerState,
        work: Working,
        positioned,  # type: ignore[no-untyped-def]
    ) -> Scored:
        """Labels, scores and segments after ``positioned`` was applied to ``state``.

        Every model predicts for the prediction book (so that even an untrained one gets its
        first labels); the rules and change events see the scores of ready models only
        (``models.readiness``: a warming-up model's score reads as None), and the BTYD ones.
        """
        event = positioned.event
        cid = record.customer_id
        group_attribute = self.config.group_attribute
        if group_attribute and group_attribute in event.attrs:
            work.group = encode_msgpack(attribute_text(event.attrs[group_attribute]))
        self._resolved(cid, work, positioned.partition, work.book.on_event(self.config.labels, event))
        features, row, all_scores, models, cuts, scores = yield from self._score(cid, state, state.last_ts)
        lateness = self.config.features.allowed_lateness_seconds
        stored_x: bytes | None = None
        holdout = False
        for name, value in all_scores.items():
            if work.book.may_predict(name, event.ts, self.config.prediction_interval_seconds, lateness):
                if stored_x is None:  # the first prediction kept at this event
                    stored_x = pack_row(row)
                    holdout = is_holdout(cid, self.config.holdout_fraction)
                work.book.start(self.config.labels, name, event.ts, stored_x, value, holdout)
        work.scores = {name: round(value, 6) for name, value in scores.items()}
        variables = RuleVariables(features, scores, cuts, state)
        cause = {"event_id": event.event_id, "partition": positioned.partition, "offset": positioned.offset}
        # Out of order within the lateness, an event is judged at the customer's newest moment.
        work.evaluated_at = state.last_ts
        work.last_variables = (_state_key(state, state.last_ts), variables)
        work.due_at = UNKNOWN_DUE
        return self._decide(cid, work, models, variables, row, state.last_ts, cause, positioned.offset)

    def finish(
        self, record: CustomerRecord, state: CustomerState, work: Working, partition: int
    ) -> StepResult:
        """The write and index updates after a customer's events or tick."""
        due = self.due_of(record.customer_id, state, work)
        return StepResult(partition=partition, labels=list(work.new_labels), due=due)

    def due_of(self, customer_id: str, state: CustomerState, work: Working) -> float | None:
        """The customer's next moment at which time alone may change something (kept in ``work``)."""
        rules = self._rules()
        as_of = max(work.evaluated_at or state.last_ts, state.last_ts)
        reused = work.last_variables
        if reused is not None and reused[0] == _state_key(state, as_of):
            variables = reused[1]  # the last event's or tick step's: same state, same moment
        else:
            variables = self.variables(customer_id, state, work.scores, as_of)
        time_model = TimeModel(variables, self.config.features, as_of, self.config.rescore_seconds)
        rules_due = next_due(
            rules, variables, work.memberships, as_of, time_model.crossing, time_model.earliest
        )
        candidates = (
            rules_due,
            work.book.next_due(),
            self._cold_due(variables, as_of),
            work.actions.next_due(),
        )
        work.due_at = min((t for t in candidates if t is not None), default=None)
        return work.due_at

    def catch_up(
        self,
        customer_id: str,
        state: CustomerState,
        work: Working,
        partition: int,
        ts: float,
        watermark: float | None,
    ) -> Scored:
        """Before an event at ``ts``: move the customer on to ``ts`` as a tick would have, and
        mature the labels due before ``watermark``, the partition's watermark before the event.

        Only when something of theirs falls due by then (their stored next due moment), so an
        event costs nothing extra unless time alone had something to change first.
        """
        if work.due_at is UNKNOWN_DUE:
            self.due_of(customer_id, state, work)
        if work.due_at is None or work.due_at > ts:  # type: ignore[operator]
            return []
            yield  # a generator like every step
        # Final by the partition's watermark, or by the customer's own lateness: no event of theirs
        # older than ts minus the lateness can be accepted any more.
        own = ts - self.config.features.allowed_lateness_seconds
        labels_before = own if watermark is None else max(watermark, own)
        return (yield from self.tick(customer_id, state, work, partition, ts, labels_before))

    def _decide(
        self,
        customer_id: str,
        work: Working,
        models: VersionModels,
        variables: RuleVariables,
        row: list[float],
        as_of: float,
        cause: dict[str, object],
        position: int | str,
    ) -> list[SegmentChange]:
        rules = self._rules()
        changes = []
        for decision in changed_decisions(rules, variables, work.memberships, as_of):
            membership = decision.membership()
            work.members_changed = True
            if membership is None:
                work.memberships.pop(decision.family, None)
            else:
                work.memberships[decision.family] = membership
            family = rules.family(decision.family)
            assert family is not None
            changes.append(
                self._changes.change(
                    customer_id, rules, family, decision, variables, models, row, as_of, cause, position
                )
            )
        return changes

    def tick(
        self,
        customer_id: str,
        state: CustomerState,
        work: Working,
        partition: int,
        watermark: float,
        labels_before: float | None = None,
    ) -> Scored:
        """Move a customer with no new event on to ``watermark``: matured labels, due segments.

        Segments are judged at every due moment up to and including ``watermark``; labels mature
        when due strictly before ``labels_before`` (default: ``watermark``), the partition's
        watermark: no event that could still count towards them can be accepted any more.
        Before each of a customer's events the pipeline moves them on the same way (to the
        event's time, labels to the watermark before it), so whether a tick ran first never
        changes a decision or a label.
        """
        mature = watermark if labels_before is None else labels_before
        ripe = work.book.on_time(self.config.labels, math.nextafter(mature, -math.inf))
        self._resolved(customer_id, work, partition, ripe)
        work.due_at = UNKNOWN_DUE  # what falls due next is recomputed when asked
        rules = self._rules()
        changes: list[SegmentChange] = []
        as_of = max(work.evaluated_at or state.last_ts, state.last_ts)
        for _ in range(MAX_TICK_STEPS):
            variables = self.variables(customer_id, state, work.scores, as_of)
            time_model = TimeModel(variables, self.config.features, as_of, self.config.rescore_seconds)
            due = next_due(
                rules, variables, work.memberships, as_of, time_model.crossing, time_model.earliest
            )
            if due is None or due > watermark:
                work.last_variables = (_state_key(state, as_of), variables)
                break
            as_of = due
            features, row, _, models, cuts, scores = yield from self._score(customer_id, state, as_of)
            work.scores = {name: round(value, 6) for name, value in scores.items()}
            variables = RuleVariables(features, scores, cuts, state)
            due_ms = round(due * 1000)
            cause: dict[str, object] = {
                "tick": due_ms,
                "partition": partition,
                "watermark": round(watermark * 1000),
            }
            changes += self._decide(customer_id, work, models, variables, row, as_of, cause, f"t{due_ms}")
            work.evaluated_at = as_of
        return changes

    def _cold_due(self, variables: RuleVariables, as_of: float) -> float | None:
        """When a customer judged without population cuts (none sealed yet) is judged again.

        Quintiles have no value before the first sealed snapshot with a ranked customer; a
        customer who has bought is then re-judged when the next day's snapshot applies, found
        through the due index like every other time-driven moment.
        """
        if variables.state.orders <= 0 or not self.reads_population():
            return None
        cuts = variables.cuts
        if cuts.frequency and (cuts.lifetime is not None or not self._readers()[1]):
            return None
        return self._next_cuts_moment(as_of)

    def _cuts_at(self, moment: float) -> PopulationCuts:
        """The population cuts a decision at ``moment`` reads (none when no rule reads them)."""
        return self._cuts(moment) if self.reads_population() else NO_CUTS

    def reads_population(self) -> bool:
        """Whether decisions read population snapshots: the rules in force read RFM quintiles or
        BTYD scores, or the models read the BTYD inputs (``engine.stream.lifetime_inputs``)."""
        return self._lifetime_inputs or self._readers()[0]

    def _readers(self) -> tuple[bool, bool]:
        """(reads population snapshots, reads BTYD scores) of the rules in force."""
        rules = self._rules()
        reads = self._population_readers.get(rules.fingerprint)
        if reads is None:
            names = {n for f in rules.families for s in f.segments for e in s.expressions() for n in e.names}
            lifetime = bool(names & {SCORE_PREFIX + n for n in lifetime_names(self._horizon)})
            reads = self._population_readers[rules.fingerprint] = (
                bool(names & set(QUINTILE_NAMES)) or lifetime,
                lifetime,
            )
        return reads

    def placements(self, record: CustomerRecord) -> dict[str, str | None]:
        """Per family, the segment ``record`` is counted in (from its stored memberships)."""
        raw = record.extras.get(MEMBERSHIP_EXTRA)
        members = decode_msgpack(raw) if raw is not None else {}
        return {f: m[0] for f, m in members.items() if isinstance(m, list)}

    def working(self, record: CustomerRecord) -> Working:
        """The decoded mutable parts of ``record`` for one step."""
        return Working(record)


def _state_key(state: CustomerState, as_of: float) -> tuple[float, int, int]:
    """What a customer's variables depend on besides the rules: the moment and the state's counts."""
    return (as_of, state.events, state.late_dropped)
