"""Label messages (schema v1): the wire map engine.codecs reads and writes, strictly decoded."""

from __future__ import annotations

from array import array

import pytest

from engine.codecs import decode_msgpack, encode_msgpack
from models.label_messages import (
    MalformedLabel,
    decode_label,
    encode_label,
    label_key,
    label_message,
    make_label_id,
)
from models.labels import ResolvedLabel

X = array("f", [1.5, -2.0, 1e6]).tobytes()
WIRE = {
    "schema": 1,
    "label_id": "c1|churn|1767225600123",
    "customer_id": "c1",
    "model": "churn",
    "x": X,
    "y_true": 1.0,
    "y_pred": 0.25,
    "holdout": False,
    "made_ts": 1767225600.123,
    "due_ts": 1769817600.123,
    "resolved_ts": 1769817600.123,
    "partition": 3,
}


def test_a_label_message_is_the_documented_msgpack_map() -> None:
    resolved = ResolvedLabel("churn", X, 1.0, 0.25, 1767225600.123, 1769817600.123, False)
    message = label_message("c1", resolved, due_ts=1769817600.123, partition=3)
    assert decode_msgpack(encode_label(message)) == WIRE
    assert list(decode_msgpack(encode_label(message))) == list(WIRE)
    assert decode_label(encode_msgpack(WIRE)) == message
    assert label_key(message) == b"c1|churn|1767225600123"


def test_label_ids_are_stable_per_customer_model_and_prediction_time() -> None:
    assert make_label_id("c1", "clv", 1767225600.1234) == "c1|clv|1767225600123"
    assert make_label_id("c1", "clv", 1767225600.1234) == make_label_id("c1", "clv", 1767225600.1233)
    assert make_label_id("c1", "clv", 1767225600.0) != make_label_id("c1", "churn", 1767225600.0)


def test_integers_are_read_as_floats_and_extra_fields_ignored() -> None:
    message = decode_label(encode_msgpack({**WIRE, "y_true": 0, "due_ts": 1769817600, "later": "x"}))
    assert message.y_true == 0.0 and isinstance(message.y_true, float)
    assert message.due_ts == 1769817600.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"schema": 2}, "schema 2"),
        ({"x": "text"}, "Expected `bytes`"),
        ({"x": X[:-1]}, "float32"),
        ({"x": array("f", [1.0, float("nan"), 2.0]).tobytes()}, "x has a value that is not finite"),
        ({"x": array("f", [float("inf")]).tobytes()}, "x has a value that is not finite"),
        ({"holdout": 1}, "Expected `bool`"),
        ({"y_pred": float("nan")}, "y_pred is not finite"),
        ({"due_ts": float("inf")}, "due_ts is not finite"),
        ({"partition": -1}, "negative partition"),
        ({"label_id": ""}, "without a label_id"),
    ],
)
def test_malformed_messages_raise_with_a_reason(change: dict[str, object], reason: str) -> None:
    with pytest.raises(MalformedLabel, match=reason):
        decode_label(encode_msgpack({**WIRE, **change}))


@pytest.mark.parametrize("raw", [None, b"", b"\xc1", b"[1, 2]", encode_msgpack([1, 2])])
def test_bytes_that_are_no_label_map_raise(raw: bytes | None) -> None:
    with pytest.raises(MalformedLabel):
        decode_label(raw)


def test_a_missing_field_raises() -> None:
    partial = {k: v for k, v in WIRE.items() if k != "due_ts"}
    with pytest.raises(MalformedLabel, match="due_ts"):
        decode_label(encode_msgpack(partial))


def test_a_dict_input_cannot_be_sent() -> None:
    resolved = ResolvedLabel("churn", {"a": 1.0}, 1.0, 0.25, 1.0, 2.0, False)
    with pytest.raises(ValueError, match="bytes"):
        label_message("c1", resolved, 2.0, 0)
