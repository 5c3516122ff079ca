"""``segflow soak`` end to end on the local stack, for half a minute at a low rate.

Only that the samples are real is checked (the worker applied what was sent, it has a resident
set, Redis holds the customers' records); the verdicts depend on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from engine.cli.main import cli
from engine.settings import Settings

pytestmark = pytest.mark.integration

RATE, SECONDS = 300, 30


def test_soak_samples_are_real_and_the_run_cleans_up(stack_settings: Settings, tmp_path: Path) -> None:
    args = ["soak", "--minutes", "0.5", "--rate", str(RATE), "--sample-seconds", "5", "--customers", "400"]
    result = CliRunner().invoke(cli, [*args, "--work-dir", str(tmp_path), "--json"], catch_exceptions=False)

    assert result.exit_code in (0, 1), result.output  # 1: a quantity grew, which half a minute may show
    report = json.loads(result.stdout)
    samples = report["samples"]
    # At 0, 5, ..., 30 s (each at its time or, on a busy machine, a little later).
    assert len(samples) == 7 and samples[-1]["elapsed_s"] >= SECONDS
    assert [s["elapsed_s"] for s in samples] == sorted(s["elapsed_s"] for s in samples)
    sent = report["summary"]["sent"]
    # The pacer sends event i at i / rate s, from 0: by the last sample, at 30 s, all 9,000.
    assert sent == RATE * SECONDS
    assert [s["sent"] for s in samples] == sorted(s["sent"] for s in samples)
    # After the stream the worker caught up: every event sent was applied, none dead-lettered.
    summary = report["summary"]
    assert summary["drained"] and summary["lag_after_drain"] == 0
    assert summary["applied_after_drain"] == sent and summary["dead_lettered_after_drain"] == 0
    last = samples[-1]
    assert 0 < last["applied"] <= sent and last["lag"] <= sent
    assert all(s["worker_rss_mb"] > 0 for s in samples)
    assert last["redis_used_mb"] > 0 and last["redis_bytes_per_customer"] > 0
    # The records alone are part of what Redis uses.
    assert 0 < last["record_bytes_per_customer"] < last["redis_bytes_per_customer"]
    # Each customer has one hash; the simulated 400 customers cannot all be seen in 30 s of load.
    assert 0 < last["customers"] <= 400 and last["redis_keys"] > last["customers"]
    assert {v["quantity"] for v in report["verdicts"]} == {
        "worker_rss_mb",
        "redis_used_mb",
        "redis_bytes_per_customer",
        "record_bytes_per_customer",
        "lag",
    }
    assert Path(report["worker_log"]).is_file()
    # The run's keys are gone.
    client = redis.Redis.from_url(stack_settings.redis_url)
    try:
        assert not list(client.scan_iter(match=f"{report['key_prefix']}:*", count=1000))
    finally:
        client.close()
