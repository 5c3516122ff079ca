"""Segment entries to action decisions and decisions to outcomes, for one customer at a time.

Everything here reads only the customer's own record (their ledger) and the rules in force, so
a redelivered event derives the same decisions and outcomes under the same ids, and the outbox
delivers each once. For each action of a segment entry, in order:

1. **cool-down**: the same action was decided for the customer (sent, or withheld for a control
   group) less than ``cooldown_days`` ago -> withheld ``cooldown`` (checked first so that treated
   and control customers are eligible under the same rule);
2. **global control** (hash, ``global_control_percent``) -> withheld ``global_control``;
3. **experiment holdout** (hash, ``holdout_percent``) -> withheld ``control``; else the sticky
   weighted variant (``engine.activation.experiments.assignment``), or under a bandit policy the
   arm drawn from the allocation of the sealed snapshot the decision's time reads
   (``engine.activation.bandit_arms``);
4. **frequency cap**: the channel's sends in the last ``per_days`` reach ``max`` -> withheld
   ``frequency_cap`` (control decisions use no capacity);
5. **quiet hours**: a send whose moment falls in the customer's local quiet hours is held in the
   ledger and released, at the window's end, by the due index (a tick at that moment).

Measured decisions (sent or control) wait in the ledger for their outcome: the first outcome
event of the action's reward kind inside ``[send moment, + attribution_days)`` credits the
latest such decision of that action; a window that closes without one is an outcome of 0 at
its end. Either way one outcome record is emitted (``engine.activation.outcomes``) and, for the
learner's tallies (bandits and lift), one outcome message to the labels topic
(``models.outcome_messages``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.activation.actions import SEND, ActionDecision, action_id
from engine.activation.bandit_arms import BanditArms
from engine.activation.experiments.assignment import (
    CONTROL,
    GLOBAL_CONTROL,
    assign,
    global_control,
    in_holdout,
    treated_probability,
)
from engine.activation.experiments.bandits import choose, decision_point
from engine.activation.ledger import ActionLedger, OpenDecision
from engine.activation.outcomes import Outcome
from engine.activation.program import ActionSpec
from engine.codecs import encode_msgpack
from engine.output import SegmentChange
from engine.rules.model import RuleSet
from engine.schemas import attribute_text
from engine.stream.batch_records import ACTION, OUTCOME, TALLY, PendingChange
from features.event import Event
from models.outcome_messages import OUTCOME_KIND, OUTCOME_SCHEMA, OutcomeMessage, encode_outcome


class ActionPlanner:
    """Applies the rules' activation program to one customer's ledger."""

    def __init__(
        self, rules: Callable[[], RuleSet], clock: Callable[[], float], bandits: BanditArms | None = None
    ) -> None:
        """``bandits``: the arm counts bandit decisions read (None: every arm counts zero)."""
        self._rules = rules
        self._clock = clock
        self._bandits = bandits or BanditArms(None)

    def on_change(self, ledger: ActionLedger, change: SegmentChange) -> list[PendingChange]:
        """Decisions for the actions of the segment ``change`` enters (none for an exit)."""
        rules = self._rules()
        if not rules.activation or change.to_segment is None:
            return []
        family = rules.family(change.family)
        segment = family.segment(change.to_segment) if family is not None else None
        if segment is None or not segment.on_enter:
            return []
        entries = []
        for name in segment.on_enter:
            spec = rules.activation.actions[name]
            entries += self._decide(ledger, rules, spec, change)
        return entries

    def _decide(
        self, ledger: ActionLedger, rules: RuleSet, spec: ActionSpec, change: SegmentChange
    ) -> list[PendingChange]:
        program = rules.activation
        cid, ts = change.customer_id, change.event_ts_ms / 1000
        decision_id = action_id(cid, spec.name, change.change_id)
        fraction = program.global_control_fraction
        experiment = spec.experiment
        variant: str | None = None
        probability = 1.0 - fraction
        last = ledger.last.get(spec.name)
        if last is not None and ts - last < spec.cooldown_seconds:
            verdict = "cooldown"
        elif global_control(cid, fraction, epoch=program.global_control_epoch):
            verdict, probability = GLOBAL_CONTROL, fraction
        else:
            verdict = SEND
            if experiment is not None and spec.bandit is not None and not in_holdout(experiment, cid):
                state = self._bandits.state(ts, experiment)
                choice = choose(state, experiment.arms, spec.bandit, decision_point(decision_id))
                variant = choice.arm
                probability = (1.0 - fraction) * treated_probability(experiment, choice.probability)
            elif experiment is not None:
                assignment = assign(experiment, cid)
                variant, probability = assignment.variant, (1.0 - fraction) * assignment.probability
                if assignment.is_control:
                    verdict = CONTROL
            cap = program.caps.get(spec.channel)
            within = ledger.sends_within(spec.channel, ts - cap.window_seconds) if cap is not None else 0
            if verdict == SEND and cap is not None and within >= cap.max_actions:
                verdict = "frequency_cap"
        release = None
        if verdict in (SEND, CONTROL, GLOBAL_CONTROL):
            ledger.last[spec.name] = ts
            quiet = program.quiet_hours
            release = quiet.release_at(ts, ledger.tz) if quiet is not None else None
            starts = ts if release is None else release
            group = "treated" if verdict == SEND else verdict
            ledger.open.append(
                OpenDecision(
                    decision_id,
                    spec.name,
                    spec.channel,
                    group,
                    experiment.name if experiment is not None else None,
                    variant,
                    probability,
                    spec.policy,
                    change.family,
                    change.to_segment or "",
                    starts,
                    starts + spec.attribution_seconds,
                    spec.reward,
                )
            )
            if verdict == SEND:
                ledger.record_send(spec.channel, ts)
        ledger.changed = True
        decision = ActionDecision(
            action_id=decision_id,
            customer_id=cid,
            action=spec.name,
            channel=spec.channel,
            decision=verdict,
            change={
                "change_id": change.change_id,
                "family": change.family,
                "from": change.from_segment,
                "to": change.to_segment,
            },
            reason=str(change.reason.get("text", "")),
            event_ts_ms=change.event_ts_ms,
            send_ts_ms=change.event_ts_ms if release is None else round(release * 1000),
            emitted_ts_ms=round(self._clock() * 1000),
            rules_version=rules.version,
            experiment=experiment.name if experiment is not None else None,
            variant=variant,
            probability=round(probability, 9),
            policy=spec.policy,
            features=change.features,
            label=change.label,
        )
        if verdict == SEND and release is not None:
            ledger.held.append([release, decision.to_wire()])
            return []
        return [_decision_entry(decision.customer_id, decision.to_wire())]

    def on_event(self, ledger: ActionLedger, customer_id: str, event: Event) -> list[PendingChange]:
        """Outcomes ``event`` credits (one per action: its latest open decision in window)."""
        rules = self._rules()
        quiet = rules.activation.quiet_hours
        if quiet is not None and quiet.timezone_attribute in event.attrs:
            zone = attribute_text(event.attrs[quiet.timezone_attribute])
            if zone != ledger.tz:
                ledger.tz, ledger.changed = zone, True
        if not ledger.open or event.type not in ("purchase", "campaign_response"):
            return []
        credited: dict[str, OpenDecision] = {}
        for decision in ledger.open:
            if decision.starts <= event.ts < decision.ends and _rewards(decision, event):
                best = credited.get(decision.action)
                if best is None or (decision.starts, decision.decision_id) > (best.starts, best.decision_id):
                    credited[decision.action] = decision
        if not credited:
            return []
        revenue = float(event.attrs.get("amount", 0.0)) if event.type == "purchase" else 0.0
        chosen = {id(d) for d in credited.values()}
        ledger.open = [d for d in ledger.open if id(d) not in chosen]
        ledger.changed = True
        entries = []
        for d in sorted(credited.values(), key=lambda d: d.decision_id):
            entries += _outcome_entries(
                customer_id, d, True, revenue if d.reward == "purchase" else 0.0, event.ts
            )
        return entries

    def advance(self, ledger: ActionLedger, customer_id: str, moment: float) -> list[PendingChange]:
        """Release held decisions and close outcome windows due at or before ``moment``."""
        due = ledger.next_due()
        if due is None or due > moment:
            return []
        entries: list[PendingChange] = []
        released = sorted((item for item in ledger.held if item[0] <= moment), key=_held_order)
        for _release, wire in released:
            wire = {**wire, "emitted_ts": round(self._clock() * 1000)}
            entries.append(_decision_entry(wire["customer_id"], wire))
        ledger.held = [item for item in ledger.held if item[0] > moment]
        closed = sorted((d for d in ledger.open if d.ends <= moment), key=lambda d: (d.ends, d.decision_id))
        for decision in closed:
            entries += _outcome_entries(customer_id, decision, False, 0.0, decision.ends)
        ledger.open = [d for d in ledger.open if d.ends > moment]
        ledger.changed = True
        return entries


def _held_order(item: list[Any]) -> tuple[float, str]:
    return item[0], item[1]["action_id"]


def _rewards(decision: OpenDecision, event: Event) -> bool:
    if decision.reward == "purchase":
        return event.type == "purchase"
    if event.type != "campaign_response" or event.attrs.get("campaign") != decision.action:
        return False
    outcome = event.attrs.get("outcome")
    return outcome == "converted" or (decision.reward == "clicked" and outcome == "clicked")


def _decision_entry(customer_id: str, wire: dict[str, Any]) -> PendingChange:
    return PendingChange(customer_id, f"a:{wire['action_id']}", encode_msgpack(wire), ACTION)


def _outcome_entries(
    customer_id: str, decision: OpenDecision, converted: bool, revenue: float, at: float
) -> list[PendingChange]:
    """The outcome record (outcomes topic) and the learner's outcome message (labels topic)."""
    outcome = Outcome(
        outcome_id=decision.decision_id,
        customer_id=customer_id,
        action=decision.action,
        channel=decision.channel,
        group=decision.group,
        experiment=decision.experiment,
        variant=decision.variant,
        probability=decision.probability,
        policy=decision.policy,
        family=decision.family,
        segment=decision.segment,
        window_ms=(round(decision.starts * 1000), round(decision.ends * 1000)),
        converted=converted,
        revenue=round(revenue, 2),
        outcome_ts_ms=round(at * 1000),
        reward=decision.reward,
    )
    tally = OutcomeMessage(
        schema=OUTCOME_SCHEMA,
        kind=OUTCOME_KIND,
        outcome_id=decision.decision_id,
        action=decision.action,
        experiment=decision.experiment or "",
        policy=decision.policy,
        group=decision.group,
        variant=(decision.variant or "") if decision.group == "treated" else "",
        segment=decision.segment,
        converted=converted,
        revenue=round(revenue, 2),
        due_ts=at,
    )
    return [
        PendingChange(customer_id, f"o:{decision.decision_id}", outcome.encode(), OUTCOME),
        PendingChange(customer_id, f"t:{decision.decision_id}", encode_outcome(tally), TALLY),
    ]
