"""How log lines name a customer (``SEGFLOW_LOG_CUSTOMER_IDS``): as is, or by a keyed hash.

Every log call that names a customer goes through :func:`customer` (or :func:`label` for a label
id, which starts with the customer id), so one setting decides for the worker, the learner,
``segflow deliver`` and the CLI. ``hashed`` writes ``h:`` and the first 16 hex digits of
HMAC-SHA256(key, id): the same customer gets the same name in every line and every process of a
deployment, so lines still correlate, while the id cannot be read back or confirmed by hashing
a guess without the key. The key is ``SEGFLOW_LOG_HASH_KEY`` (or its ``_FILE``), else one
derived from the checkpoint key, which every process of a deployment already shares
(``engine.log_ids.configure`` installs the naming the settings ask for; until then ids are
written as they are).

:func:`scrub` takes email addresses out of free text from outside (an SMTP server's refusal
names the recipient) before it is logged. Only ids reach the logs, never attributes or payloads.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

HASH_PREFIX = "h:"
HASH_HEX_DIGITS = 16
"""64 bits: distinct for any population a deployment holds (collisions are unlikely below
~4 billion customers), short enough to read in a log line."""
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&*+/=?^_~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
"""An address as servers echo it (quotes and braces end it: they frame it in Python reprs)."""


def _as_bytes(customer_id: str | bytes) -> bytes:
    if isinstance(customer_id, bytes):
        return customer_id
    return customer_id.encode("utf-8", "surrogatepass")  # ids with lone surrogates hash too


def hashed_id(customer_id: str | bytes, key: bytes) -> str:
    """``h:<16 hex digits>``: the keyed hash of ``customer_id`` under ``key``."""
    digest = hmac.new(key, _as_bytes(customer_id), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:HASH_HEX_DIGITS]


class CustomerNames:
    """Names customers in log lines: as they are, or hashed with a key made when first needed."""

    def __init__(self, hashed: bool = False, key: Callable[[], bytes] | None = None) -> None:
        if hashed and key is None:
            raise ValueError("hashed customer ids need a key")
        self.hashed = hashed
        self._make_key = key
        self._key: bytes | None = None

    def __call__(self, customer_id: str | bytes) -> str:
        """What a log line writes for ``customer_id``."""
        if not self.hashed:
            if isinstance(customer_id, bytes):
                return customer_id.decode("utf-8", "backslashreplace")
            return customer_id
        if self._key is None:
            assert self._make_key is not None
            self._key = self._make_key()
        return hashed_id(customer_id, self._key)

    def label(self, label_id: str) -> str:
        """A label id (``<customer>|<model>|<ms>``, ``models.label_messages.make_label_id``) with
        its customer part named as :meth:`__call__` names it."""
        customer, sep, rest = label_id.rpartition("|")
        customer, sep2, model = customer.rpartition("|")
        if not sep or not sep2:  # not a label id's shape: the whole text may be an id
            return self(label_id)
        return f"{self(customer)}|{model}|{rest}"


_in_force = CustomerNames()


def install(names: CustomerNames) -> None:
    """Name customers in this process's log lines with ``names``."""
    global _in_force
    _in_force = names


def customer(customer_id: str | bytes) -> str:
    """A customer id as this process's log lines write it."""
    return _in_force(customer_id)


def label(label_id: str) -> str:
    """A label id as this process's log lines write it (its customer part hashed when hashing)."""
    return _in_force.label(label_id)


def scrub(text: str) -> str:
    """``text`` with every email address replaced by ``<email>``."""
    return _EMAIL.sub("<email>", text)
