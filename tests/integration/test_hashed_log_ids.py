"""SEGFLOW_LOG_CUSTOMER_IDS=hashed in a real ``segflow deliver`` process: a dead-lettered action's
log line names its customer by the keyed hash (worked out here with ``hmac``), never by the id."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from delivery_kafka import make_action, produce_actions, setup, start_deliver, webhook
from delivery_servers import Receiver, always
from pydantic import SecretStr

from engine.settings import Settings

pytestmark = pytest.mark.integration

KEY = "a log key of the deployment"


def test_dead_letters_are_logged_with_hashed_customer_ids(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    customers = ["cust-QVX-1", "cust-QVX-2"]
    with Receiver(always(400)) as receiver:  # 400: refused at once, dead-lettered
        settings = setup(
            isolated_settings,
            tmp_path,
            webhook(f"{receiver.url}/hooks"),
            log_customer_ids="hashed",
            log_hash_key=SecretStr(KEY),
        )
        produce_actions(settings, [make_action(c, 0) for c in customers])
        log = tmp_path / "deliver.log"
        process = start_deliver(settings, log)
        try:
            assert process.wait(120) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
    text = log.read_text()
    for customer in customers:
        hashed = "h:" + hmac.new(KEY.encode(), customer.encode(), hashlib.sha256).hexdigest()[:16]
        assert f"(customer {hashed}): refused: HTTP 400 Bad Request" in text, text
    assert "QVX" not in text
    assert KEY not in text
