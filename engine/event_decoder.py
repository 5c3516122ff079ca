"""Schema-v1 events decoded and validated in C (msgspec), with the slow path's dead-letter reasons.

``decode_event(raw, currency)`` answers exactly what
``validate_event(decode_payload(raw), currency=currency)`` answers, for every input: an equal
``Event`` (same ``ts`` float, same attrs in the same order with the same Python types), or an
``InvalidEvent`` with the same reason text.

How: a typed ``msgspec`` decode of the whole envelope (msgpack, or JSON when the bytes start
like a JSON object) into ``_WireEvent``, then the per-type attribute checks on the decoded map,
then the ``Event``. That fast path only ever *accepts*; whenever it cannot vouch for an input
(a msgspec error, a failed check, or anything the struct does not express) the input goes to the
slow path, which decodes it again and produces the precise reason. Valid events are decoded
once; only invalid or unusual ones pay twice.

The fast path is sound because everything it accepts, the slow path accepts the same way:

* msgspec yields exact ``str``/``int``/``float``/``bool``/``None`` objects and never coerces
  (a bool is not an int, ``1.0`` is not ``1``), validates UTF-8 as strictly as Python, lets the
  last of duplicate keys win and keeps first-insertion order, as ``dict`` does;
* the struct forbids unknown top-level fields and takes attrs values as scalars only, so nested
  values, msgpack bin/ext and non-string keys (where msgpack-python and msgspec differ) are
  left to the slow path;
* integers are bounded to int64 (the slow path raises on huge JSON integers; those go there);
* msgspec's JSON grammar is the standard one, a subset of what ``json.loads`` accepts (no
  ``NaN``/``Infinity``; out-of-range floats are errors rather than ``inf``), with the same
  correctly rounded floats;
* the ts and attribute checks below repeat ``engine.schemas`` (RFC 3339 strings go through the
  same ``parse_ts``), driven by the same ``ATTRIBUTE_SPECS``; a ``score`` event's own checks
  are the same ``score_problem``.

``tests/unit/test_event_decoder.py`` checks the equivalence on generated valid, mutated and
garbage inputs.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal

import msgspec

from engine.codecs import decode_payload
from engine.schemas import (
    ATTRIBUTE_SPECS,
    EVENT_SCHEMA_VERSION,
    MAX_ID_LENGTH,
    MAX_TS_MS,
    SECONDS_LIMIT,
    InvalidEvent,
    parse_ts,
    score_problem,
    validate_event,
)
from features.event import EVENT_TYPES, Event

__all__ = ["decode_event"]

# Bytes a JSON object can start with (as in ``engine.codecs``); anything else is tried as msgpack.
# The choice only picks a decoder: either one fails on data that is not its kind of map.
_JSON_FIRST_BYTES: Final = frozenset(b"{ \t\r\n")

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
# int64: msgspec decodes larger JSON integers too, but the slow path raises on some of them.
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Scalar = str | _Int | float | bool | None
_EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]  # Literal of the tuple's strings
_Version = Literal[EVENT_SCHEMA_VERSION]  # type: ignore[valid-type]


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The schema-v1 envelope as msgspec decodes it (the fields ``validate_event`` reads)."""

    event_id: _Id
    customer_id: _Id
    type: _EventType
    ts: _Int | float | str
    v: _Version = EVENT_SCHEMA_VERSION
    attrs: dict[str, _Scalar] | None = None


_msgpack_decoder: Final = msgspec.msgpack.Decoder(_WireEvent)
_json_decoder: Final = msgspec.json.Decoder(_WireEvent)

# Per type: (name, is a string, required, allowed values or None, non-negative, largest absolute
# value or inf), from ATTRIBUTE_SPECS.
_Check = tuple[str, bool, bool, frozenset[str] | None, bool, float]
_CHECKS: Final[dict[str, tuple[_Check, ...]]] = {
    event_type: tuple(
        (
            name,
            spec.kind == "str",
            spec.required,
            frozenset(spec.choices) or None,
            spec.non_negative,
            math.inf if spec.limit is None else spec.limit,
        )
        for name, spec in specs.items()
    )
    for event_type, specs in ATTRIBUTE_SPECS.items()
}
_MISSING: Final = object()


def decode_event(raw: bytes | None, currency: str | None = None) -> Event:
    """Decode and validate one event payload (msgpack map, or JSON object) against schema v1.

    Same result as ``validate_event(decode_payload(raw), currency=currency)``, and for valid
    events more than twice as fast. ``currency``, when given, is the only currency accepted for
    purchases. Raises ``InvalidEvent`` whose ``str`` is the dead-letter reason.
    """
    if isinstance(raw, bytes) and raw:
        decoder = _json_decoder if raw[0] in _JSON_FIRST_BYTES else _msgpack_decoder
        try:
            wire = decoder.decode(raw)
        except Exception:  # whatever msgspec rejects, however it says so, the slow path explains
            pass  # (mostly DecodeError/ValidationError, but msgspec 0.19 raises UnicodeDecodeError too)
        else:
            event = _accepted(wire, currency)
            if event is not None:
                return event
    return validate_event(decode_payload(raw), currency=currency)


def _accepted(wire: _WireEvent, currency: str | None) -> Event | None:
    """The event if it passes the checks msgspec does not make; None to defer to the slow path."""
    ts = wire.ts
    if type(ts) is str:
        try:
            seconds = parse_ts(ts)
        except InvalidEvent:
            return None
    else:
        millis = float(ts)
        if not SECONDS_LIMIT <= millis <= MAX_TS_MS:  # also false for NaN (engine.schemas.epoch_ms_problem)
            return None
        seconds = millis / 1000
    attrs: dict[str, Any] = {} if wire.attrs is None else wire.attrs
    event_type = wire.type
    for name, is_text, required, choices, non_negative, limit in _CHECKS[event_type]:
        value = attrs.get(name, _MISSING)
        if value is _MISSING:
            if required:
                return None
        elif is_text:
            if type(value) is not str or not value or (choices is not None and value not in choices):
                return None
        elif type(value) is float:
            if not math.isfinite(value) or (non_negative and value < 0) or abs(value) > limit:
                return None
        elif type(value) is not int or (non_negative and value < 0) or abs(value) > limit:
            return None
    if currency is not None and event_type == "purchase" and attrs["currency"] != currency:
        return None
    if event_type == "score" and score_problem(attrs, seconds) is not None:
        return None
    return Event(wire.event_id, wire.customer_id, event_type, seconds, attrs)
