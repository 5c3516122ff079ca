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
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEvent(f"bad JSON: {exc}") from None
        except RecursionError:
            raise InvalidEvent("bad JSON: nested too deeply") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise InvalidEvent(f"bad JSON: {exc}") from None
    if not (0x80 <= raw[0] <= 0x8F or raw[0] in (0xDE, 0xDF)):
        raise InvalidEvent(f"payload is neither a JSON object nor a msgpack map (first byte 0x{raw[0]:02x})")
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise InvalidEvent(f"bad msgpack: {type(exc).__name__}: {exc}") from None
    except TypeError:  # a map or list used as a map key
        raise InvalidEvent("bad msgpack: unhashable map key") from None


def encode_msgpack(value: Any) -> bytes:
    """Encode a value as msgpack (str as UTF-8 str, bytes as bin)."""
    return msgpack.packb(value, use_bin_type=True)


def decode_msgpack(raw: bytes) -> Any:
    """Decode msgpack written by ``encode_msgpack``."""
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)
