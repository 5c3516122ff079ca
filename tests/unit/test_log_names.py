"""Customer ids in log lines (``SEGFLOW_LOG_CUSTOMER_IDS``): the keyed hash, the key, the lines.

Expected hashes are HMAC-SHA256 worked out here with ``hmac`` from the documented rule (``h:``
and the first 16 hex digits), never read back from the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from learner_data import make_labels

from engine import log_ids
from engine.activation.actions import ActionDecision
from engine.activation.delivery.service import _check_types
from engine.app import checkpoint_key
from engine.settings import load_settings
from features import log_names
from features.log_names import CustomerNames, hashed_id, scrub
from models.config import ModelConfig
from models.label_messages import encode_label
from models.learner import Learner
from models.registry import model_specs

KEY = b"a log key for the tests"


def expected(customer: str, key: bytes = KEY) -> str:
    return "h:" + hmac.new(key, customer.encode(), hashlib.sha256).hexdigest()[:16]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("SEGFLOW_"):
            monkeypatch.delenv(name)
    yield
    log_names.install(CustomerNames())  # the process-wide naming back to plain


def test_the_hash_is_stable_keyed_and_short() -> None:
    assert hashed_id("cust-42", KEY) == expected("cust-42") == hashed_id(b"cust-42", KEY)
    assert hashed_id("cust-42", KEY) == hashed_id("cust-42", KEY)
    assert hashed_id("cust-42", b"another key") == expected("cust-42", b"another key")
    assert hashed_id("cust-42", b"another key") != hashed_id("cust-42", KEY)
    assert hashed_id("cust-43", KEY) != hashed_id("cust-42", KEY)
    assert hashed_id("\ud800x", KEY).startswith("h:")  # a lone surrogate (a str key can hold one)


def test_plain_names_are_the_ids_and_labels_keep_their_shape() -> None:
    plain, hashed = CustomerNames(), CustomerNames(True, lambda: KEY)
    assert plain("cust-42") == "cust-42" and plain(b"c\xff") == "c\\xff"
    assert plain.label("cust-42|churn|1700000000000") == "cust-42|churn|1700000000000"
    assert hashed.label("cust-42|churn|1700000000000") == f"{expected('cust-42')}|churn|1700000000000"
    # An id with "|" in it: the model and time are the last two fields.
    assert hashed.label("a|b|clv|5") == f"{expected('a|b')}|clv|5"
    assert hashed.label("no-separator") == expected("no-separator")  # unknown shape: all hashed
    with pytest.raises(ValueError, match="need a key"):
        CustomerNames(True)


def test_the_key_is_the_setting_else_derived_from_the_checkpoint_key(tmp_path: Path) -> None:
    own = load_settings(read_profile=False, stack_dir=tmp_path / "a", log_hash_key="k" * 20)
    assert log_ids.log_key(own) == b"k" * 20
    shared = "a checkpoint key every process shares"
    a = load_settings(read_profile=False, stack_dir=tmp_path / "a", checkpoint_key=shared)
    b = load_settings(read_profile=False, stack_dir=tmp_path / "b", checkpoint_key=shared)
    derived = hmac.new(shared.encode(), b"segflow log customer ids v1", hashlib.sha256).digest()
    assert log_ids.log_key(a) == log_ids.log_key(b) == derived != shared.encode()
    # No SEGFLOW_CHECKPOINT_KEY: the stack dir's random key, made when a hashed id is first logged.
    alone = load_settings(
        read_profile=False, stack_dir=tmp_path / "c", log_customer_ids="hashed", log_hash_key=""
    )
    names = log_ids.names_for(alone)
    assert not (tmp_path / "c").exists()
    key = hmac.new(checkpoint_key(alone), b"segflow log customer ids v1", hashlib.sha256).digest()
    assert names("cust-42") == expected("cust-42", key)
    assert log_ids.names_for(load_settings(read_profile=False))("cust-42") == "cust-42"  # plain default


def test_the_setting_is_validated() -> None:
    from engine.settings import SettingsError

    with pytest.raises(SettingsError, match="SEGFLOW_LOG_CUSTOMER_IDS"):
        load_settings(read_profile=False, log_customer_ids="sha256")


def learner_logs_a_bad_label(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The learner's log lines about one label whose prediction is not finite (a real path)."""
    config = ModelConfig(
        specs=tuple(model_specs(("savings",), churn_days=5, clv_days=8, propensity_days=5)),
        input_names=("a", "b", "c"),
    )
    (label,) = make_labels(config, 1, seed=7)
    bad = msgspec.structs.replace(
        label, customer_id="cust-ZQX-7", label_id=f"cust-ZQX-7|{label.model}|123", y_pred=math.nan
    )
    learner = Learner(config, 86_400.0, b"")
    with caplog.at_level(logging.WARNING, logger="models.learner"):
        assert learner.offer(encode_label(bad)) == "malformed"
    return [r.getMessage() for r in caplog.records if r.name == "models.learner"]


def test_a_skipped_label_is_logged_with_the_hashed_customer(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    settings = load_settings(
        read_profile=False, stack_dir=tmp_path, log_customer_ids="hashed", log_hash_key=KEY.decode()
    )
    log_ids.configure(settings)
    (line,) = learner_logs_a_bad_label(caplog)
    assert f"label {expected('cust-ZQX-7')}|" in line and "y_pred is not finite" in line
    assert "ZQX" not in line


def test_plain_by_default(caplog: pytest.LogCaptureFixture) -> None:
    (line,) = learner_logs_a_bad_label(caplog)
    assert "label cust-ZQX-7|" in line


def test_scrub_takes_email_addresses_out() -> None:
    address = "alice.o+x@mail.example.com"
    refusal = f"SMTPRecipientsRefused: {{'{address}': (550, b'5.1.1 <{address}> unknown')}}"
    assert scrub(refusal) == "SMTPRecipientsRefused: {'<email>': (550, b'5.1.1 <<email>> unknown')}"
    assert scrub("HTTP 500 Internal Server Error") == "HTTP 500 Internal Server Error"


def test_a_malformed_actions_reason_does_not_carry_its_customer_id() -> None:
    decision = ActionDecision(
        action_id="a1",
        customer_id=424242,  # type: ignore[arg-type]
        action="offer",
        channel="webhook",
        decision="send",
        change={},
        reason="",
        event_ts_ms=0,
        send_ts_ms=0,
        emitted_ts_ms=0,
        rules_version="v",
    )
    with pytest.raises(ValueError) as info:
        _check_types(decision)
    assert str(info.value) == "customer_id must be a non-empty string, got int"
