"""``segflow bench`` end to end on the local stack, with tiny parameters.

Only structure and sanity are checked: the numbers depend on the machine, and timed
assertions do not belong in tests.
"""

from __future__ import annotations

import psutil
import pytest
import redis

from engine.bench import BenchParams, run_bench
from engine.settings import Settings

pytestmark = pytest.mark.integration


def test_bench_reports_both_sides_and_cleans_up(stack_settings: Settings) -> None:
    params = BenchParams(events=2000, customers=200, rounds=1, partitions=4, batch=500, latency_events=200)
    lines: list[str] = []

    report = run_bench(stack_settings, params, lines.append)

    assert report["workload"]["events"] == 2000
    assert report["workload"]["produce_events_per_s"] > 0
    assert report["machine"]["kafka_version"] and report["machine"]["redis_version"]
    assert all(topic.startswith(f"segflow-bench-{report['run_id']}.") for topic in report["topics"])
    [only] = report["rounds"]
    assert only["events"] == 2000
    assert only["bare_events_per_s"] > 0
    assert only["worker_events_per_s"] > 0
    assert only["ratio"] == pytest.approx(only["worker_events_per_s"] / only["bare_events_per_s"])
    assert report["median"]["ratio"] == pytest.approx(
        report["median"]["worker_events_per_s"] / report["median"]["bare_events_per_s"]
    )
    # Every event of the workload was applied by the worker, as its own metric counts them.
    assert only["worker_applied"] == 2000
    assert only["worker_dead_lettered"] == 0
    assert only["worker_cpu_us_per_event"] > 0
    assert only["worker_peak_rss_mb"] > 0

    latency = only["latency"]
    assert latency["matched"] == latency["sent"] == 200
    for name in ("end_to_end", "to_worker_produce"):
        p = latency[name]
        assert 0 <= p["p50"] <= p["p95"] <= p["p99"] <= p["max"]
    assert only["latency_p99_ms"] == latency["end_to_end"]["p99"]

    # The worker is gone and the bench left no Redis keys behind.
    assert only["worker_exit_code"] is not None
    assert not psutil.pid_exists(only["worker_pid"])
    client = redis.Redis.from_url(stack_settings.redis_url)
    try:
        prefix = "bench" + report["run_id"].replace("-", "")
        assert not list(client.scan_iter(match=f"{prefix}*", count=1000))
    finally:
        client.close()
    assert any("round 1" in line for line in lines)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"events": 600, "batch": 500}, "at least twice --batch"),
        ({"rounds": 0}, "--rounds"),
        ({"latency_rate": 0.0}, "--latency-rate"),
    ],
)
def test_bench_rejects_parameters_that_cannot_work(
    stack_settings: Settings, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_bench(stack_settings, BenchParams(**changes))  # type: ignore[arg-type]
