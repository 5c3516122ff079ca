"""Checkpoints: exact round trip, and nothing unverified is ever unpickled."""

from __future__ import annotations

import copy
import hashlib
import hmac
import pickle
import random

import pytest

from models import checkpoint
from models.checkpoint import MAC_SIZE, MAGIC, CheckpointError, dump_checkpoint, load_checkpoint
from models.registry import build_model
from models.scoring import score

KEY = b"k" * 32
META = {"offsets": {"0": 1234, "1": 98}, "created_ts": 1_767_225_600.5, "kinds": {"churn": "linear"}}
HEADER = len(MAGIC) + 1 + MAC_SIZE


def _rows(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{"a": rng.gauss(0, 1), "b": rng.gauss(3, 2), "c": float(rng.random() < 0.3)} for _ in range(n)]


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    models = {
        "churn": build_model("classification", "linear"),
        "clv": build_model("regression", "linear"),
        "propensity_savings": build_model("classification", "tree"),
        "propensity_mortgage": build_model("classification", "forest"),
    }
    for x in _rows(400, seed=1):
        label = x["a"] + x["c"] > 0.5
        for name, model in models.items():
            model.learn_one(x, 20.0 * max(x["b"], 0.0) if name == "clv" else label)  # type: ignore[attr-defined]
    return models


@pytest.fixture(scope="module")
def blob(trained: dict[str, object]) -> bytes:
    return dump_checkpoint(trained, META, KEY)


@pytest.fixture()
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("pickle.loads called on an unverified checkpoint")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(checkpoint.pickle, "loads", refuse)


def _task(name: str) -> str:
    return "regression" if name == "clv" else "classification"


def test_round_trip_gives_identical_predictions(trained: dict[str, object], blob: bytes) -> None:
    models, meta = load_checkpoint(blob, KEY)
    assert meta == META
    assert set(models) == set(trained)
    inputs = _rows(50, seed=99)
    for name, model in trained.items():
        assert [score(models[name], _task(name), x) for x in inputs] == [
            score(model, _task(name), x) for x in inputs
        ], name


def test_format_header(blob: bytes) -> None:
    assert blob[:4] == b"SFCK" and blob[4] == 1
    expected = hmac.new(KEY, blob[:5] + blob[HEADER:], hashlib.sha256).digest()
    assert blob[5:HEADER] == expected


def test_restored_models_keep_learning_like_the_originals(trained: dict[str, object], blob: bytes) -> None:
    restored, _ = load_checkpoint(blob, KEY)
    originals = copy.deepcopy(trained)
    for x in _rows(50, seed=7):
        for name in ("churn", "propensity_mortgage"):
            restored[name].learn_one(x, x["a"] > 0)  # type: ignore[attr-defined]
            originals[name].learn_one(x, x["a"] > 0)  # type: ignore[attr-defined]
    for x in _rows(20, seed=8):
        for name in ("churn", "propensity_mortgage"):
            assert score(restored[name], "classification", x) == score(originals[name], "classification", x)


@pytest.mark.usefixtures("no_unpickling")
def test_wrong_key_is_rejected(blob: bytes) -> None:
    with pytest.raises(CheckpointError, match="signature"):
        load_checkpoint(blob, b"another key")


@pytest.mark.usefixtures("no_unpickling")
def test_every_tampered_byte_is_rejected(blob: bytes) -> None:
    rng = random.Random(3)
    meta_start = HEADER + 4
    positions = [*range(HEADER + 8), *rng.sample(range(meta_start, len(blob)), 40), len(blob) - 1]
    for position in positions:
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(CheckpointError) as excinfo:
            load_checkpoint(bytes(tampered), KEY)
        assert "\n" not in str(excinfo.value)


@pytest.mark.usefixtures("no_unpickling")
def test_tampered_meta_is_rejected(blob: bytes) -> None:
    tampered = blob.replace(b"1234", b"9999")
    assert tampered != blob
    with pytest.raises(CheckpointError, match="signature"):
        load_checkpoint(tampered, KEY)


@pytest.mark.usefixtures("no_unpickling")
@pytest.mark.parametrize("length", [0, 3, 5, HEADER - 1, HEADER, HEADER + 3, HEADER + 20, -1])
def test_truncated_blob_is_rejected(blob: bytes, length: int) -> None:
    with pytest.raises(CheckpointError):
        load_checkpoint(blob[:length], KEY)


@pytest.mark.usefixtures("no_unpickling")
def test_unknown_version_is_rejected_even_with_a_valid_mac(blob: bytes) -> None:
    payload = blob[HEADER:]
    mac = hmac.new(KEY, MAGIC + bytes([2]) + payload, hashlib.sha256).digest()
    with pytest.raises(CheckpointError, match="version 2"):
        load_checkpoint(MAGIC + bytes([2]) + mac + payload, KEY)


@pytest.mark.usefixtures("no_unpickling")
def test_wrong_magic_is_rejected(blob: bytes) -> None:
    with pytest.raises(CheckpointError, match="magic"):
        load_checkpoint(b"XXXX" + blob[4:], KEY)


def test_verified_but_malformed_payload_is_a_checkpoint_error() -> None:
    payload = (10_000).to_bytes(4, "big") + b"{}"
    mac = hmac.new(KEY, MAGIC + b"\x01" + payload, hashlib.sha256).digest()
    with pytest.raises(CheckpointError, match="meta length"):
        load_checkpoint(MAGIC + b"\x01" + mac + payload, KEY)
    payload = (2).to_bytes(4, "big") + b"{}" + b"not a pickle"
    mac = hmac.new(KEY, MAGIC + b"\x01" + payload, hashlib.sha256).digest()
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(MAGIC + b"\x01" + mac + payload, KEY)


def test_bad_meta_or_key_cannot_be_written() -> None:
    with pytest.raises(CheckpointError, match="JSON"):
        dump_checkpoint({}, {"when": object()}, KEY)
    with pytest.raises(CheckpointError, match="JSON"):
        dump_checkpoint({}, {"x": float("nan")}, KEY)
    with pytest.raises(CheckpointError, match="key"):
        dump_checkpoint({}, {}, b"")
    with pytest.raises(CheckpointError, match="key"):
        load_checkpoint(dump_checkpoint({}, {}, KEY), b"")


def test_empty_checkpoint_round_trips() -> None:
    assert load_checkpoint(dump_checkpoint({}, {}, KEY), KEY) == ({}, {})
