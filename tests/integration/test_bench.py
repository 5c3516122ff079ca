"""``segflow bench`` end to end on the local stack, with tiny parameters.

Only structure and sanity are checked: the numbers depend on the machine, and timed
assertions do not belong in tests.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
from pathlib import Path

import psutil
import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient

from engine.ops.bench import BenchParams, run_bench
from engine.ops.bench.floor import FLOOR_EVENTS
from engine.ops.bench.progress import LineReporter
from engine.ops.bench.report import as_json, render
from engine.settings import Settings

pytestmark = pytest.mark.integration

EVENTS = 6000


def _topics(settings: Settings) -> list[str]:
    async def main() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(main())


def test_bench_reports_every_side_and_cleans_up(stack_settings: Settings, tmp_path: Path) -> None:
    params = BenchParams(
        events=EVENTS,
        customers=300,
        rounds=1,
        partitions=4,
        batch=250,
        workers=(1, 2),
        naive_events=1000,
        latency_loads=(0.5,),
        latency_seconds=1.0,
    )
    lines: list[str] = []

    report = run_bench(stack_settings, params, LineReporter(lines.append), tmp_path)

    assert report["workload"]["events"] == EVENTS
    assert report["workload"]["produce_events_per_s"] > 0
    assert report["machine"]["kafka_version"] and report["machine"]["redis_version"]
    # The code measured is this checkout's (its workers import the same engine package).
    repo = Path(__file__).resolve().parents[2]
    assert report["machine"]["code"]["path"] == str(repo)
    git = ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"]
    head = subprocess.run(git, capture_output=True, text=True)
    revision = report["machine"]["code"]["revision"]
    if head.returncode:  # not a git checkout: the report says it does not know
        assert revision is None
    else:
        assert revision.removesuffix("+dirty") == head.stdout.strip()
    assert report["work_dir"].startswith(str(tmp_path))
    [only] = report["rounds"]
    assert only["events"] == EVENTS
    assert only["topic"] == f"segflow-bench-{report['run_id']}-r1.events"
    bare = only["bare"]
    # The bare consumer reads the small test workload in a few ms: CPU clocks tick in 10 ms, so 0 is possible.
    assert bare["events_per_s"] > 0 and bare["cpu_us_per_event"] >= 0

    for count in (1, 2):
        side = only["workers"][str(count)]
        # Every event of the workload was done by the group, as the workers' own metrics count them.
        assert side["applied"] == EVENTS and side["dead_lettered"] == 0
        assert side["processes"] == count == len(side["pids"]) == len(side["events_each"])
        assert sum(side["events_each"]) == side["window"]["events"] <= EVENTS
        assert side["events_per_s"] > 0
        assert side["ratio_bare"] == pytest.approx(side["events_per_s"] / bare["events_per_s"])
        assert side["ratio_naive"] == pytest.approx(side["events_per_s"] / only["naive"]["events_per_s"])
        floor_cpu = only["floor"]["cpu_us_per_event"]
        assert side["cpu_ratio_floor"] == pytest.approx(side["cpu_us_per_event"] / floor_cpu)
        # Two workers may finish the tiny workload within a few polls: a window of ms, CPU ticks of 10 ms.
        assert side["cpu_us_per_event"] >= 0 and len(side["cpu_us_per_event_each"]) == count
        assert side["peak_rss_mb"] > 0 and side["batches"] > 0
        assert side["redis_commands_per_event"] >= 0 and side["redis_round_trips_per_batch"] >= 0
        assert all(Path(log).exists() for log in side["logs"])
        assert all(code is not None for code in side["exit_codes"])
        assert not any(psutil.pid_exists(pid) for pid in side["pids"])

    # The feature step alone, over the workload's first FLOOR_EVENTS events: the median pass.
    floor = only["floor"]
    assert floor["events"] == min(FLOOR_EVENTS, EVENTS) and len(floor["passes"]) == 3
    assert floor["cpu_us_per_event"] == statistics.median(floor["passes"]) > 0
    naive = only["naive"]
    assert 1000 <= naive["applied"] <= EVENTS and naive["dead_lettered"] == 0
    assert naive["events_per_s"] > 0 and naive["cpu_us_per_event"] > 0

    latency = only["latency"]
    fastest = max(only["workers"].values(), key=lambda side: side["events_per_s"])
    assert latency["workers"] == fastest["processes"]
    assert latency["max_rate"] == fastest["events_per_s"]
    half = latency["loads"]["50"]
    assert half["offered_per_s"] == pytest.approx(0.5 * latency["max_rate"])
    assert 0 < half["sent"] <= max(10, round(half["offered_per_s"] * 1.0))
    assert 0 < half["matched"] <= half["sent"]
    for name in ("end_to_end", "to_worker_produce"):
        p = half[name]
        assert 0 <= p["p50"] <= p["p95"] <= p["p99"] <= p["max"]
    # The warm-up events and the paced stream were all handled by the resumed group.
    assert latency["applied"] >= half["sent"]

    # With one round the medians are that round's figures.
    median = report["median"]
    assert median["workers"]["2"]["events_per_s"] == only["workers"]["2"]["events_per_s"]
    assert median["latency"]["loads"]["50"]["end_to_end"]["p99"] == half["end_to_end"]["p99"]

    # The run's topics and Redis keys are gone.
    assert only["topic"] in report["topics_deleted"]
    assert not [t for t in _topics(stack_settings) if t.startswith(f"segflow-bench-{report['run_id']}")]
    client = redis.Redis.from_url(stack_settings.redis_url)
    try:
        prefix = "bench" + report["run_id"].replace("-", "")
        assert not list(client.scan_iter(match=f"{prefix}*", count=1000))
    finally:
        client.close()

    table = render(report)
    assert "naive pipeline events/s" in table and "ratio 2 worker(s) / naive" in table
    document = json.loads(as_json(report))
    assert document["rounds"][0]["workers"]["1"]["applied"] == EVENTS
    assert any("round 1" in line for line in lines)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"events": 600, "batch": 500}, "at least twice --batch"),
        ({"rounds": 0}, "--rounds"),
        ({"workers": (1, 9), "partitions": 8}, "--workers"),
        ({"latency_loads": (0.0,)}, "--latency-loads"),
        ({"latency_seconds": 0.0}, "--latency-seconds"),
    ],
)
def test_bench_rejects_parameters_that_cannot_work(
    stack_settings: Settings, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_bench(stack_settings, BenchParams(**changes))  # type: ignore[arg-type]
