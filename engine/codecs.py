"""Bytes on topics <-> Python values: msgpack (the default) or JSON. Never pickle."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from engine.schemas import InvalidEvent

_JSON_START = frozenset(b"{ \t\r\n")


def decode_payload(raw: bytes | None) -> Any:
    """Decode an event payload: JSON if it starts like a JSON object, else msgpack.

    A msgpack map never starts with ``{`` or white space (those bytes are small positive
    integers in msgpack), so the first byte tells the two apart unambiguously.
    """
    if raw is None or len(raw) == 0:
        raise InvalidEvent("empty payload")
    if raw[0] in _JSON_START:
        try:
            value = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEvent(f"bad JSON: {exc}") from None
        except RecursionError:
            raise InvalidEvent("bad JSON: nested too deeply") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise InvalidEvent(f"bad JSON: {exc}") from None
        if _has_lone_surrogate(value):
            raise InvalidEvent("bad JSON: a string holds a lone surrogate (not Unicode text)")
        return value
    if not (0x80 <= raw[0] <= 0x8F or raw[0] in (0xDE, 0xDF)):
        raise InvalidEvent(f"payload is neither a JSON object nor a msgpack map (first byte 0x{raw[0]:02x})")
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise InvalidEvent(f"bad msgpack: {type(exc).__name__}: {exc}") from None
    except TypeError:  # a map or list used as a map key
        raise InvalidEvent("bad msgpack: unhashable map key") from None


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a string that is not Unicode text (so not UTF-8).

    ``json.loads`` turns a ``\\ud800`` escape, or the bytes ED A0 80 (it decodes with
    ``surrogatepass``), into a lone surrogate, which no later encode accepts: as an id it failed
    the whole batch's commit. msgpack strings are strict UTF-8 already. Iterative: any nesting.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack += item
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return False


def encode_msgpack(value: Any) -> bytes:
    """Encode a value as msgpack (str as UTF-8 str, bytes as bin)."""
    return msgpack.packb(value, use_bin_type=True)


def decode_msgpack(raw: bytes) -> Any:
    """Decode msgpack written by ``encode_msgpack``."""
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)
