"""The ``crm_upsert`` request body: an action as a contact upsert keyed by the customer id.

``{"id": customer_id, "properties": {property: value, ...}}``, sent (typically with ``PATCH``) to
a URL such as ``https://crm.example.test/contacts/{customer_id}``: the customer id is the CRM
contact's external id, and each property is read from a field of the action. The defaults are
``CRM_PROPERTIES``; a destination's ``properties`` adds to them (or overrides one), e.g.
``segflow_churn_score: features.churn_score``.
"""

from __future__ import annotations

import re
from typing import Any

from engine.activation.actions import ActionDecision

CRM_PROPERTIES = {
    "segflow_segment": "label",
    "segflow_action": "action",
    "segflow_variant": "variant",
    "segflow_experiment": "experiment",
    "segflow_action_id": "action_id",
    "segflow_reason": "reason",
    "segflow_family": "change.family",
    "segflow_event_ts": "event_ts",
}
"""The properties of every ``crm_upsert`` body: CRM property name -> action field."""

_FIELDS = ("customer_id", "action", "action_id", "channel", "label", "reason", "variant", "experiment")
_CHANGE_FIELDS = ("change_id", "family", "from", "to")
SOURCE = re.compile(
    rf"({'|'.join(_FIELDS)}|event_ts|send_ts|change\.({'|'.join(_CHANGE_FIELDS)})|features\.[A-Za-z0-9_]+)"
)
"""What a property may be read from: an action field, ``change.<field>`` or ``features.<name>``."""


class MissingField(ValueError):
    """The action lacks a field a property reads (a feature it does not carry)."""


def field_value(decision: ActionDecision, source: str) -> Any:
    """The value of ``source`` (matching ``SOURCE``) in ``decision``; raises :class:`MissingField`."""
    if source == "event_ts":
        return decision.event_ts_ms
    if source == "send_ts":
        return decision.send_ts_ms
    head, _, name = source.partition(".")
    if head == "features":
        if name not in decision.features:
            raise MissingField(f"the action has no feature {name!r}")
        return decision.features[name]
    if head == "change":
        return decision.change.get(name)
    return getattr(decision, source)


def crm_upsert_body(decision: ActionDecision, properties: dict[str, str]) -> dict[str, Any]:
    """The upsert map of ``decision``; raises :class:`MissingField` naming the property."""
    values: dict[str, Any] = {}
    for prop, source in properties.items():
        try:
            values[prop] = field_value(decision, source)
        except MissingField as exc:
            raise MissingField(f"CRM property {prop!r} ({source}): {exc}") from None
    return {"id": decision.customer_id, "properties": values}
