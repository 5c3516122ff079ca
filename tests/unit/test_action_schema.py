"""The action decision wire schema v1: a stable id from the cause, a lossless round trip, and a
one-line reason for every malformed map."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from engine.activation.actions import ActionDecision, action_id


def decision(**overrides: object) -> ActionDecision:
    fields: dict[str, object] = {
        "action_id": action_id("c1", "churn_winback_email", "ch-1"),
        "customer_id": "c1",
        "action": "churn_winback_email",
        "channel": "email",
        "decision": "send",
        "change": {"change_id": "ch-1", "family": "churn_risk", "from": None, "to": "Likely to Churn"},
        "reason": "score_churn=0.81 >= 0.7",
        "event_ts_ms": 1_767_225_600_000,
        "send_ts_ms": 1_767_254_400_000,
        "emitted_ts_ms": 1_767_225_601_000,
        "rules_version": "r-1",
        "experiment": "winback",
        "variant": "B",
        "probability": 0.675,
        "policy": "ab",
    }
    return ActionDecision(**(fields | overrides))  # type: ignore[arg-type]


def test_the_id_is_a_hash_of_customer_action_and_cause() -> None:
    expected = hashlib.sha256(msgpack.packb(["a", "c1", "churn_winback_email", "ch-1"])).hexdigest()[:32]
    assert action_id("c1", "churn_winback_email", "ch-1") == expected
    assert action_id("c1", "churn_winback_email", "ch-2") != expected


def test_the_wire_map_round_trips() -> None:
    original = decision()
    wire = msgpack.unpackb(original.encode())
    assert wire["v"] == 1 and wire["event_ts"] == 1_767_225_600_000 and wire["send_ts"] == 1_767_254_400_000
    assert ActionDecision.from_wire(wire) == original


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda w: w.update(v=2), "unsupported action schema version 2 (v1 expected)"),
        (lambda w: w.pop("channel"), "action lacks 'channel'"),
        (lambda w: w.update(channel="fax"), "unknown channel 'fax'"),
        (lambda w: w.update(decision="maybe"), "unknown decision 'maybe'"),
    ],
)
def test_malformed_maps_have_one_line_reasons(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    wire = decision().to_wire()
    mutate(wire)
    with pytest.raises(ValueError, match="^" + reason.replace("(", r"\(").replace(")", r"\)")):
        ActionDecision.from_wire(wire)
    with pytest.raises(ValueError, match="action must be a map"):
        ActionDecision.from_wire([1, 2])  # type: ignore[arg-type]
