"""Decision outcomes on the labels topic (schema v1): what the learner tallies for experiments.

Workers emit one per measured action decision (sent, or withheld for a control group) when its
outcome is known: a conversion inside the attribution window, or the window closing without one.
The learner buffers them under their **period** like labels (``due_ts``: the moment the outcome
was known, in event time), drops copies by ``outcome_id`` (the decision's id: the same for every
redelivery), and when it seals version k adds every outcome of period k to the **tallies** that
the snapshot of version k carries. Those tallies are what a bandit's allocation and the lift
metrics read: exactly once, in event time, and the same for every worker and replay.

A message is a msgpack map, key = ``outcome_id``::

    {"schema": 1, "kind": "outcome", "outcome_id": str, "action": str, "experiment": str ("" for
     none), "policy": str, "group": "treated" | "control" | "global_control", "variant": str (""
     for none), "segment": str, "converted": bool, "revenue": float, "due_ts": float}

Label messages carry no ``kind``; ``message_kind`` tells the two apart without decoding twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

from models.label_messages import LabelMessage, decode_label, encode_label

OUTCOME_SCHEMA = 1
OUTCOME_KIND = "outcome"
GROUPS = ("treated", "control", "global_control")


class MalformedOutcome(ValueError):
    """Bytes that are not a schema-v1 outcome message; the message says why, in one line."""


class OutcomeMessage(msgspec.Struct, frozen=True):
    """One decision's outcome as it travels on the labels topic (fields in wire order)."""

    schema: int
    kind: str
    outcome_id: str
    action: str
    experiment: str
    policy: str
    group: str
    variant: str
    segment: str
    converted: bool
    revenue: float
    due_ts: float


class _Kind(msgspec.Struct):
    kind: str = "label"


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(OutcomeMessage)
_KIND = msgspec.msgpack.Decoder(_Kind)


def message_kind(raw: bytes | None) -> str:
    """``"outcome"`` for an outcome message, else ``"label"`` (also for bytes that are neither:
    the label reader then says why they are malformed)."""
    if not raw:
        return "label"
    try:
        return _KIND.decode(raw).kind
    except msgspec.DecodeError:
        return "label"


def encode_outcome(message: OutcomeMessage) -> bytes:
    """The message's bytes on the topic (a msgpack map)."""
    return _ENCODER.encode(message)


def decode_outcome(raw: bytes) -> OutcomeMessage:
    """The message in ``raw``; raises ``MalformedOutcome`` with the reason for anything else."""
    try:
        message = _DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedOutcome(f"bad outcome message: {exc}") from None
    if message.schema != OUTCOME_SCHEMA:
        raise MalformedOutcome(f"outcome schema {message.schema} (this build reads {OUTCOME_SCHEMA})")
    if not message.outcome_id or not message.action:
        raise MalformedOutcome("outcome message without an outcome_id or action")
    if message.group not in GROUPS:
        raise MalformedOutcome(f"outcome {message.outcome_id}: unknown group {message.group!r}")
    if not (math.isfinite(message.due_ts) and math.isfinite(message.revenue)):
        raise MalformedOutcome(f"outcome {message.outcome_id}: due_ts or revenue is not finite")
    return message


TallyKey = tuple[str, str, str, str, str]
"""(action, experiment, segment, group, variant); "" for no experiment or variant."""


def tally_key(message: OutcomeMessage) -> TallyKey:
    """Where an outcome is counted."""
    return (message.action, message.experiment, message.segment, message.group, message.variant)


@dataclass(frozen=True, slots=True)
class OutcomeTally:
    """Every outcome of one (action, experiment, segment, group, variant) sealed so far."""

    action: str
    experiment: str
    segment: str
    group: str
    variant: str
    outcomes: int
    conversions: int
    revenue: float

    def to_wire(self) -> list[object]:
        """The snapshot's form: a flat list, fields in declaration order."""
        return [
            self.action,
            self.experiment,
            self.segment,
            self.group,
            self.variant,
            self.outcomes,
            self.conversions,
            self.revenue,
        ]

    @classmethod
    def from_wire(cls, row: list[Any]) -> OutcomeTally:
        """Inverse of ``to_wire``."""
        action, experiment, segment, group, variant, outcomes, conversions, revenue = row
        counts = int(outcomes), int(conversions), float(revenue)
        return cls(str(action), str(experiment), str(segment), str(group), str(variant), *counts)


def message_id(message: LabelMessage | OutcomeMessage) -> str:
    """A labels-topic message's id in the learner's buffer: the label id, or the outcome id
    marked apart from label ids (``"<customer>|<model>|<ms>"``)."""
    if isinstance(message, OutcomeMessage):
        return f"outcome|{message.outcome_id}"
    return message.label_id


def encode_message(message: LabelMessage | OutcomeMessage) -> bytes:
    """A labels-topic message's bytes."""
    return encode_outcome(message) if isinstance(message, OutcomeMessage) else encode_label(message)


def decode_message(raw: bytes) -> LabelMessage | OutcomeMessage:
    """A labels-topic message of either kind (``MalformedLabel``/``MalformedOutcome`` otherwise)."""
    return decode_outcome(raw) if message_kind(raw) == OUTCOME_KIND else decode_label(raw)
