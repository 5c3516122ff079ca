"""Wire schemas, versioned: behavioural events in, segment changes and dead letters out.

Event schema v1 (a map; msgpack on the wire, JSON accepted):

    v            int, optional, default 1; only 1 is understood
    event_id     str, 1-128 chars, unique per event (producer-assigned)
    customer_id  str, 1-128 chars; also the Kafka message key
    type         one of EVENT_TYPES
    ts           event time: int epoch milliseconds, or an RFC 3339 string with a zone, in
                 1970-01-01..2100-01-01 (a number that looks like seconds is refused)
    attrs        map, optional; per type, the attributes in ATTRIBUTE_SPECS
                 (required ones must be present with the right type; others are kept as-is)

A ``score`` event carries a score an external batch job computed (``score_problem``): ``model``
a safe name (``EXTERNAL_MODEL_PATTERN``) that is not one of the engine's own score names, so it
reads as ``score_<model>`` in the rules; ``value`` a finite number; ``version`` a string; ``as_of``
optional epoch milliseconds, when the job computed it (not after ``ts``; default ``ts``).

The README documents the same tables; ``tests/unit/test_schemas.py`` pins them.
"""

from __future__ import annotations

import math
import re
import reprlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from features.event import EVENT_TYPES, Event

EVENT_SCHEMA_VERSION = 1
SEGMENT_CHANGE_SCHEMA_VERSION = 2
DEAD_LETTER_SCHEMA_VERSION = 1
MAX_ID_LENGTH = 128
# Event times from 1970-01-01 (history loaded with `segflow import` may be old) to 2100-01-01.
MIN_TS_MS = 0
MAX_TS_MS = 4_102_444_800_000
# Unit mistakes are caught by magnitude: an epoch number below MAX_TS_MS / 1000 is a time before
# 2100 in *seconds* (read as milliseconds it would fall before 1970-02-17), one above MAX_TS_MS
# whose thousandth is in range is microseconds. Numbers below SECONDS_LIMIT are refused as
# milliseconds (RFC 3339 strings are not ambiguous: any time from 1970-01-01 on is accepted).
SECONDS_LIMIT = MAX_TS_MS // 1000
TS_RANGE = "1970-01-01..2100-01-01"

SEVERITIES = ("low", "medium", "high", "critical")
TICKET_STATUSES = ("opened", "closed")
CAMPAIGN_OUTCOMES = ("delivered", "opened", "clicked", "converted", "unsubscribed")

EXTERNAL_MODEL_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,47}")
# The engine's own scores (models.registry: churn, clv, propensity_<product>; the BTYD scores of
# engine.stream.rule_scores: p_alive, expected_purchases_<N>d, clv_<N>d). An external score may not
# take one of their names: rejecting is clearer than a silent rename the rules would not expect.
RESERVED_MODEL_NAMES = frozenset({"churn", "clv", "p_alive"})
RESERVED_MODEL_PREFIXES = ("propensity_", "expected_purchases_", "clv_")


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """One attribute of an event type: its kind, whether it is required, allowed values."""

    kind: str  # "str", "number" or "int"
    required: bool = True
    choices: tuple[str, ...] = ()
    non_negative: bool = False
    limit: float | None = None
    """The largest absolute value accepted (money: ``MAX_MONEY``)."""


# Money beyond this, a trillion major units, is refused: the features keep revenue in integer
# minor units (msgpack int64 in the customer record, and an exact Decimal on the way), so one
# purchase of 1e17 or two of 5e16 failed the customer's commit, and balances near the float
# range overflowed their sum; every batch holding such an event failed again on redelivery.
MAX_MONEY = 1e12

ATTRIBUTE_SPECS: dict[str, dict[str, AttributeSpec]] = {
    "purchase": {
        "amount": AttributeSpec("number", non_negative=True, limit=MAX_MONEY),
        "currency": AttributeSpec("str"),
        "product": AttributeSpec("str"),
    },
    "login": {"channel": AttributeSpec("str", required=False)},
    "session": {"duration_s": AttributeSpec("number", required=False, non_negative=True)},
    "feature_used": {"feature": AttributeSpec("str")},
    "support_ticket": {
        "ticket_id": AttributeSpec("str"),
        "status": AttributeSpec("str", choices=TICKET_STATUSES),
        "severity": AttributeSpec("str", choices=SEVERITIES),
    },
    "page_view": {"page": AttributeSpec("str")},
    "app_click": {"element": AttributeSpec("str")},
    "call_center": {"reason": AttributeSpec("str")},
    "product_holding": {
        "product": AttributeSpec("str"),
        "balance": AttributeSpec("number", limit=MAX_MONEY),
    },
    "campaign_response": {
        "campaign": AttributeSpec("str"),
        "variant": AttributeSpec("str"),
        "outcome": AttributeSpec("str", choices=CAMPAIGN_OUTCOMES),
    },
    "score": {
        "model": AttributeSpec("str"),
        "value": AttributeSpec("number"),
        "version": AttributeSpec("str"),
        "as_of": AttributeSpec("number", required=False),
    },
}
assert set(ATTRIBUTE_SPECS) == set(EVENT_TYPES)


class InvalidEvent(ValueError):
    """The event breaks schema v1; ``str(exc)`` is the reason recorded in the dead letter."""


# A value quoted in a reason is cut short: an input's value may be a megabyte string or nested a
# thousand levels deep (the builtin repr of which raises RecursionError), and the dead letter
# carries the raw bytes anyway.
_QUOTED = reprlib.Repr()
_QUOTED.maxstring = _QUOTED.maxother = 80
_QUOTED.maxlevel = 3


def quoted(value: Any) -> str:
    """``repr(value)`` for a reason: one line, at most about 80 characters, any nesting."""
    return _QUOTED.repr(value)


def attribute_text(value: Any) -> str:
    """An unchecked attribute's value as text: a string as it is, anything else as ``str`` gives
    it, but bounded like ``quoted`` (``str`` of a list nested 1000 deep raises RecursionError)."""
    return value if isinstance(value, str) else _QUOTED.repr(value)


def _finite(value: int | float) -> bool:
    # math.isfinite overflows on an int beyond the float range (a 400-digit JSON number).
    return math.isfinite(value) if isinstance(value, float) else abs(value) <= sys.float_info.max


def parse_ts(value: Any) -> float:
    """Event time as epoch seconds, from epoch milliseconds or an RFC 3339 string."""
    if isinstance(value, bool):
        raise InvalidEvent("ts must be epoch milliseconds or an RFC 3339 string, got a boolean")
    if isinstance(value, int | float):
        if not _finite(value):
            raise InvalidEvent("ts must be finite")
        millis = float(value)
        if (problem := epoch_ms_problem(millis)) is not None:
            raise InvalidEvent(f"ts {quoted(value)} {problem}")  # a JSON int may have 300 digits
        return millis / 1000
    if isinstance(value, str):
        try:
            text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidEvent(f"ts {quoted(value)} is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise InvalidEvent(f"ts {quoted(value)} has no time zone")
        millis = parsed.timestamp() * 1000
        if not MIN_TS_MS <= millis <= MAX_TS_MS:
            raise InvalidEvent(f"ts {quoted(value)} is outside {TS_RANGE}")
        return millis / 1000
    raise InvalidEvent(f"ts must be epoch milliseconds or an RFC 3339 string, got {type(value).__name__}")


def epoch_ms_problem(millis: float) -> str | None:
    """Why an epoch number is not an event time in milliseconds, or None when it is one.

    Outside 1970-01-01..2100-01-01, or a unit mistake told by magnitude: below ``SECONDS_LIMIT``
    it is epoch seconds, above ``MAX_TS_MS`` with its thousandth in range it is microseconds.
    """
    if SECONDS_LIMIT <= millis <= MAX_TS_MS:  # also false for NaN
        return None
    if 0 <= millis < SECONDS_LIMIT:
        return "looks like epoch seconds, not milliseconds (read as milliseconds it is in early 1970)"
    if MAX_TS_MS < millis <= MAX_TS_MS * 1000:
        return "looks like epoch microseconds, not milliseconds (read as milliseconds it is after 2100)"
    return f"is outside {TS_RANGE} (epoch milliseconds expected)"


def _require_id(envelope: Mapping[str, Any], name: str) -> str:
    value = envelope.get(name)
    if value is None:
        raise InvalidEvent(f"missing {name}")
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidEvent(f"{name} must be 1-{MAX_ID_LENGTH} characters")
    return value


def _check_attribute(event_type: str, name: str, spec: AttributeSpec, value: Any) -> None:
    where = f"attrs.{name} of {event_type}"
    if spec.kind == "str":
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"{where} must be a non-empty string")
        if spec.choices and value not in spec.choices:
            raise InvalidEvent(f"{where} must be one of {', '.join(spec.choices)}; got {quoted(value)}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"{where} must be a number, got {type(value).__name__}")
    if not _finite(value):
        raise InvalidEvent(f"{where} must be finite")
    if spec.non_negative and value < 0:
        raise InvalidEvent(f"{where} must not be negative")
    if spec.limit is not None and abs(value) > spec.limit:
        raise InvalidEvent(f"{where} must be at most {spec.limit:.0e} in absolute value")


def external_model_problem(name: str) -> str | None:
    """Why ``name`` cannot be an external model's name, or None when it can."""
    if EXTERNAL_MODEL_PATTERN.fullmatch(name) is None:
        return f"must match {EXTERNAL_MODEL_PATTERN.pattern} (lowercase letter, then up to 47 of a-z 0-9 _)"
    if name in RESERVED_MODEL_NAMES or name.startswith(RESERVED_MODEL_PREFIXES):
        return "is an engine score name (churn, clv, propensity_*, p_alive, expected_purchases_*, clv_*)"
    return None


def score_problem(attrs: Mapping[str, Any], ts: float) -> str | None:
    """The dead-letter reason of a ``score`` event whose attributes passed ``ATTRIBUTE_SPECS``."""
    model = attrs["model"]
    problem = external_model_problem(model)
    if problem is not None:
        return f"attrs.model of score {quoted(model)} {problem}"
    if len(attrs["version"]) > MAX_ID_LENGTH:
        return f"attrs.version of score must be 1-{MAX_ID_LENGTH} characters"
    as_of = attrs.get("as_of")
    if as_of is not None:
        if (problem := epoch_ms_problem(as_of)) is not None:
            return f"attrs.as_of of score {problem}"
        if as_of / 1000 > ts:
            return "attrs.as_of of score is after the event's ts"
    return None


def validate_event(envelope: Any, *, currency: str | None = None) -> Event:
    """Check a decoded envelope against schema v1 and return the typed event.

    ``currency``, when given, is the only currency accepted for purchases: monetary features
    are kept in one currency and a purchase in another must not be summed in silently.
    """
    if not isinstance(envelope, Mapping):
        raise InvalidEvent(f"event must be a map, got {type(envelope).__name__}")
    version = envelope.get("v", EVENT_SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version != EVENT_SCHEMA_VERSION:
        raise InvalidEvent(f"unsupported schema version {quoted(version)} (this worker reads v1)")
    event_id = _require_id(envelope, "event_id")
    customer_id = _require_id(envelope, "customer_id")
    event_type = envelope.get("type")
    if not isinstance(event_type, str) or event_type not in ATTRIBUTE_SPECS:
        raise InvalidEvent(f"unknown type {quoted(event_type)}; expected one of {', '.join(EVENT_TYPES)}")
    if "ts" not in envelope:
        raise InvalidEvent("missing ts")
    ts = parse_ts(envelope["ts"])
    attrs = envelope.get("attrs", {})
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, Mapping):
        raise InvalidEvent(f"attrs must be a map, got {type(attrs).__name__}")
    for name, spec in ATTRIBUTE_SPECS[event_type].items():
        if name not in attrs:
            if spec.required:
                raise InvalidEvent(f"missing attrs.{name} for {event_type}")
            continue
        _check_attribute(event_type, name, spec, attrs[name])
    if event_type == "purchase" and currency is not None and attrs["currency"] != currency:
        shown = quoted(attrs["currency"])
        raise InvalidEvent(f"purchase currency {shown} is not the configured {currency!r}")
    if event_type == "score" and (problem := score_problem(attrs, ts)) is not None:
        raise InvalidEvent(problem)
    return Event(event_id=event_id, customer_id=customer_id, type=event_type, ts=ts, attrs=dict(attrs))


def event_to_wire(event: Event) -> dict[str, Any]:
    """The schema v1 envelope of a typed event (ts as epoch milliseconds)."""
    return {
        "v": EVENT_SCHEMA_VERSION,
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "type": event.type,
        "ts": round(event.ts * 1000),
        "attrs": dict(event.attrs),
    }
