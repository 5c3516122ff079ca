"""Decisions replay (#10): the same events decide the same, however they are processed.

One seeded simulated stream (``models.simulate``; default settings, so every rule family of
the shipped rules is on) is processed in several ways, each in its own namespace (topics,
consumer group, Redis key prefix), on the real stack:

(a) clean, one worker process: the reference;
(b) clean, two worker processes in one consumer group;
(c) no Kafka: the same records straight into ``SegmentPipeline.process``, on the partition the
    producer picks for their key, at the offsets Kafka gives them, in fetch-like batches that
    interleave partitions, with a ``tick`` after every batch as the worker's timer does;
(d) the gauntlet (``fault_runs.gauntlet``): two workers; Redis paused with ``CLIENT PAUSE``,
    then stopped and started (AOF on); one worker SIGKILLed and the other takes its partitions
    over; the broker stopped and started; the survivor SIGTERMed under load; a fresh worker
    finishes;
(e) network faults: one worker behind toxiproxy, its Redis and Kafka links slow, reset, silent
    and refused (``fault_runs.link_faults``).

``pytest --faults full`` (by hand) makes the faults longer (a 30 s pause, 15 s outages and
drops, 30 s of latency) and also runs a SIGKILL and restart, a Redis restart and a broker
restart each on its own.

A run ends once the consumer group committed every event and then neither a change event nor a
tick happened for a few seconds. Every customer's feature state, their final membership in
every family, the set of change ids emitted and, in every worker run, the labels resolved
(every field) must then equal (a)'s. The replay without Kafka releases each partition as idle
once its records are all in, so its timers go on to the furthest partition's watermark: the
labels due at or after their partition's own final watermark (2 held churn labels of 5,302 here)
mature in the replay only and are left out of its labels (``determinism_runs.replay``). A
change event may be delivered twice, with the same id, so ids are compared as sets.

The runs' rules are the shipped ones with the shipped win-back actions also on entering the
lifecycle segment 'lapsing' (entered often in 60 days, unlike 'Likely to Churn', which waits for
a trained churn model), so that action decisions and their outcomes are compared too: the same
ids with the same content (but the wall-clock ``emitted_ts``) in every run. Lift is computed
from the outcomes alone, so a SIGKILL that redelivers events changes no lift. The in-app
message's Thompson bandit leaves exploration after 10 outcomes per arm here (100 shipped), so
its arms are drawn from sealed outcome tallies for most of the run: every snapshot sealed in two
runs must tally the same outcomes (the bandit state), and every decision draw the same arm.

Every run sets ``idle_advance_seconds`` to an hour: once a partition has seen no event for that
long in wall-clock time, its watermark advances with the wall clock. That is the one documented
way the wall clock enters decisions, and it is kept out of what this test compares. Every other
setting is the default; every run uses the same number of events partitions.
"""

from __future__ import annotations

import ast
import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from determinism_outcome import Outcome, accounted, describe, same
from determinism_runs import (
    APPLIED,
    DEAD,
    RETRIES,
    kill_midway,
    namespaced_runs,
    partition_of,
    replay,
    restart_broker_midway,
    restart_redis_midway,
    worker_run,
)
from fault_runs import FaultScale, gauntlet, network_faults
from proxy_helpers import behind_proxies, toxiproxy_up

from engine.activation.demo_experiment import demo_rules_text
from engine.app import load_rule_set
from engine.rules.loader import DEFAULT_RULES_PATH
from engine.settings import Settings
from engine.topics import start_or_close, topic_partitions
from models.population import DAY_MS, PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration

# About 71k events over 60 days. 1,000 customers would be 118k events, ~40 s per worker run on a
# 2-core machine: too slow for the suite; 600 still put hundreds of customers in every quintile.
POPULATION = PopulationConfig(customers=600, days=60, seed=10)
PARTITIONS = 8
BATCH_MAX_EVENTS = 500
IDLE_ADVANCE_SECONDS = 3600.0


@dataclass(frozen=True)
class Stream:
    """The events file every run reads, and what it holds."""

    path: Path
    customers: list[str]
    count: int
    partition_counts: dict[int, int]


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    events = list(generate_events(POPULATION))
    span_days = (events[-1]["ts"] - events[0]["ts"]) / DAY_MS
    assert len(events) >= 10_000 and span_days >= 59, (len(events), span_days)
    path = tmp_path_factory.mktemp("determinism") / "events.jsonl"
    write_jsonl(events, path)
    counts: dict[int, int] = {}
    for event in events:
        partition = partition_of(event["customer_id"].encode(), PARTITIONS)
        counts[partition] = counts.get(partition, 0) + 1
    return Stream(path, sorted({e["customer_id"] for e in events}), len(events), counts)


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped rules, with the win-back actions on entering 'lapsing' as well."""
    text = demo_rules_text(DEFAULT_RULES_PATH.read_text())
    assert text is not None and text.count("policy: thompson") == 1
    text = text.replace("policy: thompson", "policy: thompson\n        bandit: {min_rewards: 10}")
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def run_settings(stack_settings: Settings, rules_file: Path) -> Iterator[Callable[[str], Settings]]:
    """Fresh settings per run (own topics, group and key prefix); the runs' data goes afterwards."""
    update = {
        "events_partitions": PARTITIONS,
        "changes_partitions": PARTITIONS,
        "batch_max_events": BATCH_MAX_EVENTS,
        "idle_advance_seconds": IDLE_ADVANCE_SECONDS,
        "rules_file": rules_file,
    }
    yield from namespaced_runs(stack_settings, "det", update)


@pytest.fixture(scope="module")
def fault_scale(request: pytest.FixtureRequest) -> FaultScale:
    """How hard the gauntlet hits (``pytest --faults quick|full``, tests/conftest.py)."""
    return FaultScale.named(str(request.config.getoption("--faults")))


@pytest.fixture(scope="module")
def families(stack_settings: Settings) -> list[str]:
    return [family.name for family in load_rule_set(stack_settings).families]


@pytest.fixture(scope="module")
def reference_settings(run_settings: Callable[[str], Settings]) -> Settings:
    return run_settings("clean1")


@pytest.fixture(scope="module")
def reference(
    reference_settings: Settings, stream: Stream, tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    """Run (a): one clean worker process."""
    logs = tmp_path_factory.mktemp("clean1")
    return worker_run(reference_settings, stream.path, stream.customers, logs)


async def _events_per_partition(settings: Settings) -> dict[int, int]:
    partitions = await topic_partitions(settings, settings.events_topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await start_or_close(consumer)
    try:
        ends = await consumer.end_offsets([TopicPartition(settings.events_topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items() if end}


def test_the_clean_run_is_a_sound_reference(
    reference: Outcome, reference_settings: Settings, stream: Stream, families: list[str]
) -> None:
    assert accounted(reference) == stream.count
    assert reference.notes[APPLIED] + reference.notes[DEAD] == stream.count, reference.notes
    # The replay puts each record where the producer did: the same count on every partition.
    assert asyncio.run(_events_per_partition(reference_settings)) == stream.partition_counts
    assert reference.changes, "no change events: nothing to compare"
    assert reference.labels, "no resolved labels: nothing to compare"
    decisions = Counter(decode_msgpack_repr(text)["decision"] for text in reference.actions.values())
    assert decisions["send"] and decisions["control"] and decisions["cooldown"], decisions
    groups = Counter(decode_msgpack_repr(text)["group"] for text in reference.outcomes.values())
    assert groups["treated"] and groups["control"], groups
    # The bandit left exploration: some in-app decisions were drawn with probabilities other than
    # the exploring 1/2 (times the 95% outside the global control group).
    bandit = [decode_msgpack_repr(t) for t in reference.actions.values() if "winback_message" in t]
    sent = [d for d in bandit if d["decision"] == "send"]
    assert sent and any(abs(float(d["probability"]) - 0.475) > 0.01 for d in sent), sent[:3]
    assert reference.tallies and "winback_message" in reference.tallies[max(reference.tallies)]


def decode_msgpack_repr(text: str) -> dict[str, object]:
    """A decision or outcome as ``determinism_outcome`` keeps it (the repr of its sorted items)."""
    return dict(ast.literal_eval(text))


def _two_workers(settings: Settings, stream: Stream, logs: Path) -> Outcome:
    outcome = worker_run(settings, stream.path, stream.customers, logs, workers=2)
    assert outcome.notes["worker0_applied"] and outcome.notes["worker1_applied"], outcome.notes
    return outcome


def _kill9(settings: Settings, stream: Stream, logs: Path) -> Outcome:
    outcome = worker_run(settings, stream.path, stream.customers, logs, disturb=kill_midway)
    assert 0 < outcome.notes["applied_before_kill"] < stream.count, outcome.notes
    assert outcome.notes["worker1_applied"] > 0, f"the second worker took nothing over: {outcome.notes}"
    return outcome


def _redis_restart(settings: Settings, stream: Stream, logs: Path) -> Outcome:
    outcome = worker_run(settings, stream.path, stream.customers, logs, disturb=restart_redis_midway)
    assert outcome.notes["workers_alive_at_end"] == 1, f"the worker did not survive: {outcome.notes}"
    assert outcome.notes[RETRIES] > 0, f"the worker never noticed Redis was down: {outcome.notes}"
    return outcome


def _broker_restart(settings: Settings, stream: Stream, logs: Path) -> Outcome:
    outcome = worker_run(settings, stream.path, stream.customers, logs, disturb=restart_broker_midway)
    assert outcome.notes["workers_alive_at_end"] == 1, f"the worker did not survive: {outcome.notes}"
    assert outcome.notes["applied_before_broker_stop"] < stream.count, outcome.notes
    return outcome


def _replay(settings: Settings, stream: Stream, logs: Path) -> Outcome:
    return asyncio.run(replay(settings, stream.path, stream.customers))


SCENARIOS: dict[str, Callable[[Settings, Stream, Path], Outcome]] = {
    "two_workers": _two_workers,
    "replay_without_kafka": _replay,
}
FULL_SCENARIOS: dict[str, Callable[[Settings, Stream, Path], Outcome]] = {
    "kill9": _kill9,
    "redis_restart": _redis_restart,
    "broker_restart": _broker_restart,
}
"""Faults the gauntlet also does, each in a run of its own with ``--faults full`` (by hand)."""


@pytest.mark.parametrize("scenario", [*SCENARIOS, *FULL_SCENARIOS])
def test_decisions_replay(
    scenario: str,
    reference: Outcome,
    run_settings: Callable[[str], Settings],
    stream: Stream,
    families: list[str],
    tmp_path: Path,
    fault_scale: FaultScale,
) -> None:
    if scenario in FULL_SCENARIOS and not fault_scale.full:
        pytest.skip("part of the gauntlet; a run of its own with --faults full")
    run = SCENARIOS.get(scenario) or FULL_SCENARIOS[scenario]
    outcome = run(run_settings(scenario.replace("_", "")[:12]), stream, tmp_path)
    left_out = outcome.notes.get("labels_after_own_watermark", 0)
    assert left_out <= len(reference.labels) // 100, f"{scenario}: {left_out} labels left out"
    _assert_decided_as(reference, outcome, scenario, stream, families)


def _assert_decided_as(
    reference: Outcome, outcome: Outcome, scenario: str, stream: Stream, families: list[str]
) -> None:
    assert accounted(outcome) == stream.count, f"{scenario}: not every event was applied once"
    identical = same(reference, outcome)  # a bool, so that pytest does not print both outcomes
    assert identical, describe(scenario, reference, outcome, families)


def test_decisions_survive_the_fault_gauntlet(
    reference: Outcome,
    run_settings: Callable[[str], Settings],
    stream: Stream,
    families: list[str],
    tmp_path: Path,
    fault_scale: FaultScale,
) -> None:
    """(f) Two workers; Redis ``CLIENT PAUSE``d, then stopped and started; one worker SIGKILLed,
    the other takes its partitions over; the broker stopped and started; the survivor SIGTERMed
    under load; a fresh worker finishes (``fault_runs.gauntlet``). One run for the lot keeps CI
    short; ``--faults full`` also runs the kill, the Redis and the broker restart each on its own."""
    settings = run_settings("gauntlet")
    outcome = worker_run(
        settings, stream.path, stream.customers, tmp_path, workers=2, disturb=gauntlet(fault_scale)
    )
    notes = outcome.notes
    print(f"gauntlet {fault_scale}: {notes}")  # the takeover and stop times, reported, not timed
    assert notes["sigterm_exit_code"] == 0 and not notes["sigterm_forced"], (
        f"SIGTERM did not stop cleanly: {notes}"
    )
    assert notes["workers_alive_at_end"] == 1, notes
    _assert_decided_as(reference, outcome, "gauntlet", stream, families)


def test_decisions_survive_network_faults(
    reference: Outcome,
    run_settings: Callable[[str], Settings],
    stream: Stream,
    families: list[str],
    tmp_path: Path,
    fault_scale: FaultScale,
    stack_settings: Settings,
) -> None:
    """(g) One worker reaching Kafka and Redis only through the stack's toxiproxy
    (``segflow stack up --proxy``; the broker's ``PROXIED`` listener keeps a Kafka client behind
    the proxy): the Redis link slow, reset, then silent; the Kafka link slow, silent, then
    refused (``fault_runs.link_faults``). The Redis socket timeout is lowered to 3 s (30 s by
    default), so that a silent Redis costs seconds per batch, not half a minute."""
    api = toxiproxy_up(stack_settings)
    settings = behind_proxies(run_settings("network")).model_copy(
        update={"redis_socket_timeout_seconds": 3.0}
    )
    try:
        outcome = worker_run(
            settings, stream.path, stream.customers, tmp_path, disturb=network_faults(api, fault_scale)
        )
    finally:
        api.reset()
    notes = outcome.notes
    print(f"network faults {fault_scale}: {notes}; change events sent twice: {outcome.sent_twice}")
    assert notes["workers_alive_at_end"] == 1, f"the worker did not survive: {notes}"
    assert notes["committed_after_kafka_refused"] < stream.count, f"the faults came after the stream: {notes}"
    assert notes[RETRIES] > 0, f"the worker never noticed Redis was unreachable: {notes}"
    _assert_decided_as(reference, outcome, "network faults", stream, families)
