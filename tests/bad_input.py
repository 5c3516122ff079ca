"""Schema-v1 input records, valid and broken on purpose, each with what segflow must make of it.

Shared by the fuzz tests (``tests/unit/test_fuzz_event_decoder.py``) and the stream-level
reconciliation (``tests/integration/test_bad_input_reconciliation.py``). The expectations are
written here from the README ("Event schema v1" and the dead-letter categories of "Metrics"),
not read from ``engine``: a valid envelope is built from the documented table of attributes,
and every defect names the category its reason must fall in.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

import msgpack

CURRENCY = "EUR"
TS_LOW_MS = 4_102_444_800  # below: "looks like epoch seconds"
TS_HIGH_MS = 4_102_444_800_000  # 2100-01-01
# Ids as awkward as Unicode text gets while still being 1-128 characters of it.
ODD_IDS = (
    "\x00",
    "a\x00b",
    "\u202egnp.exe\u202c",  # right-to-left override
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew, right to left
    "e\u0301\u0302\u0303",  # combining marks
    "\u0301" * 128,  # nothing but combining marks
    "\U0001d518" * 128,  # 128 characters of 4 UTF-8 bytes each
    "\ufeff\u200b\u200d",  # BOM, zero-width space and joiner
    "x" * 128,
    " ",
)


def text(rng: random.Random, low: int = 1, high: int = 12) -> str:
    """Non-empty text, sometimes beyond ASCII."""
    alphabet = "abcxyz019_- \u00e9\u4e2d\U0001f600\u0301\u202e"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def money(rng: random.Random, low: float, high: float) -> float | int:
    value = rng.uniform(low, high)
    return round(value) if rng.random() < 0.3 else round(value, 2)


def valid_attrs(rng: random.Random, event_type: str, ts_ms: int) -> dict[str, Any]:
    """Attributes the README's table accepts for ``event_type`` (optional ones sometimes left out)."""
    optional = rng.random() < 0.5
    attrs: dict[str, Any]
    if event_type == "purchase":
        attrs = {"amount": money(rng, 0, 500), "currency": CURRENCY, "product": text(rng)}
    elif event_type == "login":
        attrs = {"channel": text(rng)} if optional else {}
    elif event_type == "session":
        attrs = {"duration_s": money(rng, 0, 7200)} if optional else {}
    elif event_type == "feature_used":
        attrs = {"feature": text(rng)}
    elif event_type == "support_ticket":
        attrs = {
            "ticket_id": text(rng),
            "status": rng.choice(("opened", "closed")),
            "severity": rng.choice(("low", "medium", "high", "critical")),
        }
    elif event_type in ("page_view", "app_click", "call_center"):
        attrs = {
            {"page_view": "page", "app_click": "element", "call_center": "reason"}[event_type]: text(rng)
        }
    elif event_type == "product_holding":
        attrs = {"product": rng.choice(("savings", "mortgage")), "balance": money(rng, -1e5, 1e5)}
    elif event_type == "campaign_response":
        outcome = rng.choice(("delivered", "opened", "clicked", "converted", "unsubscribed"))
        attrs = {"campaign": text(rng), "variant": text(rng), "outcome": outcome}
    else:
        attrs = {"model": "rf_churn", "value": rng.random(), "version": text(rng)}
        if optional:
            attrs["as_of"] = ts_ms - rng.randint(0, 86_400_000)
    if rng.random() < 0.2:  # extra attributes are kept and ignored
        attrs[f"extra_{rng.randint(0, 9)}"] = rng.choice([[1, [2, [3]]], {"k": None}, text(rng), -0.0])
    return attrs


def envelope(
    rng: random.Random, event_type: str, customer_id: str, event_id: str, ts_ms: int
) -> dict[str, Any]:
    """A valid schema-v1 envelope."""
    env: dict[str, Any] = {"event_id": event_id, "customer_id": customer_id, "type": event_type, "ts": ts_ms}
    if rng.random() < 0.5:
        env["v"] = 1
    env["attrs"] = valid_attrs(rng, event_type, ts_ms)
    return env


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def as_json(value: Any, ascii_only: bool = False) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True).encode()


def _with_raw_extra(env: dict[str, Any], raw_value: bytes, json_form: bool = False) -> bytes:
    """The encoded purchase with an extra attribute whose encoded value is ``raw_value`` as it is."""
    marker = "\x02" * 5
    if json_form:
        whole = as_json(_attr(env, extra=marker), ascii_only=True)
        return whole.replace(as_json(marker, ascii_only=True), raw_value, 1)
    return pack(_attr(env, extra=marker)).replace(_msgpack_str(marker.encode()), raw_value, 1)


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _msgpack_str(raw_utf8: bytes) -> bytes:
    """A msgpack str whose bytes are ``raw_utf8`` as they are (which may be no UTF-8 at all)."""
    assert len(raw_utf8) < 32
    return bytes([0xA0 | len(raw_utf8)]) + raw_utf8


def _with_raw_customer_id(env: dict[str, Any], raw_id: bytes) -> bytes:
    """msgpack of ``env`` whose customer_id is the str of bytes ``raw_id`` (a placeholder swapped)."""
    marker = "\x01" * 7
    packed = pack({**env, "customer_id": marker})
    return packed.replace(_msgpack_str(marker.encode()), _msgpack_str(raw_id), 1)


def _attr(env: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**env, "attrs": {**env["attrs"], **changes}}


KEEP = b"<keep>"
"""A defect's key meaning: the message key stays the customer id."""
Defect = Callable[[random.Random, dict[str, Any]], tuple[bytes | None, bytes]]
"""(rng, a valid purchase envelope) -> (message key or KEEP, value bytes)."""


def _purchase(mutate: Callable[[random.Random, dict[str, Any]], dict[str, Any]]) -> Defect:
    return lambda rng, env: (KEEP, pack(mutate(rng, env)))


DEFECTS: dict[str, tuple[str, Defect]] = {
    # name: (category of the dead letter, how the record is broken)
    "empty": ("empty_payload", lambda rng, env: (KEEP, b"")),
    "truncated msgpack": (
        "bad_msgpack",
        lambda rng, env: (KEEP, (p := pack(env))[: rng.randint(1, len(p) - 1)]),
    ),
    "trailing bytes": ("bad_msgpack", lambda rng, env: (KEEP, pack(env) + pack(rng.randint(0, 9)))),
    "truncated JSON": (
        "bad_json",
        lambda rng, env: (KEEP, (j := as_json(env))[: rng.randint(1, len(j) - 1)]),
    ),
    "garbage": ("not_a_map", lambda rng, env: (KEEP, bytes([0xC1]) + rng.randbytes(rng.randint(0, 40)))),
    "a msgpack list": ("not_a_map", lambda rng, env: (KEEP, pack([env]))),
    "a JSON list": ("not_a_map", lambda rng, env: (KEEP, b" " + as_json([env]))),
    "deep msgpack": ("bad_msgpack", lambda rng, env: (KEEP, _with_raw_extra(env, b"\x91" * 5000 + b"\x00"))),
    "deep JSON": (
        "bad_json",
        lambda rng, env: (KEEP, _with_raw_extra(env, b"[" * 5000 + b"]" * 5000, json_form=True)),
    ),
    "lone surrogate (msgpack)": (
        "bad_msgpack",
        lambda rng, env: (None, _with_raw_customer_id(env, b"c\xed\xa0\x80")),
    ),
    "lone surrogate (JSON)": (
        "bad_json",
        lambda rng, env: (None, as_json({**env, "customer_id": "c\ud800"}, ascii_only=True)),
    ),
    "schema version 2": (
        "schema_version",
        _purchase(lambda rng, env: {**env, "v": rng.choice([2, 0, -1, "1", 1.0, True])}),
    ),
    "unknown type": (
        "unknown_type",
        _purchase(lambda rng, env: {**env, "type": rng.choice(["refund", "", "PURCHASE", 7, None])}),
    ),
    "no event_id": (
        "missing_field",
        _purchase(lambda rng, env: {k: v for k, v in env.items() if k != "event_id"}),
    ),
    "no amount": (
        "missing_field",
        _purchase(lambda rng, env: {**env, "attrs": {"currency": CURRENCY, "product": "p"}}),
    ),
    "event_id not a string": (
        "bad_id",
        _purchase(lambda rng, env: {**env, "event_id": rng.choice([7, 1.5, ["e"], b"e"])}),
    ),
    "customer_id too long": ("bad_id", lambda rng, env: (None, pack({**env, "customer_id": "c" * 129}))),
    "ts a boolean": ("bad_ts", _purchase(lambda rng, env: {**env, "ts": True})),
    "ts NaN": ("bad_ts", _purchase(lambda rng, env: {**env, "ts": math.nan})),
    "ts in seconds": ("bad_ts", _purchase(lambda rng, env: {**env, "ts": rng.randint(0, TS_LOW_MS - 1)})),
    "ts far future": (
        "bad_ts",
        _purchase(lambda rng, env: {**env, "ts": rng.randint(TS_HIGH_MS * 1000 + 1, 2**63 - 1)}),
    ),
    "ts far past": ("bad_ts", _purchase(lambda rng, env: {**env, "ts": rng.randint(-(2**63), -1)})),
    "ts year 9999": ("bad_ts", _purchase(lambda rng, env: {**env, "ts": "9999-12-31T23:59:59Z"})),
    "ts without zone": ("bad_ts", _purchase(lambda rng, env: {**env, "ts": "2024-01-01T00:00:00"})),
    "amount NaN": ("bad_attribute", _purchase(lambda rng, env: _attr(env, amount=math.nan))),
    "amount inf": (
        "bad_attribute",
        _purchase(lambda rng, env: _attr(env, amount=rng.choice([math.inf, -math.inf]))),
    ),
    "amount negative": (
        "bad_attribute",
        _purchase(lambda rng, env: _attr(env, amount=-rng.uniform(0.01, 1e6))),
    ),
    "amount huge": (
        "bad_attribute",
        _purchase(lambda rng, env: _attr(env, amount=rng.choice([1e12 + 1, 2**63 - 1, 1e308]))),
    ),
    "amount a string": ("bad_attribute", _purchase(lambda rng, env: _attr(env, amount="12.50"))),
    "attrs a list": ("bad_attribute", _purchase(lambda rng, env: {**env, "attrs": [1, 2]})),
    "other currency": ("currency", _purchase(lambda rng, env: _attr(env, currency="USD"))),
    "key differs": ("key_mismatch", lambda rng, env: (b"someone-else", pack(env))),
}
