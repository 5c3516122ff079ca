"""The rules file's ``activation:`` section, parsed into an ``ActivationProgram``.

Format::

    activation:
      global_control_percent: 5          # optional: 0 (default) or 1-15; withheld from every action
      global_control_epoch: "2026-12"    # optional: change it (at most monthly) to reshuffle the group
      quiet_hours:                       # optional: nothing is sent in these local hours
        start: "21:00"
        end: "08:00"
        timezone_attribute: tz           # optional (default tz): event attribute with an IANA name
        default_timezone: Europe/Madrid  # optional (default UTC)
      frequency_caps:                    # optional, per channel: at most `max` sent per `per_days`
        email: {max: 2, per_days: 7}
      actions:                           # required, non-empty
        - name: churn_winback_email      # [a-z][a-z0-9_]*, unique; segments name it in on_enter
          channel: email                 # email | webhook | in_app | crm
          cooldown_days: 30              # optional (default 0): not again to the same customer sooner
          attribution_days: 14           # optional (default 14): the outcome window
          reward: purchase               # optional: purchase (default) | converted | clicked
          experiment:                    # optional
            name: winback_2026q4         # required: part of every assignment hash
            holdout_percent: 10          # optional (default 0)
            policy: ab                   # optional: ab (default) | thompson | epsilon_greedy | ucb
            variants: {plain: 1, discount_10: 1}   # required: name -> relative weight (ab only)
            bandit:                      # optional, bandit policies only (defaults shown)
              min_rewards: 100           # every arm gets 1/K until each has this many outcomes
              floor: 0.01                # every arm keeps at least this probability
              epsilon: 0.1               # epsilon_greedy's exploration share
              thompson_draws: 10000      # Monte Carlo draws of Thompson's allocation

A bandit policy draws each decision's arm from the allocation its policy computes over the
treated outcomes sealed in the model snapshot the decision's event time reads
(``engine.activation.bandit_arms``); the variants' weights are then not used.

Every problem is a ``RulesError`` with a one-line ``FILE:LINE: problem`` message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from yaml.nodes import MappingNode, Node

from engine.activation.actions import CHANNELS
from engine.activation.experiments.assignment import (
    ExperimentSpec,
    Variant,
    validate_global_control_fraction,
)
from engine.activation.experiments.bandits import BANDIT_POLICIES, BanditConfig
from engine.activation.program import (
    AB_POLICIES,
    REWARDS,
    ActionSpec,
    ActivationProgram,
    FrequencyCap,
    QuietHours,
    is_timezone,
)
from engine.rules.model import SECONDS_PER_DAY

if TYPE_CHECKING:
    from engine.rules.loader import _Parser

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
DEFAULT_ATTRIBUTION_DAYS = 14.0


def parse_activation(parser: _Parser, node: Node) -> ActivationProgram:
    """The program of an ``activation:`` mapping node."""
    allowed = {"global_control_percent", "global_control_epoch", "quiet_hours", "frequency_caps", "actions"}
    fields = parser.mapping(node, "activation", allowed, {"actions"})
    fraction = 0.0
    if "global_control_percent" in fields:
        percent_node = fields["global_control_percent"]
        try:
            fraction = validate_global_control_fraction(
                parser.number(percent_node, "global_control_percent") / 100
            )
        except ValueError:
            raise parser.fail(percent_node, "global_control_percent must be 0 or within 1-15") from None
    epoch = "0"
    if "global_control_epoch" in fields:
        epoch = _scalar_text(parser, fields["global_control_epoch"], "global_control_epoch")
    quiet = _quiet_hours(parser, fields["quiet_hours"]) if "quiet_hours" in fields else None
    caps = _caps(parser, fields["frequency_caps"]) if "frequency_caps" in fields else {}
    actions: dict[str, ActionSpec] = {}
    for item in parser.sequence(fields["actions"], "activation.actions"):
        spec = _action(parser, item)
        if spec.name in actions:
            raise parser.fail(parser.mapping_value(item, "name"), f"duplicate action name {spec.name!r}")
        actions[spec.name] = spec
    return ActivationProgram(actions, caps, quiet, fraction, epoch)


def _scalar_text(parser: _Parser, node: Node, what: str) -> str:
    value = getattr(node, "value", None)
    if isinstance(node, MappingNode) or not isinstance(value, str) or not value.strip():
        raise parser.fail(node, f"{what} must be a string or a number")
    return value


def _minute(parser: _Parser, node: Node, what: str) -> int:
    text = parser.string(node, what)
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise parser.fail(node, f"{what} must be a 24-hour time HH:MM, got {text!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def _quiet_hours(parser: _Parser, node: Node) -> QuietHours:
    allowed = {"start", "end", "timezone_attribute", "default_timezone"}
    fields = parser.mapping(node, "quiet_hours", allowed, {"start", "end"})
    start = _minute(parser, fields["start"], "quiet_hours.start")
    end = _minute(parser, fields["end"], "quiet_hours.end")
    if start == end:
        raise parser.fail(fields["end"], "quiet_hours.start and end must differ")
    attribute = "tz"
    if "timezone_attribute" in fields:
        attribute = parser.string(fields["timezone_attribute"], "quiet_hours.timezone_attribute")
    zone = "UTC"
    if "default_timezone" in fields:
        zone = parser.string(fields["default_timezone"], "quiet_hours.default_timezone")
        if not is_timezone(zone):
            raise parser.fail(fields["default_timezone"], f"unknown time zone {zone!r} (an IANA name)")
    return QuietHours(start, end, attribute, zone)


def _caps(parser: _Parser, node: Node) -> dict[str, FrequencyCap]:
    fields = parser.mapping(node, "frequency_caps", set(CHANNELS), set())
    caps = {}
    for channel, cap_node in fields.items():
        cap = parser.mapping(cap_node, f"frequency_caps.{channel}", {"max", "per_days"}, {"max", "per_days"})
        most = parser.number(cap["max"], "max")
        if most < 1 or most != int(most):
            raise parser.fail(cap["max"], f"frequency_caps.{channel}.max must be a whole number >= 1")
        days = parser.number(cap["per_days"], "per_days")
        if days <= 0:
            raise parser.fail(cap["per_days"], f"frequency_caps.{channel}.per_days must be positive")
        caps[channel] = FrequencyCap(channel, int(most), days * SECONDS_PER_DAY)
    return caps


def _days(parser: _Parser, fields: dict[str, Node], key: str, default: float, positive: bool) -> float:
    if key not in fields:
        return default
    days = parser.number(fields[key], key)
    if days < 0 or (positive and days == 0):
        raise parser.fail(fields[key], f"{key} must be {'positive' if positive else 'zero or more'}")
    return days


def _action(parser: _Parser, node: Node) -> ActionSpec:
    allowed = {"name", "channel", "cooldown_days", "attribution_days", "reward", "experiment"}
    fields = parser.mapping(node, "an action", allowed, {"name", "channel"})
    name = parser.string(fields["name"], "action name")
    if not _NAME.fullmatch(name):
        raise parser.fail(fields["name"], f"action name {name!r} must match [a-z][a-z0-9_]*")
    channel = parser.string(fields["channel"], "channel")
    if channel not in CHANNELS:
        raise parser.fail(fields["channel"], f"unknown channel {channel!r} (one of {', '.join(CHANNELS)})")
    cooldown = _days(parser, fields, "cooldown_days", 0.0, positive=False)
    attribution = _days(parser, fields, "attribution_days", DEFAULT_ATTRIBUTION_DAYS, positive=True)
    reward = "purchase"
    if "reward" in fields:
        reward = parser.string(fields["reward"], "reward")
        if reward not in REWARDS:
            raise parser.fail(fields["reward"], f"unknown reward {reward!r} (one of {', '.join(REWARDS)})")
    experiment, policy, bandit = None, "fixed", None
    if "experiment" in fields:
        experiment, policy, bandit = _experiment(parser, fields["experiment"])
    return ActionSpec(
        name,
        channel,
        cooldown * SECONDS_PER_DAY,
        attribution * SECONDS_PER_DAY,
        reward,
        experiment,
        policy,
        bandit,
    )


def _experiment(parser: _Parser, node: Node) -> tuple[ExperimentSpec, str, BanditConfig | None]:
    allowed = {"name", "holdout_percent", "policy", "variants", "bandit"}
    fields = parser.mapping(node, "an experiment", allowed, {"name", "variants"})
    name = parser.string(fields["name"], "experiment name")
    if not _NAME.fullmatch(name):
        raise parser.fail(fields["name"], f"experiment name {name!r} must match [a-z][a-z0-9_]*")
    holdout = 0.0
    if "holdout_percent" in fields:
        holdout = parser.number(fields["holdout_percent"], "holdout_percent")
        if not 0 <= holdout < 100:
            raise parser.fail(fields["holdout_percent"], "holdout_percent must be within [0, 100)")
    policy = "ab"
    if "policy" in fields:
        policy = parser.string(fields["policy"], "policy")
        if policy not in (*AB_POLICIES[1:], *BANDIT_POLICIES):
            known = ", ".join((*AB_POLICIES[1:], *BANDIT_POLICIES))
            raise parser.fail(fields["policy"], f"unknown policy {policy!r} (one of {known})")
    weights = parser.mapping(fields["variants"], "variants", set(), set())
    if not weights:
        raise parser.fail(fields["variants"], "variants must not be empty")
    variants = []
    for variant, weight_node in weights.items():
        if not _NAME.fullmatch(variant) or variant == "control":
            raise parser.fail(
                weight_node, f"variant name {variant!r} must match [a-z][a-z0-9_]* (not control)"
            )
        weight = parser.number(weight_node, f"weight of variant {variant!r}")
        if weight <= 0:
            raise parser.fail(weight_node, f"weight of variant {variant!r} must be positive")
        variants.append(Variant(variant, weight))
    if "bandit" in fields and policy not in BANDIT_POLICIES:
        raise parser.fail(
            fields["bandit"], f"bandit settings need a bandit policy ({', '.join(BANDIT_POLICIES)})"
        )
    bandit = None
    if policy in BANDIT_POLICIES:
        bandit = _bandit(parser, fields.get("bandit"), fields["policy"], policy, len(variants))
    return ExperimentSpec(name, tuple(variants), holdout), policy, bandit


def _bandit(parser: _Parser, node: Node | None, where: Node, policy: str, arms: int) -> BanditConfig:
    allowed = {"min_rewards", "floor", "epsilon", "thompson_draws"}
    fields = parser.mapping(node, "bandit settings", allowed, set()) if node is not None else {}
    values: dict[str, float | int] = {}
    for key, value_node in fields.items():
        number = parser.number(value_node, key)
        if key in ("min_rewards", "thompson_draws"):
            if number != int(number):
                raise parser.fail(value_node, f"{key} must be a whole number")
            number = int(number)
        values[key] = number
    try:
        config = BanditConfig(policy, **values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise parser.fail(node or where, str(exc)) from None
    if config.floor * arms > 1.0:
        raise parser.fail(node or where, f"floor {config.floor} times {arms} variants exceeds 1")
    return config
