"""Durable, signed model state with its provenance.

A checkpoint is ``b"SFCK" | version (1 byte) | HMAC-SHA256 (32 bytes) | payload`` where the payload
is ``len(meta) (4 bytes, big-endian) | meta as JSON | pickled models``. The MAC covers the magic,
the version and the whole payload, so the provenance (offsets the models reflect, creation time,
model kinds) cannot be altered without detection either.

Unpickling runs arbitrary code, so ``load_checkpoint`` checks the format and the MAC (in constant
time) before it unpickles anything: a blob that does not verify is rejected, never loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from typing import Any

MAGIC = b"SFCK"
VERSION = 1
MAC_SIZE = 32
_META_LEN_SIZE = 4
_HEADER_SIZE = len(MAGIC) + 1 + MAC_SIZE


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, or is truncated, unknown, tampered with or wrongly signed."""


def _mac(key: bytes, version: int, payload: bytes) -> bytes:
    return hmac.new(key, MAGIC + bytes([version]) + payload, hashlib.sha256).digest()


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or not key:
        raise CheckpointError("checkpoint key must be non-empty bytes")


def dump_checkpoint(models: dict[str, object], meta: dict[str, Any], key: bytes) -> bytes:
    """The signed checkpoint of ``models`` (name -> River estimator) with ``meta``.

    ``meta`` must be JSON-serialisable (no NaN); raises ``CheckpointError`` otherwise or for an
    empty key.
    """
    _check_key(key)
    try:
        meta_bytes = json.dumps(meta, sort_keys=True, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint meta is not plain JSON: {exc}") from None
    payload = (
        len(meta_bytes).to_bytes(_META_LEN_SIZE, "big")
        + meta_bytes
        + pickle.dumps(dict(models), protocol=pickle.HIGHEST_PROTOCOL)
    )
    return MAGIC + bytes([VERSION]) + _mac(key, VERSION, payload) + payload


def load_checkpoint(blob: bytes, key: bytes) -> tuple[dict[str, object], dict[str, Any]]:
    """The ``(models, meta)`` of a checkpoint made by ``dump_checkpoint`` with the same ``key``.

    Raises ``CheckpointError`` for a blob that is too short, has the wrong magic or an unknown
    version, or whose MAC does not match; in those cases nothing is unpickled.
    """
    _check_key(key)
    blob = bytes(blob)
    if len(blob) < _HEADER_SIZE + _META_LEN_SIZE:
        raise CheckpointError(f"checkpoint truncated: {len(blob)} bytes")
    if blob[: len(MAGIC)] != MAGIC:
        raise CheckpointError("not a segflow checkpoint (bad magic)")
    version = blob[len(MAGIC)]
    if version != VERSION:
        raise CheckpointError(f"unknown checkpoint format version {version} (this build reads {VERSION})")
    mac = blob[len(MAGIC) + 1 : _HEADER_SIZE]
    payload = blob[_HEADER_SIZE:]
    if not hmac.compare_digest(mac, _mac(key, version, payload)):
        raise CheckpointError("checkpoint signature mismatch: tampered, truncated or signed with another key")
    meta_len = int.from_bytes(payload[:_META_LEN_SIZE], "big")
    meta_end = _META_LEN_SIZE + meta_len
    if meta_end > len(payload):
        raise CheckpointError("checkpoint meta length exceeds the payload")
    try:
        meta = json.loads(payload[_META_LEN_SIZE:meta_end])
        models = pickle.loads(payload[meta_end:])
    except Exception as exc:  # a verified but unreadable blob: written by a buggy or foreign build
        raise CheckpointError(f"checkpoint payload unreadable: {type(exc).__name__}: {exc}") from None
    if not isinstance(models, dict) or not isinstance(meta, dict):
        raise CheckpointError("checkpoint payload has an unexpected shape")
    return models, meta
