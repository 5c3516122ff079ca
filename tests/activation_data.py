"""Shared inputs of the activation tests: a one-segment rules file around an ``activation:``
section, and the segment change of a customer entering that segment."""

from __future__ import annotations

from engine.output import SegmentChange
from engine.rules.loader import parse_rules
from engine.rules.model import RuleSet

RULES = """\
version: "t1"
families:
  - name: risk
    segments:
      - name: risky
        when: "frequency >= 1"
        on_enter: [{actions}]
activation:
{activation}
"""


def rules(activation: str, actions: str = "winback") -> RuleSet:
    """The rules with ``activation`` as their section; entering ``risk/risky`` runs ``actions``."""
    return parse_rules(RULES.format(actions=actions, activation=activation), known_names={"frequency"})


def change(customer: str, ts: float, n: int = 0) -> SegmentChange:
    """``customer`` entering ``risk/risky`` at ``ts`` (epoch seconds); ``n`` tells changes apart."""
    return SegmentChange(
        change_id=f"c-{customer}-{n}",
        customer_id=customer,
        family="risk",
        from_segment=None,
        to_segment="risky",
        event_ts_ms=round(ts * 1000),
        emitted_ts_ms=0,
        rules_version="t1",
        reason={"text": "risk=risky"},
        features={},
        cause={},
    )
