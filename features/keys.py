"""The Redis key schema of the feature store.

Every key of one customer carries the customer id as its hash tag (``{...}``), so in a Redis
Cluster all of a customer's data lives in one slot and each per-customer script touches one slot.
"""

from __future__ import annotations

STATE_FIELD = "s"
VERSION_FIELD = "v"
OFFSET_FIELD_PREFIX = "o:"
EXTRA_FIELD_PREFIX = "x:"
OUTBOX_FIELD_PREFIX = "ob:"


def customer_key(prefix: str, customer_id: str) -> str:
    """The hash holding one customer's state, offsets, extras and outbox."""
    return f"{prefix}:c:{{{customer_id}}}"


def offset_field(partition: int) -> str:
    """Hash field with the last offset of ``partition`` applied to this customer."""
    return f"{OFFSET_FIELD_PREFIX}{partition}"


def extra_field(name: str) -> str:
    """Hash field of an opaque extra committed with the state (e.g. segment membership)."""
    return f"{EXTRA_FIELD_PREFIX}{name}"


def outbox_field(entry_id: str) -> str:
    """Hash field of one pending outbox entry."""
    return f"{OUTBOX_FIELD_PREFIX}{entry_id}"
