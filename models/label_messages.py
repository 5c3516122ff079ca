"""Resolved labels on the labels topic (schema v1): what workers send and the learner learns.

A message is a msgpack map, key = ``label_id``::

    {"schema": 1, "label_id": str, "customer_id": str, "model": str,
     "x": bytes (float32 model input in input-name order, models.pending.pack_row),
     "y_true": float, "y_pred": float, "holdout": bool,
     "made_ts": float, "due_ts": float, "resolved_ts": float,
     "partition": int (the events partition the label was made on)}

``label_id`` is stable across redeliveries (``make_label_id``: customer, model and the
prediction's event time in ms), so the learner drops copies of a label it already has. The
bytes are what ``engine.codecs.encode_msgpack`` makes of the same map (str as str, bytes as bin)
and ``engine.codecs.decode_msgpack`` reads them; they are encoded here with msgspec because
``models`` must not import ``engine``. Decoding is typed and strict: a message that is not
exactly this (a missing field, a wrong type, a non-finite number, an unknown schema) raises
``MalformedLabel`` and is never half-read. Unknown extra fields are ignored, so a later schema
can add fields without breaking this reader.
"""

from __future__ import annotations

import math
from array import array

import msgspec

from features.log_names import label as log_label
from models.labels import ResolvedLabel

LABEL_SCHEMA = 1


class MalformedLabel(ValueError):
    """Bytes that are not a schema-v1 label message; the message says why, in one line."""


class LabelMessage(msgspec.Struct, frozen=True):
    """One resolved label as it travels on the labels topic (fields in wire order)."""

    schema: int
    label_id: str
    customer_id: str
    model: str
    x: bytes
    y_true: float
    y_pred: float
    holdout: bool
    made_ts: float
    due_ts: float
    resolved_ts: float
    partition: int


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(LabelMessage)
_FLOATS = ("y_true", "y_pred", "made_ts", "due_ts", "resolved_ts")


def make_label_id(customer_id: str, model: str, made_ts: float) -> str:
    """``"<customer>|<model>|<made_ts in ms>"``: the same for every redelivery of one label."""
    return f"{customer_id}|{model}|{round(made_ts * 1000)}"


def label_message(customer_id: str, label: ResolvedLabel, due_ts: float, partition: int) -> LabelMessage:
    """The message of a label just resolved (``label.x`` is the stored float32 vector).

    ``due_ts`` is its prediction's due time (``PendingPrediction.due_ts``), which decides the
    model period the label is learned in. Raises ``ValueError`` when ``label.x`` is not bytes.
    """
    if not isinstance(label.x, bytes):
        raise ValueError("a label message carries the stored float32 input (bytes), not a dict")
    return LabelMessage(
        schema=LABEL_SCHEMA,
        label_id=make_label_id(customer_id, label.model, label.made_ts),
        customer_id=customer_id,
        model=label.model,
        x=label.x,
        y_true=float(label.y_true),
        y_pred=float(label.y_pred),
        holdout=bool(label.holdout),
        made_ts=float(label.made_ts),
        due_ts=float(due_ts),
        resolved_ts=float(label.resolved_ts),
        partition=int(partition),
    )


def encode_label(message: LabelMessage) -> bytes:
    """The message's bytes on the topic (a msgpack map)."""
    return _ENCODER.encode(message)


def label_key(message: LabelMessage) -> bytes:
    """The message's Kafka key: its label id."""
    return message.label_id.encode()


def _bad(message: LabelMessage, problem: str) -> MalformedLabel:
    """The error about a decoded label: its id (as logs name customers) and the problem."""
    return MalformedLabel(f"label {log_label(message.label_id)}: {problem}")


def decode_label(raw: bytes | None) -> LabelMessage:
    """The message in ``raw``; raises ``MalformedLabel`` with the reason for anything else."""
    if not raw:
        raise MalformedLabel("empty label message")
    try:
        message = _DECODER.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise MalformedLabel(f"bad label message: {exc}") from None
    if message.schema != LABEL_SCHEMA:
        raise MalformedLabel(f"label schema {message.schema} (this build reads {LABEL_SCHEMA})")
    if not message.label_id or not message.model:
        raise MalformedLabel("label message without a label_id or model")
    for name in _FLOATS:
        if not math.isfinite(getattr(message, name)):
            raise _bad(message, f"{name} is not finite")
    if message.partition < 0:
        raise _bad(message, f"negative partition {message.partition}")
    if len(message.x) % 4:
        raise _bad(message, f"x is not float32 values ({len(message.x)} bytes)")
    values = array("f")
    values.frombytes(message.x)
    if not all(map(math.isfinite, values)):  # one NaN learned would poison the model for good
        raise _bad(message, "x has a value that is not finite")
    return message
