"""The decoded, mutable parts of one customer record while a step runs on it.

A record's extras (memberships, prediction book, scores, the moment last judged, the next due
moment, the group attribute, the activation ledger) are decoded once per step and written back
only if they changed: encoding is deterministic, so an unchanged part's stored bytes stand.
"""

from __future__ import annotations

from engine.activation.ledger import ACTIONS_EXTRA, ActionLedger
from engine.codecs import decode_msgpack, encode_msgpack
from engine.rules.evaluate import Membership
from engine.segmentation import RuleVariables
from features.redis_store import CustomerRecord
from features.state import CustomerState
from models.label_messages import LabelMessage
from models.pending import PredictionBook

MEMBERSHIP_EXTRA, BOOK_EXTRA, SCORES_EXTRA, EVALUATED_EXTRA, GROUP_EXTRA = "m", "p", "sc", "t", "g"
DUE_EXTRA = "d"
UNKNOWN_DUE = object()
"""``Working.due_at`` of a record stored before due moments were kept in it."""


class Working:
    """The decoded, mutable parts of one record for the length of a step."""

    def __init__(self, record: CustomerRecord) -> None:
        extras = record.extras
        self._stored = extras
        self.members_changed = False
        raw_members = decode_msgpack(extras[MEMBERSHIP_EXTRA]) if MEMBERSHIP_EXTRA in extras else {}
        self.memberships = {f: Membership(m[0], m[1]) for f, m in raw_members.items() if isinstance(m, list)}
        self.initial_segments = {f: m.segment for f, m in self.memberships.items()}
        self.book = PredictionBook.decode(extras.get(BOOK_EXTRA))
        self.scores: dict[str, float] = decode_msgpack(extras[SCORES_EXTRA]) if SCORES_EXTRA in extras else {}
        self.evaluated_at: float | None = (
            decode_msgpack(extras[EVALUATED_EXTRA]) if EVALUATED_EXTRA in extras else None
        )
        self._stored_due: object = decode_msgpack(extras[DUE_EXTRA]) if DUE_EXTRA in extras else UNKNOWN_DUE
        self.due_at: object = self._stored_due
        """The next moment time alone may change something (None: never; UNKNOWN_DUE: not stored)."""
        self.new_labels: list[LabelMessage] = []
        """Labels resolved in this step: they leave through the outbox for the labels topic."""
        self.group = extras.get(GROUP_EXTRA)
        self.actions = ActionLedger(extras.get(ACTIONS_EXTRA))
        """Action decisions, held sends and open outcome windows (``engine.activation.ledger``)."""
        self.last_variables: tuple[tuple[float, int, int], RuleVariables] | None = None
        """The variables last evaluated, keyed by (as_of, events, late events): finish reuses them."""

    def extras(self) -> dict[str, bytes]:
        """The extras to write: those that changed (or were never stored); the rest stay as stored.

        Encoding is deterministic, so an unchanged part's stored bytes are what re-encoding it
        would give: skipping it changes nothing in Redis but the work.
        """
        stored = self._stored
        extras = {
            SCORES_EXTRA: encode_msgpack(self.scores),
            EVALUATED_EXTRA: encode_msgpack(self.evaluated_at),
        }
        if self.members_changed or MEMBERSHIP_EXTRA not in stored:
            extras[MEMBERSHIP_EXTRA] = encode_msgpack(
                {f: [m.segment, m.since] for f, m in sorted(self.memberships.items())}
            )
        if self.book.changed or BOOK_EXTRA not in stored:
            extras[BOOK_EXTRA] = self.book.encode()
        if self.group is not None and stored.get(GROUP_EXTRA) != self.group:
            extras[GROUP_EXTRA] = self.group
        if self.actions.changed:
            extras[ACTIONS_EXTRA] = self.actions.encode()
        if self.due_at is not UNKNOWN_DUE and self.due_at != self._stored_due:
            extras[DUE_EXTRA] = encode_msgpack(self.due_at)
        return extras

    def placements(self) -> dict[str, str | None]:
        """Per family the customer is or was in, the segment they are counted in now (None: none).

        Every written customer's placements go to the aggregates, changed or not: placements are
        absolute and idempotent, so a batch whose aggregate update was lost is healed by the
        customer's next commit.
        """
        placements: dict[str, str | None] = dict.fromkeys(self.initial_segments)
        for family, membership in self.memberships.items():
            placements[family] = membership.segment
        return placements

    def ticked_to(self, state: CustomerState | None) -> float | None:
        """The moment a tick judged the customer at, when later than their newest event."""
        if state is None or self.evaluated_at is None or self.evaluated_at <= state.last_ts:
            return None
        return self.evaluated_at
