"""``segflow learner`` processes on real Kafka and Redis: published snapshots, crashes, standby.

Labels and decision outcomes (what bandits and lift read) go to the labels topic in waves,
shuffled, some twice, some ahead of their period; after each wave the test raises the label
frontiers (workers do that in production). The expected
snapshots are computed in this process by ``models.learner`` from the same labels, and every
published ``msnap:<k>`` must equal them byte for byte, however the learner process was killed
and restarted on the way, or replaced by its standby.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from helpers import with_redis
from learner_data import DAY, make_labels, shuffled_with_copies
from redis.asyncio import Redis

from engine.app import model_config
from engine.learner.lease import Lease, checkpoint_key_name, lease_key
from engine.learner.service import LearnerService
from engine.settings import Settings
from engine.topics import ensure_topics, start_or_close
from engine.worker_process import start_learner, stop_worker
from models.checkpoint import load_checkpoint
from models.label_messages import LabelMessage, label_key
from models.learner import Learner, encode_snapshot, period_of
from models.outcome_messages import OUTCOME_KIND, OUTCOME_SCHEMA, OutcomeMessage, encode_message
from models.snapshots import (
    ModelSnapshotStore,
    frontier_key,
    raise_sealed,
    read_frontier,
    snapshot_key,
    write_frontier,
)

pytestmark = pytest.mark.integration
KEY = "learner-test-key"
PARTITIONS = 4


def learner_settings(isolated: Settings) -> Settings:
    return isolated.model_copy(
        update={
            "events_partitions": PARTITIONS,
            "churn_days": 2.0,
            "clv_days": 3.0,
            "propensity_days": 2.0,
            "model_period_seconds": DAY,
            "learner_lease_seconds": 2.0,
            "checkpoint_key": KEY,
            "log_level": "info",
        }
    )


class Stream:
    """The labels of one test, delivered in waves, each followed by the frontiers it allows."""

    def __init__(self, settings: Settings, seed: int) -> None:
        self.settings = settings
        self.config = model_config(settings)
        self.labels = make_labels(self.config, 500, seed=seed, days=6, partitions=PARTITIONS)
        self.outcomes = [outcome_of(label, i) for i, label in enumerate(self.labels[::4])]
        first = period_of(min(m.due_ts for m in self.labels), DAY)
        self.last = period_of(max(m.due_ts for m in self.labels), DAY)
        self.cuts = [first + 2, first + 4, self.last]
        self.sent = 0

    def expected(self) -> dict[int, bytes]:
        learner = Learner(self.config, DAY, KEY.encode())
        for message in shuffled_with_copies([*self.labels, *self.outcomes], seed=1):  # type: ignore[list-item]
            learner.offer(encode_message(message))
        return {k: encode_snapshot(s) for k, s in learner.seal_through(self.last)}

    def wave(self, index: int) -> tuple[list[LabelMessage | OutcomeMessage], dict[int, float]]:
        """The messages due before wave ``index``'s cut, not sent yet, plus a few of later periods."""
        end = (self.cuts[index] + 1) * DAY
        previous = (self.cuts[index - 1] + 1) * DAY if index else float("-inf")
        messages: list[LabelMessage | OutcomeMessage] = [*self.labels, *self.outcomes]
        due = [m for m in messages if previous <= m.due_ts < end]
        ahead = [m for m in messages if end <= m.due_ts < end + DAY][::7]
        batch = shuffled_with_copies(due + ahead, seed=index)
        # Partition 3 lags by a period until the last wave: the seal waits for the slowest.
        lag = 0.0 if index == len(self.cuts) - 1 else DAY
        frontiers = {p: end - (lag if p == 3 else 0.0) for p in range(PARTITIONS)}
        return batch, frontiers

    async def send(self, index: int, extra: Sequence[bytes] = (), frontier: bool = True) -> int:
        """Deliver wave ``index`` (acked), then raise the frontiers; the version it makes sealable."""
        batch, _ = self.wave(index)
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all")
        await start_or_close(producer)
        try:
            topic = self.settings.labels_topic
            futures = [await producer.send(topic, encode_message(m), key=key_of(m)) for m in batch]
            futures += [await producer.send(topic, raw) for raw in extra]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        self.sent += len(batch) + len(extra)
        return await self.raise_frontier(index) if frontier else -1

    async def raise_frontier(self, index: int) -> int:
        """Publish wave ``index``'s frontiers; the version they make sealable."""
        _, frontiers = self.wave(index)
        client = Redis.from_url(self.settings.redis_url)
        try:
            await write_frontier(client, self.settings.key_prefix, frontiers)
        finally:
            await client.aclose()
        return period_of(min(frontiers.values()), DAY) - 1


def outcome_of(label: LabelMessage, index: int) -> OutcomeMessage:
    """A decision outcome due when ``label`` is (arms and groups spread by index)."""
    group = ("treated", "treated", "control", "global_control")[index % 4]
    return OutcomeMessage(
        schema=OUTCOME_SCHEMA,
        kind=OUTCOME_KIND,
        outcome_id=f"decision-{index}",
        action="winback",
        experiment="offer" if group != "global_control" else "",
        policy="thompson",
        group=group,
        variant=("a", "b")[index % 2] if group == "treated" else "",
        segment="lapsing",
        converted=index % 3 == 0,
        revenue=9.5 if index % 3 == 0 else 0.0,
        due_ts=label.due_ts,
    )


def key_of(message: LabelMessage | OutcomeMessage) -> bytes:
    return label_key(message) if isinstance(message, LabelMessage) else message.outcome_id.encode()


async def wait_sealed(store: ModelSnapshotStore, version: int, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await store.sealed_version() or -1) < version:
        assert loop.time() < deadline, f"version {version} not sealed in {timeout:g}s"
        await asyncio.sleep(0.1)


async def published(client: Redis, settings: Settings, stream: Stream) -> dict[int, bytes]:
    """Every snapshot in Redis from a few periods before the first label to a few after the last."""
    versions = range(period_of(min(m.due_ts for m in stream.labels), DAY) - 3, stream.last + 4)
    blobs = [await client.get(snapshot_key(settings.key_prefix, k)) for k in versions]
    return {k: bytes(blob) for k, blob in zip(versions, blobs, strict=True) if blob is not None}


async def reported(store: ModelSnapshotStore, version: int, timeout: float = 10.0) -> dict[str, Any]:
    """The learner's report once it describes ``version`` (it is written after the snapshots)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (report := await store.report()).get("sealed_version") != version:
        assert loop.time() < deadline, f"no report of version {version} in {timeout:g}s"
        await asyncio.sleep(0.05)
    return report


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.1)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def test_a_learner_publishes_the_snapshots_computed_in_process(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = learner_settings(isolated_settings)
    asyncio.run(ensure_topics(settings))
    stream = Stream(settings, seed=11)
    expected = stream.expected()

    async def body(client: Redis) -> None:
        store = ModelSnapshotStore(client, settings.key_prefix)
        process = start_learner(settings, tmp_path / "learner.log")
        try:
            for index in range(len(stream.cuts)):
                extra = [b"\x93not a label"] if index == 1 else []
                await wait_sealed(store, await stream.send(index, extra))
            assert await published(client, settings, stream) == expected
            report = await reported(store, stream.last)
        finally:
            assert stop_worker(process) == 0
        assert report["sealed_version"] == stream.last == max(expected)
        assert report["labels_consumed"] == stream.sent and report["malformed"] == 1
        assert report["labels_evaluated"] == len(stream.labels) and report["late"] == 0
        assert report["duplicates"] == stream.sent - 1 - len(stream.labels) - len(stream.outcomes)
        assert report["outcomes_tallied"] == len(stream.outcomes) > 100
        assert report["lag"] == 0 and report["buffered"] == 0
        assert set(report["reports"]) == {spec.name for spec in stream.config.specs}
        decoded = await store.load(stream.last)
        assert decoded is not None and decoded.labels_learned_total == report["labels_learned"]
        assert sum(t.outcomes for t in decoded.outcomes) == len(stream.outcomes)
        assert await client.get(lease_key(settings.key_prefix)) is None  # released on SIGTERM

    with_redis(settings, body)


def test_kill_9_mid_stream_then_restart_publishes_the_same_bytes(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = learner_settings(isolated_settings)
    asyncio.run(ensure_topics(settings))
    stream = Stream(settings, seed=12)
    expected = stream.expected()

    async def body(client: Redis) -> None:
        store = ModelSnapshotStore(client, settings.key_prefix)

        async def checkpointed_offset() -> int:
            blob = await client.get(checkpoint_key_name(settings.key_prefix))
            return -1 if blob is None else int(load_checkpoint(blob, KEY.encode())[1]["offset"])

        first = start_learner(settings, tmp_path / "first.log", ["--checkpoint-seconds", "0.2"])
        try:
            await wait_sealed(store, await stream.send(0))
            await stream.send(1, frontier=False)

            async def all_read() -> bool:
                return await checkpointed_offset() == stream.sent

            # Killed with a period's labels buffered and checkpointed, but not sealed.
            await wait_for(all_read, 20, "the buffered labels were never checkpointed")
        finally:
            kill(first)
        await stream.raise_frontier(1)
        await stream.send(2)
        second = start_learner(settings, tmp_path / "second.log")
        try:
            await wait_sealed(store, stream.last, timeout=30.0)
            assert await published(client, settings, stream) == expected
        finally:
            assert stop_worker(second) == 0
        assert f"from offset {stream.sent - len(stream.wave(2)[0])}," in (tmp_path / "second.log").read_text()

    with_redis(settings, body)


def test_only_the_lease_holder_learns_and_the_standby_takes_over(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = learner_settings(isolated_settings)
    asyncio.run(ensure_topics(settings))
    stream = Stream(settings, seed=13)
    expected = stream.expected()

    async def body(client: Redis) -> None:
        store = ModelSnapshotStore(client, settings.key_prefix)
        lease = lease_key(settings.key_prefix)

        async def held_by(process: subprocess.Popen[bytes]) -> bool:
            value = await client.get(lease)
            return value is not None and f":{process.pid}:" in value.decode()

        active = start_learner(settings, tmp_path / "active.log")
        standby: subprocess.Popen[bytes] | None = None
        try:
            await wait_for(lambda: held_by(active), 20, "the first learner never took the lease")
            standby = start_learner(settings, tmp_path / "standby.log")
            await wait_sealed(store, await stream.send(0))
            middle = await stream.send(1)
            await wait_sealed(store, middle)
            assert await held_by(active)
            assert f":{active.pid}:" in (await reported(store, middle))["owner"]
            kill(active)
            await stream.send(2)
            await wait_sealed(store, stream.last, timeout=30.0)
            assert await held_by(standby)
            assert f":{standby.pid}:" in (await reported(store, stream.last))["owner"]
            assert await published(client, settings, stream) == expected
        finally:
            kill(active) if active.poll() is None else None
            if standby is not None:
                assert stop_worker(standby) == 0
        log = (tmp_path / "standby.log").read_text()
        assert log.count("active (generation") == 1, log

    with_redis(settings, body)


class Crash(Exception):
    """Stands for the process dying at that point."""


@pytest.mark.parametrize("step", ["_publish", "_save"])
def test_a_crash_at_any_step_of_a_seal_republishes_the_same_bytes(
    isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    settings = learner_settings(isolated_settings)
    asyncio.run(ensure_topics(settings))
    stream = Stream(settings, seed=14)
    expected = stream.expected()

    async def body(client: Redis) -> None:
        store = ModelSnapshotStore(client, settings.key_prefix)
        original = getattr(LearnerService, step)

        async def crashing(self: LearnerService, *args: Any) -> None:
            if self.learner is not None and self.learner.sealed is not None:  # in the first seal
                raise Crash(step)
            await original(self, *args)

        monkeypatch.setattr(LearnerService, step, crashing)
        crashed = asyncio.create_task(LearnerService(settings, client, KEY.encode()).run(asyncio.Event()))
        await stream.send(0)
        with pytest.raises(Crash):
            await asyncio.wait_for(crashed, 20)
        before = await published(client, settings, stream)
        monkeypatch.setattr(LearnerService, step, original)
        await client.delete(lease_key(settings.key_prefix))  # the dead learner's lease runs out
        await stream.send(1)
        await stream.send(2)
        stop = asyncio.Event()
        restarted = asyncio.create_task(LearnerService(settings, client, KEY.encode()).run(stop))
        try:
            await wait_sealed(store, stream.last)
        finally:
            stop.set()
            await asyncio.wait_for(restarted, 20)
        assert (step == "_publish") == (before == {})
        assert before.items() <= expected.items()
        assert await published(client, settings, stream) == expected

    with_redis(settings, body)


def test_the_lease_fences_checkpoint_saves(isolated_settings: Settings) -> None:
    settings = learner_settings(isolated_settings)
    prefix = settings.key_prefix

    async def body(client: Redis) -> None:
        first, second = Lease(client, prefix, 0.3), Lease(client, prefix, 0.3)
        assert await first.try_acquire() and not await second.try_acquire()
        assert await first.renew() and await first.save(b"first")
        await asyncio.sleep(0.5)  # the first learner stalls past its ttl
        assert await second.try_acquire() and second.generation == (first.generation or 0) + 1
        assert not await first.save(b"stale") and first.value is None
        assert not await first.renew()
        assert await client.get(checkpoint_key_name(prefix)) == b"first"  # the stale save wrote nothing
        assert await second.save(b"second")
        await first.release()  # not its lease any more: nothing happens
        assert await second.holder() == second.value
        await second.release()
        assert await second.holder() is None and await first.try_acquire()
        held = first.value
        # Still held (a release that failed while Redis was away): kept at once, same generation.
        assert await first.try_acquire() and first.value == held and await first.holder() == held
        assert not await second.try_acquire()

    with_redis(settings, body)


def test_a_learner_that_loses_its_lease_stops_learning(isolated_settings: Settings) -> None:
    settings = learner_settings(isolated_settings)
    asyncio.run(ensure_topics(settings))
    stream = Stream(settings, seed=15)

    async def body(client: Redis) -> None:
        store = ModelSnapshotStore(client, settings.key_prefix)
        stop = asyncio.Event()
        service = LearnerService(settings, client, KEY.encode())
        running = asyncio.create_task(service.run(stop))
        try:
            await wait_sealed(store, await stream.send(0))
            await client.set(lease_key(settings.key_prefix), "another-learner:99", px=60_000)

            async def standing_by() -> bool:
                return not service.active

            await wait_for(standing_by, 5, "the learner kept its lost lease")
            sealed = await store.sealed_version()
            await stream.send(1)
            await asyncio.sleep(1.0)
            assert await store.sealed_version() == sealed and not service.active
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)

    with_redis(settings, body)


def test_frontiers_and_the_sealed_version_never_move_back(isolated_settings: Settings) -> None:
    prefix = isolated_settings.key_prefix

    async def body(client: Redis) -> None:
        assert await read_frontier(client, prefix) == {}
        assert await write_frontier(client, prefix, {0: 5.5, 1: 7.0}) == 2
        assert await write_frontier(client, prefix, {0: 3.0, 1: 8.25, 2: float("inf")}) == 2
        assert await read_frontier(client, prefix) == {0: 5.5, 1: 8.25, 2: float("inf")}
        assert await client.hget(frontier_key(prefix), "1") == b"8.25"
        with pytest.raises(ValueError, match="must be a number"):
            await write_frontier(client, prefix, {0: float("nan")})
        store = ModelSnapshotStore(client, prefix)
        assert await store.sealed_version() is None and await store.report() == {}
        assert await raise_sealed(client, prefix, 20_460) == 20_460
        assert await raise_sealed(client, prefix, 20_455) == 20_460
        assert await store.sealed_version() == 20_460
        assert await store.load(20_460) is None  # sealed, but before the first label: untrained

    with_redis(isolated_settings, body)
