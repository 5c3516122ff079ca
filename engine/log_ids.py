"""The settings' side of ``features.log_names``: the key of hashed customer ids, and installing
the naming ``SEGFLOW_LOG_CUSTOMER_IDS`` asks for in a process (the CLI does it at start)."""

from __future__ import annotations

import hashlib
import hmac

from engine.settings import Settings
from features.log_names import CustomerNames, install

DERIVATION_LABEL = b"segflow log customer ids v1"
"""What the checkpoint key is HMAC'd with to make the log key (the two keys never coincide)."""


def log_key(settings: Settings) -> bytes:
    """The HMAC key of hashed ids: ``SEGFLOW_LOG_HASH_KEY``, else derived from the checkpoint key."""
    if settings.log_hash_secret:
        return settings.log_hash_secret.encode()
    from engine.app import checkpoint_key  # the app's imports are heavy; only hashed logs need it

    return hmac.new(checkpoint_key(settings), DERIVATION_LABEL, hashlib.sha256).digest()


def names_for(settings: Settings) -> CustomerNames:
    """The naming ``settings`` ask for (the key is read on the first hashed id, not before)."""
    hashed = settings.log_customer_ids == "hashed"
    return CustomerNames(hashed, (lambda: log_key(settings)) if hashed else None)


def configure(settings: Settings) -> None:
    """Name customers in this process's logs as ``settings`` say."""
    install(names_for(settings))
