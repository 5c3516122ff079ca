"""Outcome records (schema v1): what became of one measured decision, for lift and bandits.

Every decision that is part of a measurement (sent, or withheld for a control group) gets
exactly one outcome record on the outcomes topic (msgpack map; key = customer_id): converted
when an outcome event of the customer fell inside its window, else not converted at the moment
the window closed (event time). Decisions withheld by a cool-down or a cap are not randomised,
so they are measured nowhere and get no outcome record.

    v              1
    outcome_id     the decision's ``action_id`` (one outcome per decision: dedup by it)
    customer_id    str
    action         the action's name;  channel  its channel
    group          "treated" | "control" (experiment holdout) | "global_control"
    experiment     the experiment's name, or null;  variant  the variant, or null
    probability    the logged probability of the decision's group and variant
    policy         the variant policy ("fixed" | "ab")
    family, segment  the segment entry that caused the decision
    window         [start, end] epoch ms, event time: [send moment, + attribution window)
    converted      bool
    revenue        the purchase amount credited (0 unless the reward is a purchase)
    outcome_ts     epoch ms: the outcome event's time, or the window's end
    reward         what counted as converted: "purchase" | "converted" | "clicked"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.codecs import encode_msgpack

OUTCOME_SCHEMA_VERSION = 1
GROUPS = ("treated", "control", "global_control")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One measured decision's outcome."""

    outcome_id: str
    customer_id: str
    action: str
    channel: str
    group: str
    experiment: str | None
    variant: str | None
    probability: float
    policy: str
    family: str
    segment: str
    window_ms: tuple[int, int]
    converted: bool
    revenue: float
    outcome_ts_ms: int
    reward: str

    def to_wire(self) -> dict[str, Any]:
        """The schema v1 map."""
        return {
            "v": OUTCOME_SCHEMA_VERSION,
            "outcome_id": self.outcome_id,
            "customer_id": self.customer_id,
            "action": self.action,
            "channel": self.channel,
            "group": self.group,
            "experiment": self.experiment,
            "variant": self.variant,
            "probability": self.probability,
            "policy": self.policy,
            "family": self.family,
            "segment": self.segment,
            "window": list(self.window_ms),
            "converted": self.converted,
            "revenue": self.revenue,
            "outcome_ts": self.outcome_ts_ms,
            "reward": self.reward,
        }

    def encode(self) -> bytes:
        """msgpack bytes for the outcomes topic."""
        return encode_msgpack(self.to_wire())

    @classmethod
    def from_wire(cls, data: Any) -> Outcome:
        """Inverse of ``to_wire``; ``ValueError`` with a one-line reason when malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"outcome must be a map, got {type(data).__name__}")
        if data.get("v") != OUTCOME_SCHEMA_VERSION:
            raise ValueError(f"unsupported outcome schema version {data.get('v')!r} (v1 expected)")
        try:
            window = data["window"]
            outcome = cls(
                outcome_id=str(data["outcome_id"]),
                customer_id=str(data["customer_id"]),
                action=str(data["action"]),
                channel=str(data["channel"]),
                group=str(data["group"]),
                experiment=data.get("experiment"),
                variant=data.get("variant"),
                probability=float(data["probability"]),
                policy=str(data["policy"]),
                family=str(data["family"]),
                segment=str(data["segment"]),
                window_ms=(int(window[0]), int(window[1])),
                converted=bool(data["converted"]),
                revenue=float(data["revenue"]),
                outcome_ts_ms=int(data["outcome_ts"]),
                reward=str(data["reward"]),
            )
        except KeyError as exc:
            raise ValueError(f"outcome lacks {exc.args[0]!r}") from None
        except (TypeError, IndexError, ValueError):
            raise ValueError("outcome has a field of the wrong type") from None
        if outcome.group not in GROUPS:
            raise ValueError(f"unknown outcome group {outcome.group!r}; expected one of {', '.join(GROUPS)}")
        return outcome
