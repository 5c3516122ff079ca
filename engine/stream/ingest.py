"""Whole fetched batches of the events topic, straight from aiokafka to the pipeline.

Faust's per-message path (drain loop, conductor, ``Event``, stream buffer, per-event ack) costs
~110 us a message before any of our code runs: a ceiling of ~9,000 messages/s per core. So the
events topic is read by a plain ``AIOKafkaConsumer`` that this service owns (route (b) of the
batch-ingestion design, chosen over subclassing Faust's consumer drain loop because it relies on
no Faust internals): ``getmany`` hands over what one fetch returned, already parsed by aiokafka
(~1 us a record), and the batch goes to the pipeline as plain ``RawRecord`` tuples.

Faust still runs the app: lifecycle and signals, the web server, timers. Group membership,
rebalances and offset commits of the events topic are aiokafka's, with a rebalance listener
that finishes the batch in flight, commits what was delivered and releases the revoked
partitions' state before they move. Offsets are committed only after a batch's output was
acknowledged by the broker and its outbox entries were removed from Redis (by the next batch's
commit round trip, or a flush when the stream goes quiet), at most once per batch and at least
every ``commit_interval_seconds``; anything not committed is redelivered, and the store's
offset fencing makes a redelivery change nothing.

While the handler retries a batch (Redis or the broker down: ``engine.stream.backpressure``), this
loop waits for it and the consumer is not polled: aiokafka keeps at most one prefetched fetch per
partition, so memory stays bounded however much waits on the topic, and the group membership is
kept by aiokafka's heartbeat (up to its ``max_poll_interval_ms``, 5 minutes; past that it rejoins).
A handler raising ``StopConsuming`` stops the loop with the batch uncommitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, RebalanceInProgressError
from mode import Service

from engine.kafka_clients import kafka_options
from engine.settings import Settings
from engine.stream.batch_records import RawRecord

log = logging.getLogger(__name__)

HOLD_SECONDS = 0.05
"""How long the events of a partition that wait for a snapshot are left before they are offered again."""
EMPTY_REFRESH_SECONDS = 5.0


class StopConsuming(Exception):
    """Raised by a batch handler: the worker cannot go on and is stopping (the handler logged why).

    The ingest loop stops fetching and leaves the batch uncommitted; it is redelivered to
    whichever worker owns its partitions next.
    """


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of one batch.

    ``ticket``: the outbox-clear ticket; the batch may be committed once ``cleared()`` reaches
    it (None: it must not be committed and is fetched again). ``held``: partition -> first
    offset not processed (it waits for other partitions in event time): fetched again later.
    """

    ticket: int | None
    held: dict[int, int]


BatchHandler = Callable[[list[RawRecord]], Awaitable[Handled]]
PartitionsHandler = Callable[[list[int]], Awaitable[None]]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingest: BatchIngest) -> None:
        self._ingest = ingest

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._ingest.revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        # Nothing to do here: the next tick claims the new partitions' models under the lock,
        # so a rebalance never waits on Redis.
        return


class BatchIngest(Service):
    """Consumes the events topic in fetched batches and owns the producer of the outputs."""

    def __init__(
        self,
        settings: Settings,
        handle: BatchHandler,
        flush: Callable[[], Awaitable[int]],
        cleared: Callable[[], int],
        on_revoked: PartitionsHandler,
        lock: asyncio.Lock,
        on_held: Callable[[], Awaitable[None]] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self._handle = handle
        self._flush = flush
        self._cleared = cleared
        self._awaiting: list[tuple[int, dict[TopicPartition, int]]] = []
        """Delivered batches whose outbox entries are not removed yet: (ticket, next offsets)."""
        self._on_revoked = on_revoked
        self._on_held = on_held
        """Called after a batch that left partitions held, once its bookkeeping is done."""
        self._lock = lock
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._delivered: dict[TopicPartition, int] = {}
        """Next offset to commit per partition: everything below it was delivered."""
        self._last_commit = time.monotonic()
        self._paused: dict[TopicPartition, float] = {}
        """Held partitions (paused in the consumer) and when to offer them again (monotonic time)."""
        self._held: dict[TopicPartition, list[RawRecord]] = {}
        """Held partitions' records from their first unprocessed one, in offset order."""
        self.empty_partitions: set[int] = set()
        """Partitions of the events topic whose log is empty (they hold no snapshot back)."""
        self._empty_checked = float("-inf")

    async def on_start(self) -> None:
        """Connect the producer, then join the consumer group."""
        s = self.settings
        self.producer = AIOKafkaProducer(
            **kafka_options(s),
            client_id=f"{s.app_id}-producer",
            acks="all",
            enable_idempotence=True,
            linger_ms=s.produce_linger_ms,
            max_batch_size=1 << 20,
        )
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **kafka_options(s),
            client_id=f"{s.app_id}-events",
            group_id=s.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max_events,
            fetch_max_wait_ms=max(1, round(s.batch_within_seconds * 1000)),
            max_partition_fetch_bytes=s.fetch_partition_bytes,
            fetch_max_bytes=max(s.fetch_partition_bytes * 4, 50 << 20),
            session_timeout_ms=round(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=round(s.heartbeat_interval_seconds * 1000),
        )
        self.consumer.subscribe([s.events_topic], listener=_Rebalance(self))
        await self.consumer.start()

    async def on_stop(self) -> None:
        """Finish the batch in flight, commit, leave the group (revoking), close the producer."""
        consumer, producer = self.consumer, self.producer
        if consumer is not None:
            await self.revoked(self.assignment())
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    def assignment(self) -> list[int]:
        """The events-topic partitions assigned to this worker now."""
        if self.consumer is None:
            return []
        topic = self.settings.events_topic
        return sorted(tp.partition for tp in self.consumer.assignment() if tp.topic == topic)

    @Service.task
    async def _consume(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        timeout_ms = max(1, round(self.settings.batch_within_seconds * 1000))
        while not self.should_stop:
            try:
                await self._consume_once(consumer, timeout_ms)
            except StopConsuming:
                # The handler said why and stops the worker; the batch in flight stays uncommitted.
                return

    async def _consume_once(self, consumer: AIOKafkaConsumer, timeout_ms: int) -> None:
        """Fetch once (or offer held records again), handle the batch, commit what may be."""
        try:
            fetched = await consumer.getmany(
                timeout_ms=self._fetch_wait_ms(timeout_ms), max_records=self.settings.batch_max_events
            )
        except (KafkaError, IllegalStateError) as exc:
            log.warning("fetch failed (%s: %s); retrying", type(exc).__name__, exc)
            await self.sleep(0.5)
            return
        # A held partition is paused until its records in memory are all processed, so its
        # records here come before anything fetched of it later.
        fresh = [
            RawRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
            for b in fetched.values()
            for m in b
        ]
        # Held records are taken after the fetch, so those of partitions revoked while it waited
        # are gone already (``revoked``). With fresh records, other partitions moved on: the
        # snapshot a held partition waits for may be sealed now, so all of them are offered.
        again = self._due_held(everything=bool(fresh))
        if not fresh and not again:
            if self._awaiting:  # quiet: remove the delivered entries now, then commit
                async with self._lock:
                    self._promote(await self._flush())
            await self._commit(force=False)
            return
        records = _merged(again, fresh)
        handled = await self._handle(records)
        ticket = handled.ticket
        spans = _spans(records)
        assigned = consumer.assignment()
        topic = self.settings.events_topic
        if ticket is not None:
            # Partitions revoked meanwhile are left out: their new owner commits its own progress.
            nexts = {}
            for partition, (_first, last) in spans.items():
                tp = TopicPartition(topic, partition)
                if tp not in assigned:
                    continue
                held_from = handled.held.get(partition)
                nexts[tp] = last + 1 if held_from is None else held_from
                if held_from is not None:
                    rest = [r for r in records if r.partition == partition and r.offset >= held_from]
                    self._hold(tp, rest)
                else:
                    self._release(tp)
            self._awaiting.append((ticket, nexts))
            self._promote(self._cleared())
            await self._commit(force=False)
            if handled.held and self._on_held is not None:
                await self._on_held()
        else:
            # Not delivered (another writer owns these customers): fetch them again, so that
            # they are processed here if the partitions are still ours, or by the new owner.
            for partition, (first, _last) in spans.items():
                tp = TopicPartition(topic, partition)
                if tp in assigned:
                    self._release(tp)
                    consumer.seek(tp, first)

    def _hold(self, tp: TopicPartition, records: list[RawRecord]) -> None:
        """Keep ``records`` (``tp``'s from its first unprocessed one) to offer again a little later.

        They wait for other partitions in event time. Keeping them in memory, with ``tp`` paused,
        costs no refetch and no decoding again (the pipeline keeps their decoded events); at most
        one fetch of each partition is held.
        """
        assert self.consumer is not None
        self._held[tp] = records
        self.consumer.pause(tp)
        self._paused[tp] = time.monotonic() + HOLD_SECONDS

    def _release(self, tp: TopicPartition) -> None:
        """``tp`` has nothing held any more: fetch it again."""
        self._held.pop(tp, None)
        consumer = self.consumer
        if self._paused.pop(tp, None) is not None and consumer is not None and tp in consumer.assignment():
            consumer.resume(tp)

    def _due_held(self, everything: bool = False) -> list[RawRecord]:
        """The held records whose pause is over, or all of them (those no longer assigned dropped)."""
        if not self._held or self.consumer is None:
            return []
        now = time.monotonic()
        assigned = self.consumer.assignment()
        due: list[RawRecord] = []
        for tp in list(self._held):
            if tp not in assigned:
                self._held.pop(tp)
                self._paused.pop(tp, None)
            elif everything or self._paused.get(tp, now) <= now:
                due += self._held.pop(tp)
        return due

    def _fetch_wait_ms(self, timeout_ms: int) -> int:
        """How long a fetch may wait: ``timeout_ms``, or less when held records fall due sooner.

        When every partition is held (they all wait for one day's snapshot), a fetch of the
        unpaused rest would otherwise sit out its whole timeout after the hold ended.
        """
        if not self._held:
            return timeout_ms
        now = time.monotonic()
        due_in = min(self._paused.get(tp, now) for tp in self._held) - now
        return max(0, min(timeout_ms, math.ceil(due_in * 1000)))

    async def refresh_empty_partitions(self) -> None:
        """Ask the broker which events-topic partitions are empty (every few seconds at most)."""
        consumer = self.consumer
        if consumer is None or time.monotonic() - self._empty_checked < EMPTY_REFRESH_SECONDS:
            return
        self._empty_checked = time.monotonic()
        topic = self.settings.events_topic
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not tps:
                return
            first = await consumer.beginning_offsets(tps)
            last = await consumer.end_offsets(tps)
        except (KafkaError, IllegalStateError) as exc:
            log.warning("could not read the events topic's offsets (%s: %s)", type(exc).__name__, exc)
            return
        self.empty_partitions = {tp.partition for tp in tps if last[tp] <= first[tp]}

    def _promote(self, cleared: int) -> None:
        """Batches whose outbox entries are gone from Redis may be committed."""
        keep = []
        for ticket, nexts in self._awaiting:
            if ticket <= cleared:
                self._delivered.update(nexts)
            else:
                keep.append((ticket, nexts))
        self._awaiting = keep

    async def _commit(self, force: bool) -> None:
        if not self._delivered or self.consumer is None:
            return
        if not force and time.monotonic() - self._last_commit < self.settings.commit_interval_seconds:
            return
        offsets, self._delivered = self._delivered, {}
        self._last_commit = time.monotonic()
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError, IllegalStateError, KafkaError) as exc:
            # A rebalance took the partitions: their new owner reprocesses from the last commit,
            # which the offset fencing in Redis makes a no-op for what was applied here.
            log.warning("offset commit failed (%s: %s); redelivery is fenced", type(exc).__name__, exc)

    async def revoked(self, partitions: list[int]) -> None:
        """Before partitions move: commit what was delivered, then let the pipeline release them."""
        async with self._lock:
            if self._awaiting:
                with contextlib.suppress(StopConsuming):  # stopping: those batches stay uncommitted
                    self._promote(await self._flush())
            await self._commit(force=True)
            self._delivered, self._awaiting = {}, []
            topic = self.settings.events_topic
            for partition in partitions:  # the new owner (maybe this worker) starts from the commit
                tp = TopicPartition(topic, partition)
                self._held.pop(tp, None)
                self._paused.pop(tp, None)
            await self._on_revoked(partitions)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[object]:
        """Queue one record for ``topic`` (batched by the producer's linger); await the result."""
        assert self.producer is not None
        return await self.producer.send(topic, value=value, key=key)


def _merged(held: list[RawRecord], fresh: list[RawRecord]) -> list[RawRecord]:
    """One batch in offset order per partition, from held records and a fetch's.

    A held partition is paused, so a fetch returns none of its records; if it does, the partition
    was revoked and assigned again (its pause gone, its position back at the committed offset,
    which is at most the first held one): the fetch's records are the true ones, and the held
    ones would apply twice.
    """
    fetched = {r.partition for r in fresh}
    kept = [r for r in held if r.partition not in fetched]
    return sorted(kept + fresh, key=lambda r: (r.partition, r.offset))


def _spans(records: Sequence[RawRecord]) -> dict[int, tuple[int, int]]:
    """Partition -> (first, last) offset among ``records`` (in offset order per partition)."""
    spans: dict[int, tuple[int, int]] = {}
    for r in records:
        first = spans.get(r.partition, (r.offset, r.offset))[0]
        spans[r.partition] = (first, r.offset)
    return spans
