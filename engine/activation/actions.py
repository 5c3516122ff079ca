"""Action decisions (schema v1): what the activation layer decided for one segment entry.

Every decision goes to the actions topic (msgpack map; key = customer_id), whether it is to be
sent or was withheld, so that every action is either delivered, withheld by a documented rule,
or dead-lettered, and so that experiments can be evaluated offline from the log:

    v             1
    action_id     stable id derived from the cause (customer, action, the change that caused
                  it): a redelivered decision has the same id; it is the idempotency key of
                  every delivery
    customer_id   str
    action        name declared in the rules file, e.g. "churn_winback_email"
    channel       "email" | "webhook" | "in_app" | "crm": which destination delivers it
    decision      "send", or why it was withheld: one of WITHHELD_REASONS
    experiment    the experiment name, or null when the action has none
    variant       the variant chosen (or the control group's "control"), or null
    probability   the probability with which this variant (or control) was chosen, for
                  offline policy evaluation (1.0 without an experiment)
    policy        "fixed" | "ab" | "thompson" | "epsilon_greedy" | "ucb"
    change        {"change_id", "family", "from", "to"}: the segment change that caused it
    reason        the change's reason text (why this customer, in words)
    features      the family's key features at the change (for templates)
    label         the segment's human-readable label
    event_ts      event time of the decision (epoch ms): the change's event time
    send_ts       event time it may be sent from (epoch ms): after quiet hours end, else event_ts
    emitted_ts    wall-clock time the decision was computed (epoch ms)
    rules_version the rules that decided
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from engine.codecs import encode_msgpack

ACTION_SCHEMA_VERSION = 1
CHANNELS = ("email", "webhook", "in_app", "crm")
SEND = "send"
WITHHELD_REASONS = (
    "control",  # the experiment's holdout group: measured, never treated
    "global_control",  # the global control group across every action
    "cooldown",  # the same action reached this customer less than its cool-down ago
    "frequency_cap",  # the channel's cap over its rolling event-time window is reached
)
DECISIONS = (SEND, *WITHHELD_REASONS)
POLICIES = ("fixed", "ab", "thompson", "epsilon_greedy", "ucb")


def action_id(customer_id: str, action: str, change_id: str) -> str:
    """Stable id of a decision: a hash of who, which action, and the change that caused it."""
    return hashlib.sha256(encode_msgpack(["a", customer_id, action, change_id])).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ActionDecision:
    """One decision about one action for one customer (sent or withheld)."""

    action_id: str
    customer_id: str
    action: str
    channel: str
    decision: str
    change: dict[str, Any]
    reason: str
    event_ts_ms: int
    send_ts_ms: int
    emitted_ts_ms: int
    rules_version: str
    experiment: str | None = None
    variant: str | None = None
    probability: float = 1.0
    policy: str = "fixed"
    features: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The schema v1 map."""
        return {
            "v": ACTION_SCHEMA_VERSION,
            "action_id": self.action_id,
            "customer_id": self.customer_id,
            "action": self.action,
            "channel": self.channel,
            "decision": self.decision,
            "experiment": self.experiment,
            "variant": self.variant,
            "probability": self.probability,
            "policy": self.policy,
            "change": self.change,
            "reason": self.reason,
            "features": self.features,
            "label": self.label,
            "event_ts": self.event_ts_ms,
            "send_ts": self.send_ts_ms,
            "emitted_ts": self.emitted_ts_ms,
            "rules_version": self.rules_version,
        }

    def encode(self) -> bytes:
        """msgpack bytes for the actions topic."""
        return encode_msgpack(self.to_wire())

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ActionDecision:
        """Inverse of ``to_wire``; raises ``ValueError`` with a one-line reason when malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"action must be a map, got {type(data).__name__}")
        if data.get("v") != ACTION_SCHEMA_VERSION:
            raise ValueError(f"unsupported action schema version {data.get('v')!r} (v1 expected)")
        try:
            decision = cls(
                action_id=data["action_id"],
                customer_id=data["customer_id"],
                action=data["action"],
                channel=data["channel"],
                decision=data["decision"],
                change=data["change"],
                reason=data["reason"],
                event_ts_ms=data["event_ts"],
                send_ts_ms=data["send_ts"],
                emitted_ts_ms=data["emitted_ts"],
                rules_version=data["rules_version"],
                experiment=data.get("experiment"),
                variant=data.get("variant"),
                probability=float(data.get("probability", 1.0)),
                policy=data.get("policy", "fixed"),
                features=data.get("features") or {},
                label=data.get("label"),
            )
        except KeyError as exc:
            raise ValueError(f"action lacks {exc.args[0]!r}") from None
        if decision.channel not in CHANNELS:
            raise ValueError(f"unknown channel {decision.channel!r}; expected one of {', '.join(CHANNELS)}")
        if decision.decision not in DECISIONS:
            known = ", ".join(DECISIONS)
            raise ValueError(f"unknown decision {decision.decision!r}; expected one of {known}")
        return decision
