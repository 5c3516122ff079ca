"""Payload decoding: msgpack by default, JSON when the bytes start like a JSON object."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.codecs import decode_msgpack, decode_payload, encode_msgpack
from engine.schemas import InvalidEvent

EVENT = {
    "v": 1,
    "event_id": "e-1",
    "customer_id": "c-1",
    "type": "purchase",
    "ts": 1_700_000_000_000,
    "attrs": {"amount": 19.99, "currency": "EUR", "product": "basic"},
}
# The same event as JSON text, written by hand.
EVENT_JSON = (
    b'{"v": 1, "event_id": "e-1", "customer_id": "c-1", "type": "purchase", '
    b'"ts": 1700000000000, "attrs": {"amount": 19.99, "currency": "EUR", "product": "basic"}}'
)


def reason_of(raw: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode_payload(raw)
    return str(info.value)


def test_msgpack_map_is_decoded() -> None:
    raw = msgpack.packb(EVENT, use_bin_type=True)
    assert raw[0] == 0x86  # fixmap of 6 entries: not a JSON start byte
    assert decode_payload(raw) == EVENT


def test_json_object_is_decoded() -> None:
    assert decode_payload(EVENT_JSON) == EVENT


@pytest.mark.parametrize("prefix", [b" ", b"\n", b"\t", b"\r\n", b" \t\r\n  "])
def test_json_with_leading_whitespace_is_json(prefix: bytes) -> None:
    assert decode_payload(prefix + EVENT_JSON) == EVENT


def test_json_with_trailing_newline() -> None:
    assert decode_payload(EVENT_JSON + b"\n") == EVENT


def test_json_unicode_text() -> None:
    assert decode_payload('{"customer_id": "Zoë-ß"}'.encode()) == {"customer_id": "Zoë-ß"}


def test_msgpack_bin_and_non_string_keys_are_kept() -> None:
    raw = msgpack.packb({1: b"\x00\xff", "k": [1, 2]}, use_bin_type=True)
    assert decode_payload(raw) == {1: b"\x00\xff", "k": [1, 2]}


@pytest.mark.parametrize("raw", [None, b""])
def test_empty_payload(raw: bytes | None) -> None:
    assert reason_of(raw) == "empty payload"


@pytest.mark.parametrize(
    ("raw", "first_byte"),
    [
        (b"\xc1", "0xc1"),  # the one never-used msgpack byte
        (b"\xa5abc", "0xa5"),  # a (truncated) str, not a map
        (msgpack.packb([1, 2]), "0x92"),  # a msgpack array
        (msgpack.packb(7), "0x07"),  # a msgpack int
        (b'[{"a": 1}]', "0x5b"),  # a JSON array is not a JSON object
        (b"null", "0x6e"),
        (b"\xef\xbb\xbf" + EVENT_JSON, "0xef"),  # UTF-8 BOM in front of JSON
        (b"\xd6\xff" + struct.pack(">H", 1), "0xd6"),  # an ext (timestamp) value
        (b"\x00", "0x00"),
        (b"\xff", "0xff"),
    ],
)
def test_neither_json_object_nor_msgpack_map(raw: bytes, first_byte: str) -> None:
    assert reason_of(raw) == f"payload is neither a JSON object nor a msgpack map (first byte {first_byte})"


@pytest.mark.parametrize(
    ("raw", "reason_start"),
    [
        (b"\x82\xa1a\x01", "bad msgpack: ValueError"),  # map of 2, only one pair present
        (b"\x82", "bad msgpack: ValueError"),  # map header alone
        (b"\xde\x00\x10", "bad msgpack: ValueError"),  # map16 of 16 entries, none present
        (b"\xdf\x00\x00", "bad msgpack: ValueError"),  # map32 header cut short
        (b"\x81\xa5ab", "bad msgpack: ValueError"),  # key str of 5 with 2 bytes
        (b"\x81\xa1a\xc1", "bad msgpack: FormatError"),  # reserved byte as a value
        (msgpack.packb({"a": 1}) + b"\x00", "bad msgpack: ExtraData"),  # trailing byte
        (msgpack.packb({"a": 1}) * 2, "bad msgpack: ExtraData"),  # two maps back to back
        (b"\x81\xa1\xff\x01", "bad msgpack: UnicodeDecodeError"),  # key is not UTF-8
        (b"\x81\xa1a" + b"\x91" * 100_000 + b"\x90", "bad msgpack: StackError"),  # nested too deep
        (b"\x81\xa1t\xd6\xff\x00\x01", "bad msgpack: ValueError"),  # bad timestamp ext inside
    ],
)
def test_bad_msgpack(raw: bytes, reason_start: str) -> None:
    assert reason_of(raw).startswith(reason_start)


def test_map16_and_map32_are_msgpack() -> None:
    big = {f"k{i:02d}": i for i in range(20)}  # more than 15 entries: map16, header 0xde 0x00 0x14
    raw = msgpack.packb(big)
    assert raw[:3] == b"\xde\x00\x14"
    assert decode_payload(raw) == big
    # the same map with a map32 header, written by hand
    body = raw[3:]
    assert decode_payload(b"\xdf" + struct.pack(">I", 20) + body) == big


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"{nope}",
        b'{"a": 1,}',
        b'{"a": 1} {"b": 2}',
        b' {"a": "\xff"}',  # invalid UTF-8 inside JSON
        b"\n",  # whitespace only
    ],
)
def test_bad_json(raw: bytes) -> None:
    assert reason_of(raw).startswith("bad JSON: ")


def test_bad_json_reason_names_position() -> None:
    assert reason_of(b'{"a" 1}') == "bad JSON: Expecting ':' delimiter: line 1 column 6 (char 5)"


def test_invalid_event_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_payload(b"\xc1")


@pytest.mark.parametrize("raw", [b"\x81\x80\x01", b"\x81\x90\x01"])
def test_unhashable_msgpack_key_is_an_invalid_event(raw: bytes) -> None:
    assert reason_of(raw).startswith("bad msgpack")


def test_deeply_nested_json_is_an_invalid_event() -> None:
    depth = 100_000
    assert reason_of(b'{"a": ' + b"[" * depth + b"]" * depth + b"}").startswith("bad JSON")


@settings(max_examples=50)
@given(
    st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
            ),
            max_leaves=10,
        ),
        max_size=6,
    )
)
def test_any_msgpack_map_round_trips(value: dict[str, Any]) -> None:
    raw = encode_msgpack(value)
    assert decode_payload(raw) == value
    assert decode_msgpack(raw) == value


def test_encode_msgpack_keeps_str_and_bytes_apart() -> None:
    raw = encode_msgpack({"s": "x", "b": b"x"})
    assert msgpack.unpackb(raw, raw=False) == {"s": "x", "b": b"x"}
