"""The activation program of a rules file: actions, their experiments, caps and quiet hours.

It is declared in the rules file's ``activation:`` section (parsed by
``engine.rules.activation_section``) and attached to segments by their ``on_enter`` lists. It
is plain data: ``engine.activation.planner`` applies it to one customer's record at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.activation.experiments.assignment import ExperimentSpec
from engine.activation.experiments.bandits import BanditConfig

REWARDS = ("purchase", "converted", "clicked")
"""What counts as an action's outcome: any purchase (its amount is the outcome's revenue), or a
``campaign_response`` for the action (``campaign`` = the action's name) that converted, or that
was clicked or converted."""
AB_POLICIES = ("fixed", "ab")
"""Variant policies without a bandit: none (one variant) or sticky weighted A/B/n."""


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``max_actions`` sent on ``channel`` per customer in any ``window_seconds`` of event time."""

    channel: str
    max_actions: int
    window_seconds: float


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours in which nothing is sent: held, and released when the window ends.

    ``start_minute``/``end_minute`` are minutes after local midnight; a window that wraps past
    midnight (21:00-08:00) has ``start_minute > end_minute``. The customer's time zone is the
    latest value of the event attribute ``timezone_attribute`` (an IANA name), else
    ``default_timezone``; an unknown name reads as the default.
    """

    start_minute: int
    end_minute: int
    timezone_attribute: str = "tz"
    default_timezone: str = "UTC"

    def release_at(self, ts: float, timezone: str | None) -> float | None:
        """When an action due at ``ts`` may be sent: the end of the quiet window it falls in
        (epoch seconds), or None when ``ts`` is outside quiet hours."""
        zone = _zone(timezone or self.default_timezone) or _zone(self.default_timezone) or ZoneInfo("UTC")
        local = datetime.fromtimestamp(ts, zone)
        minute = local.hour * 60 + local.minute
        start, end = self.start_minute, self.end_minute
        quiet = start <= minute < end if start <= end else minute >= start or minute < end
        if not quiet:
            return None
        release = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
        if release <= local:
            release = (release.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=zone)
        return release.timestamp()


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        return None


def is_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    return _zone(name) is not None


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action a segment entry may trigger."""

    name: str
    channel: str
    cooldown_seconds: float
    attribution_seconds: float
    reward: str = "purchase"
    experiment: ExperimentSpec | None = None
    policy: str = "fixed"
    """How a variant is chosen: "fixed" (no experiment), "ab" (sticky weighted) or a bandit
    policy (``bandit``); the delivery side's destinations file holds the templates
    (``engine.activation.delivery``)."""
    bandit: BanditConfig | None = None
    """The bandit's configuration when ``policy`` is one (``engine.activation.bandit_arms``)."""


@dataclass(frozen=True, slots=True)
class ActivationProgram:
    """Every action of a rules file, the channels' caps, quiet hours and the global control group."""

    actions: Mapping[str, ActionSpec] = field(default_factory=dict)
    caps: Mapping[str, FrequencyCap] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    global_control_fraction: float = 0.0
    global_control_epoch: str = "0"

    def __bool__(self) -> bool:
        return bool(self.actions)


NO_ACTIVATION = ActivationProgram()
