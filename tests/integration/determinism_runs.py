"""Running one event stream through segflow in several ways, and what each run decided.

Helpers of ``test_determinism.py``: worker-process runs on the real stack (clean, two workers,
a SIGKILL, a Redis restart, a broker restart) and a replay of the same records straight into the pipeline
without Kafka, each giving the run's ``Outcome`` read back from Redis and the changes topic.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from determinism_outcome import Outcome, add_action, add_change, add_label, add_outcome
from fleet import Fleet
from helpers import wait_until

from engine.app import build_pipeline, checkpoint_key
from engine.cli.io import iter_payloads, produce_lines, read_to_end
from engine.codecs import decode_msgpack
from engine.evaluate import remove_keys
from engine.learner.local import LocalLearner
from engine.settings import Settings, namespaced
from engine.stack import kafka as kafka_server
from engine.stack import redis as redis_server
from engine.stream.batch_records import ACTION, LABEL, OUTCOME, SEGMENT_CHANGE, RawRecord
from engine.stream.customer_step import MEMBERSHIP_EXTRA
from engine.stream.replay import replay as replay_log
from engine.topics import ensure_topics, start_or_close
from engine.worker_process import read_metrics
from features.client import connect
from features.redis_store import RedisFeatureStore
from models.label_messages import decode_label
from models.snapshots import ModelSnapshotStore

APPLIED, DEAD, DUPLICATE = (
    "segflow_events_applied_total",
    "segflow_events_dead_lettered_total",
    "segflow_events_duplicate_total",
)
TICKED, RETRIES = "segflow_customers_ticked_total", "segflow_batch_retries_total"
STALL_SECONDS = 90.0
"""A run in which nothing moved for this long is stuck (a Redis restart's recovery takes ~15 s)."""
CATCH_UP_TIMEOUT = 600.0
"""The bound on a whole run that keeps moving (~80 s on a quiet 2-core machine)."""
QUIET_SECONDS = 3.0


def partition_of(key: bytes, partitions: int) -> int:
    """The partition ``produce_lines``' producer (aiokafka's default partitioner) picks for ``key``."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def kafka_order(settings: Settings, path: Path, per_partition: int) -> Iterator[list[RawRecord]]:
    """The records of ``path`` as the workers fetch them: partitioned by key, offsets in produce
    order, each batch up to ``per_partition`` records of every partition in partition order."""
    queues: dict[int, list[RawRecord]] = {}
    for key, value in iter_payloads(path, "jsonl", "msgpack", False):
        assert key is not None
        partition = partition_of(key, settings.events_partitions)
        queue = queues.setdefault(partition, [])
        queue.append(RawRecord(settings.events_topic, partition, len(queue), key, value))
    cursor = 0
    while any(cursor < len(queue) for queue in queues.values()):
        yield [r for p in sorted(queues) for r in queues[p][cursor : cursor + per_partition]]
        cursor += per_partition


async def read_store(settings: Settings, customers: Sequence[str]) -> Outcome:
    """Every customer's state and memberships as stored under the settings' key prefix, and the
    decision-outcome tallies of every sealed model snapshot (what bandits read)."""
    client = connect(settings.redis_url)
    try:
        records = await RedisFeatureStore(client, prefix=settings.key_prefix).load(list(customers))
        tallies = await _sealed_tallies(
            ModelSnapshotStore(client, settings.key_prefix, checkpoint_key(settings))
        )
    finally:
        await client.aclose()
    memberships = {}
    for cid, record in records.items():
        raw = record.extras.get(MEMBERSHIP_EXTRA)
        members = decode_msgpack(raw) if raw is not None else {}
        memberships[cid] = {family: (m[0], m[1]) for family, m in members.items()}
    return Outcome({cid: r.state for cid, r in records.items()}, memberships, {}, tallies=tallies)


async def _sealed_tallies(store: ModelSnapshotStore) -> dict[int, str]:
    sealed = await store.sealed_version()
    tallies = {}
    for version in range(sealed + 1 if sealed is not None else 0):
        snapshot = await store.load(version)
        if snapshot is not None:
            tallies[version] = repr(snapshot.outcomes)
    return tallies


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> dict[TopicPartition, int]:
    return await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])


async def read_changes_topic(settings: Settings, into: Outcome) -> None:
    """Add every change event, action decision, outcome and label of the run's topics to ``into``."""
    adders = {
        settings.changes_topic: add_change,
        settings.actions_topic: add_action,
        settings.outcomes_topic: add_outcome,
        settings.labels_topic: add_label,
    }
    for topic, add in adders.items():
        await read_to_end(settings, topic, on_record=lambda record, add=add: add(into, record.value))


async def _committed(settings: Settings, consumer: AIOKafkaConsumer) -> tuple[bool, int]:
    """Whether the group committed every event, and the sum of its committed offsets."""
    ends = await _end_offsets(consumer, settings.events_topic, settings.events_partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await start_or_close(admin)
    try:
        committed = await admin.list_consumer_group_offsets(settings.app_id)
    except KafkaError:  # e.g. no coordinator yet: the group has not committed anything
        return False, 0
    finally:
        await admin.close()
    done = all(tp in committed and committed[tp].offset >= end for tp, end in ends.items() if end)
    return done, sum(max(0, c.offset) for tp, c in committed.items() if tp.topic == settings.events_topic)


async def _progress(settings: Settings) -> str:
    """The events topic's end offsets beside the group's committed ones, for a failure message."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await start_or_close(consumer)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await start_or_close(admin)
    try:
        ends = await _end_offsets(consumer, settings.events_topic, settings.events_partitions)
        committed = await admin.list_consumer_group_offsets(settings.app_id)
    except KafkaError as exc:
        return f"offsets not read ({exc!r})"
    finally:
        await admin.close()
        await consumer.stop()
    rows = [
        f"p{tp.partition}: end {end}, committed {committed[tp].offset if tp in committed else '-'}"
        for tp, end in sorted(ends.items())
    ]
    return "; ".join(rows)


async def _wait_done(fleet: Fleet) -> str | None:
    """Every event committed by the group, then no new change and no tick for a while.

    None when done; otherwise why not: nothing moved (commits, applied events, ticks) for
    ``STALL_SECONDS`` (a stuck run), or the run was still moving at ``CATCH_UP_TIMEOUT`` (a
    machine far slower than expected). A slow run is not a failure; a stuck one is.
    """
    settings = fleet.settings
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await start_or_close(consumer)
    try:
        started = time.monotonic()
        mark: tuple[int, ...] | None = None
        moved_at = started
        while True:
            done, committed = await _committed(settings, consumer)
            if done:
                break
            now = time.monotonic()
            progress = (committed, fleet.metric(APPLIED), fleet.metric(TICKED))
            if progress != mark:
                mark, moved_at = progress, now
            if now - moved_at > STALL_SECONDS:
                return f"nothing moved for {STALL_SECONDS:.0f}s (committed, applied, ticked: {mark})"
            if now - started > CATCH_UP_TIMEOUT:
                return f"still catching up after {CATCH_UP_TIMEOUT:.0f}s"
            await asyncio.sleep(0.5)
        # Ticks (labels, timed segments) go on after the last event: wait until they rest.
        last: tuple[int, int] | None = None
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < QUIET_SECONDS:
            ends = await _end_offsets(consumer, settings.changes_topic, settings.changes_partitions)
            now_mark = (sum(ends.values()), fleet.metric(TICKED))
            if now_mark != last:
                last, quiet_since = now_mark, time.monotonic()
            if time.monotonic() - started > CATCH_UP_TIMEOUT:
                return f"changes and ticks still moving after {CATCH_UP_TIMEOUT:.0f}s"
            await asyncio.sleep(0.5)
        return None
    finally:
        await consumer.stop()


async def produce(settings: Settings, path: Path) -> int:
    """Create the run's topics and publish the events file keyed by customer."""
    await ensure_topics(settings)
    return await produce_lines(settings, path, "jsonl", "msgpack", False, settings.events_topic)


Disturbance = Callable[[Fleet, int], dict[str, int]]
"""Something done to a running fleet mid-stream (given the event count); returns notes."""


def worker_run(
    settings: Settings,
    path: Path,
    customers: Sequence[str],
    logs: Path,
    workers: int = 1,
    disturb: Disturbance | None = None,
    publish: Callable[[Settings, Path], int] | None = None,
) -> Outcome:
    """Produce the events (``publish``: another way than ``produce``, returning how many), run
    ``workers`` worker processes (disturbed), collect the outcome."""
    total = publish(settings, path) if publish is not None else asyncio.run(produce(settings, path))
    fleet = Fleet(settings, logs)
    try:
        for _ in range(workers):
            fleet.start()
        notes = disturb(fleet, total) if disturb is not None else {}
        why_not = asyncio.run(_wait_done(fleet))
        if why_not is not None:
            progress = asyncio.run(_progress(settings))
            raise AssertionError(
                f"the run did not finish: {why_not}\n{progress}\n{fleet.diagnose()}\n{fleet.log_tail(40)}"
            )
        notes |= {name: fleet.metric(name) for name in (APPLIED, DEAD, DUPLICATE, TICKED, RETRIES)}
        for index, (own, process) in enumerate(fleet.workers):
            if process.poll() is None:
                notes[f"worker{index}_applied"] = read_metrics(own.web_port, own.web_secret).get(APPLIED, 0)
        notes["workers_alive_at_end"] = sum(p.poll() is None for _, p in fleet.workers)
    finally:
        fleet.stop()
    outcome = asyncio.run(read_store(settings, customers))
    asyncio.run(read_changes_topic(settings, outcome))
    outcome.notes = notes
    return outcome


def _wait_applied(fleet: Fleet, at_least: int) -> int:
    reached = wait_until(lambda: fleet.metric(APPLIED) >= at_least, 90, every=0.1)
    applied = fleet.metric(APPLIED)
    assert reached, f"the worker never applied {at_least} events\n{fleet.log_tail()}"
    return applied


def kill_midway(fleet: Fleet, total: int) -> dict[str, int]:
    """SIGKILL the worker once it applied a good part of the events; start a fresh one."""
    applied = _wait_applied(fleet, total * 2 // 5)
    _, first = fleet.workers[0]
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    fleet.start()
    return {"applied_before_kill": applied}


def restart_redis_midway(fleet: Fleet, total: int, down_seconds: float = 4.0) -> dict[str, int]:
    """Stop the Redis server (the stack's own script) mid-stream, keep it down, start it again."""
    return _restart_midway(fleet, total, redis_server, "redis", down_seconds)


def restart_broker_midway(fleet: Fleet, total: int, down_seconds: float = 15.0) -> dict[str, int]:
    """Stop the broker (the stack's own script) mid-stream, keep it down, start it again."""
    return _restart_midway(fleet, total, kafka_server, "broker", down_seconds)


def _restart_midway(fleet: Fleet, total: int, server: Any, name: str, down_seconds: float) -> dict[str, int]:
    applied = _wait_applied(fleet, total * 2 // 5)
    server.down(fleet.settings)
    time.sleep(down_seconds)
    server.up(fleet.settings)
    return {f"applied_before_{name}_stop": applied}


async def replay(settings: Settings, path: Path, customers: Sequence[str]) -> Outcome:
    """The same records straight through ``SegmentPipeline`` (no Kafka): ``engine.stream.replay``
    feeds fetch-like batches, ticks after each, offers held records again, and an in-process
    learner (``engine.learner.local``) learns the labels and seals the model snapshots."""
    pipeline = build_pipeline(settings)
    notes: Counter[str] = Counter()
    try:
        per_partition = max(1, settings.batch_max_events // settings.events_partitions)
        records = [r for batch in kafka_order(settings, path, per_partition) for r in batch]
        result = await replay_log(
            pipeline, records, LocalLearner(settings, pipeline.store.client), per_partition
        )
        changes = list(result.delivered)
        notes["applied"], notes["held"] = result.applied, result.held
        # The worker's timer keeps ticking after the last event: tick until nothing is due.
        for _ in range(100):
            ticked = await pipeline.tick()
            changes += ticked.changes
            pipeline.defer_clear(ticked.changes)
            notes["ticked"] += ticked.ticked
            if not ticked.ticked:
                break
        await pipeline.flush_cleared()
        own = {p: pipeline.clock.watermark(p) for p in range(settings.events_partitions)}
    finally:
        await pipeline.store.client.aclose()
    outcome = await read_store(settings, customers)
    adders = {SEGMENT_CHANGE: add_change, ACTION: add_action, OUTCOME: add_outcome, LABEL: add_label}
    for change in changes:
        if change.kind in adders:
            adders[change.kind](outcome, change.payload)
    # Once a partition's records are all in, the replay releases it as idle (engine.stream.replay):
    # its timers go on to the furthest partition's watermark. A worker run's stay at the partition's
    # own (idleness takes an hour of wall-clock time there), so the labels that mature in between,
    # due at or after their partition's own final watermark, are the replay's alone: left out.
    replay_only = set()
    for change in changes:
        if change.kind != LABEL:
            continue
        label = decode_label(change.payload)
        own_watermark = own.get(label.partition)
        if own_watermark is None or label.due_ts >= own_watermark:
            replay_only.add(label.label_id)
    for label_id in replay_only:
        outcome.labels.pop(label_id, None)
    notes["labels_after_own_watermark"] = len(replay_only)
    outcome.notes = dict(notes)
    return outcome


def namespaced_runs(
    base: Settings, name: str, update: Mapping[str, Any]
) -> Iterator[Callable[[str], Settings]]:
    """A fixture's body: yields a maker of fresh settings per run (own topics, consumer group and
    key prefix, then ``update``), and afterwards deletes every run's Redis keys and topics."""
    tag = uuid.uuid4().hex[:8]
    made: list[Settings] = []

    def make(run: str) -> Settings:
        settings = namespaced(base, f"{name}-{tag}-{run}", f"{name[0]}{tag}{run}").model_copy(
            update=dict(update)
        )
        made.append(settings)
        return settings

    yield make
    for settings in made:
        asyncio.run(remove(settings))


async def remove(settings: Settings) -> None:
    """Delete the run's Redis keys and topics."""
    await remove_keys(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await start_or_close(admin)
    try:
        existing = set(await admin.list_topics())
        names = [settings.events_topic, settings.changes_topic, settings.dlq_topic, settings.labels_topic]
        names += [settings.actions_topic, settings.outcomes_topic, settings.actions_dlq_topic]
        await admin.delete_topics([n for n in names if n in existing])
    finally:
        await admin.close()
