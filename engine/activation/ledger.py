"""One customer's activation ledger: what was decided for them, and what still waits on time.

It lives in the customer's own record (extra ``ac``), so it is committed with their features in
the same compare-and-set, and a redelivered event finds it exactly as the first delivery left
it: every decision and every outcome is derived once. It holds

* ``last``: per action, the event time of the last decision that counted for its cool-down;
* ``sent``: per channel, the event times of sends inside the channel's cap window;
* ``held``: decisions held by quiet hours, (release time, decision map), until released;
* ``open``: decisions waiting for their outcome, until credited or until their window closes;
* ``tz``: the customer's latest time zone attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.codecs import decode_msgpack, encode_msgpack

ACTIONS_EXTRA = "ac"


@dataclass(slots=True)
class OpenDecision:
    """A decision whose outcome is not known yet (sent, or withheld for a control group)."""

    decision_id: str
    action: str
    channel: str
    group: str
    """"treated", "control" (the experiment's holdout) or "global_control"."""
    experiment: str | None
    variant: str | None
    probability: float
    policy: str
    family: str
    segment: str
    starts: float
    """Event time the outcome window opens (the send moment: after quiet hours)."""
    ends: float
    reward: str

    def to_list(self) -> list[Any]:
        """Compact stored form (field order)."""
        return [getattr(self, name) for name in self.__slots__]  # type: ignore[attr-defined]


class ActionLedger:
    """The decoded ledger of one customer for the length of a step."""

    def __init__(self, raw: bytes | None = None) -> None:
        data = decode_msgpack(raw) if raw else {}
        self.last: dict[str, float] = data.get("l", {})
        self.sent: dict[str, list[float]] = data.get("s", {})
        self.held: list[list[Any]] = data.get("h", [])
        self.open: list[OpenDecision] = [OpenDecision(*item) for item in data.get("o", [])]
        self.tz: str | None = data.get("z")
        self.changed = False

    def encode(self) -> bytes:
        """Deterministic msgpack of the ledger."""
        return encode_msgpack(
            {
                "l": dict(sorted(self.last.items())),
                "s": dict(sorted(self.sent.items())),
                "h": sorted(self.held, key=lambda item: (item[0], item[1]["action_id"])),
                "o": [d.to_list() for d in sorted(self.open, key=lambda d: (d.ends, d.decision_id))],
                "z": self.tz,
            }
        )

    def next_due(self) -> float | None:
        """The next moment time alone changes the ledger: a release or a window's end."""
        moments = [item[0] for item in self.held] + [d.ends for d in self.open]
        return min(moments, default=None)

    def sends_within(self, channel: str, since: float) -> int:
        """Sends on ``channel`` after ``since`` (older ones are forgotten on the way)."""
        times = [t for t in self.sent.get(channel, []) if t > since]
        if channel in self.sent and len(times) != len(self.sent[channel]):
            self.sent[channel] = times
            self.changed = True
        return len(times)

    def record_send(self, channel: str, ts: float) -> None:
        """Count a send on ``channel`` at ``ts`` towards its cap."""
        self.sent.setdefault(channel, []).append(ts)
        self.changed = True
