"""``segflow deliver``: the actions topic in, deliveries and dead letters out, at least once.

A consumer in the group ``<app_id>.deliver`` reads ``<app_id>.actions``. Each record is one of:

* a send action (``decision == "send"``): delivered by its channel's destination, one action of
  a customer at a time in offset order (a customer's actions share a partition), many
  customers and destinations at once; an action no destination accepts (refused for good, or
  out of attempts, or its channel has no destination) goes to ``<app_id>.actions.dlq`` with
  the reason, the destination and the original bytes;
* withheld (any other decision): counted per reason, not delivered;
* malformed (not a v1 action): dead-lettered with the reason.

Offsets are committed by hand, only below the first record not finished (``ledger``), every
``commit_interval_seconds`` and on the way out; a crash or a rebalance re-reads the rest, so a
receiver may see an action twice, always with the same ``Idempotency-Key``. At most
``deliver_max_in_flight`` records are unfinished: past that the partitions are paused.
Dead-letter records are dead-letter schema v1 plus ``destination``, ``channel``,
``action_id`` and ``attempts``. The counters are served on ``deliver_web_port`` (``metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from engine.activation.actions import SEND, ActionDecision
from engine.activation.delivery.config import Destination
from engine.activation.delivery.counters import DeliveryCounters
from engine.activation.delivery.dispatch import Dispatcher, Finished
from engine.activation.delivery.ledger import Ledger
from engine.activation.delivery.metrics import MetricsServer
from engine.activation.delivery.retry import RetryPolicy
from engine.codecs import decode_payload, encode_msgpack
from engine.kafka_clients import kafka_options
from engine.output import DeadLetter
from engine.settings import Settings
from engine.topics import start_or_close
from features import log_names

log = logging.getLogger(__name__)

FETCH_MS = 100
MAX_FETCH_RECORDS = 500
ASSIGNMENT_WAIT_SECONDS = 15.0  # --once: give up waiting for partitions after this long


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: DeliveryService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._service.revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("deliver: assigned %s", sorted(tp.partition for tp in assigned))


class DeliveryService:
    """Consumes the actions topic and delivers every send action (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        destinations: dict[str, Destination],
        once: bool = False,
        grace_seconds: float = 10.0,
        counters: DeliveryCounters | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.destinations = destinations
        self.once = once
        self.grace_seconds = grace_seconds
        self.counters = counters or DeliveryCounters()
        self.policy = policy or RetryPolicy.from_settings(settings)
        self.group_id = f"{settings.app_id}.deliver"
        self._ledger = Ledger()
        self._dispatchers: dict[str, Dispatcher] = {}
        self._lanes: dict[str, asyncio.Task[None]] = {}  # customer -> their last action's task
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._paused = False
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None

    async def run(self, stop: asyncio.Event | None = None) -> DeliveryCounters:
        """Deliver until ``stop`` is set (or, with ``once``, until the topic is drained)."""
        stop = stop or asyncio.Event()
        port = self.settings.deliver_web_port
        host, token = self.settings.web_bind, self.settings.web_secret
        metrics = MetricsServer(self.counters, port, host, token) if port else None
        try:
            if metrics is not None:
                await metrics.start()
            await self._start()
            await self._loop(stop)
        finally:
            try:
                await self._shutdown()
            finally:
                if metrics is not None:
                    await metrics.close()
        return self.counters

    # -- life cycle --------------------------------------------------------------------------------

    async def _start(self) -> None:
        s = self.settings
        for channel, destination in self.destinations.items():
            self.counters.destination(destination.name)
            dispatcher = Dispatcher(destination, self.policy, self.counters.destination(destination.name))
            await dispatcher.start()
            self._dispatchers[channel] = dispatcher
        producer = AIOKafkaProducer(
            **kafka_options(s),
            client_id=f"{s.app_id}-deliver-dlq",
            acks="all",
            enable_idempotence=True,
        )
        await start_or_close(producer)
        self.producer = producer
        consumer = AIOKafkaConsumer(
            **kafka_options(s),
            client_id=f"{s.app_id}-deliver",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_FETCH_RECORDS,
            fetch_max_wait_ms=FETCH_MS,
            session_timeout_ms=round(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=round(s.heartbeat_interval_seconds * 1000),
        )
        consumer.subscribe([s.actions_topic], listener=_Rebalance(self))
        await start_or_close(consumer)
        self.consumer = consumer

    async def _shutdown(self) -> None:
        tasks = [t for group in self._tasks.values() for t in group]
        if tasks:
            log.info("deliver: finishing %d actions in flight (at most %gs)", len(tasks), self.grace_seconds)
            await asyncio.wait(tasks, timeout=self.grace_seconds)
        if self.consumer is not None:
            with contextlib.suppress(KafkaError, IllegalStateError):
                await self._commit()
            await self._cancel(list(self._tasks))
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()
        for dispatcher in self._dispatchers.values():
            await dispatcher.close()
        if self.consumer is not None:  # a failed start has nothing to report
            log.info("deliver: %s", self.counters.summary())

    async def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions go to another member: commit what is finished, drop the rest unfinished."""
        if not partitions:
            return
        try:
            await self._commit(partitions)
        except (KafkaError, IllegalStateError) as exc:
            log.warning("deliver: commit on revoke failed (%s); the new owner redelivers", exc)
        await self._cancel(partitions)

    async def _cancel(self, partitions: list[TopicPartition]) -> None:
        tasks = [t for tp in partitions for t in self._tasks.pop(tp, set())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ledger.drop(partitions)
        self.counters.in_flight = self._ledger.unfinished

    # -- the loop ----------------------------------------------------------------------------------

    async def _loop(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        started = last_commit = last_log = time.monotonic()
        interval = self.settings.commit_interval_seconds
        while not stop.is_set():
            free = self.settings.deliver_max_in_flight - self._ledger.unfinished
            self._flow(free > 0)
            try:
                fetched = await consumer.getmany(timeout_ms=FETCH_MS, max_records=max(1, free))
            except (KafkaError, IllegalStateError) as exc:
                log.warning("deliver: fetch failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(0.5)
                continue
            for tp, records in fetched.items():
                for record in records:
                    self._take(tp, record)
            now = time.monotonic()
            idle = not fetched and self._ledger.unfinished == 0
            if now - last_commit >= interval or idle:
                await self._commit_logged()
                last_commit = now
            if now - last_log >= self.settings.deliver_log_interval_seconds:
                log.info("deliver: %s", self.counters.summary())
                last_log = now
            if self.once and idle and await self._drained(now - started):
                return

    def _flow(self, room: bool) -> None:
        """Pause every partition while ``deliver_max_in_flight`` records are unfinished."""
        assert self.consumer is not None
        if not room:  # every time: a partition assigned meanwhile is paused too
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True
        elif self._paused:
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False

    async def _drained(self, waited: float) -> bool:
        """Whether every assigned partition is read to its end (``--once``)."""
        assert self.consumer is not None
        assigned = list(self.consumer.assignment())
        if not assigned:
            return waited > ASSIGNMENT_WAIT_SECONDS
        ends = await self.consumer.end_offsets(assigned)
        for tp in assigned:
            if await self.consumer.position(tp) < ends[tp]:
                return False
        return True

    def _take(self, tp: TopicPartition, record: Any) -> None:
        """Start what becomes of one record."""
        self.counters.read += 1
        self._ledger.read(tp, record.offset)
        self.counters.in_flight = self._ledger.unfinished
        try:
            decision = ActionDecision.from_wire(decode_payload(record.value))
            _check_types(decision)
        except (ValueError, TypeError) as exc:  # TypeError: from_wire's float(None), for one
            self.counters.malformed += 1
            self._spawn(tp, None, self._dead_letter(tp, record, f"malformed action: {exc}", None, None, 0))
            return
        if decision.decision != SEND:
            self.counters.withheld[decision.decision] += 1
            self._finish(tp, record.offset)
            return
        previous = self._lanes.get(decision.customer_id)
        self._spawn(tp, decision.customer_id, self._deliver(tp, record, decision, previous))

    def _spawn(self, tp: TopicPartition, customer: str | None, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.setdefault(tp, set()).add(task)
        if customer is not None:
            self._lanes[customer] = task

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.get(tp, set()).discard(finished)
            if customer is not None and self._lanes.get(customer) is finished:
                del self._lanes[customer]
            if not finished.cancelled() and finished.exception() is not None:
                log.error("deliver: a delivery task failed", exc_info=finished.exception())

        task.add_done_callback(done)

    async def _deliver(
        self, tp: TopicPartition, record: Any, decision: ActionDecision, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:  # the customer's earlier action first
            await asyncio.wait([previous])
        dispatcher = self._dispatchers.get(decision.channel)
        if dispatcher is None:
            source = self.settings.destinations_file
            result = Finished(False, f"no destination for channel {decision.channel!r} in {source}", 0)
        else:
            try:
                result = await dispatcher.deliver(decision)
            except Exception as exc:  # a bug must not hold the partition's commits forever
                log.exception("deliver: unexpected failure delivering %s", decision.action_id)
                result = Finished(False, f"internal error: {type(exc).__name__}: {exc}", 0)
        name = dispatcher.destination.name if dispatcher is not None else None
        if result.delivered:
            self.counters.delivered += 1
            self._finish(tp, record.offset)
            return
        await self._dead_letter(tp, record, result.reason, name, decision, result.attempts)

    async def _dead_letter(
        self,
        tp: TopicPartition,
        record: Any,
        reason: str,
        destination: str | None,
        decision: ActionDecision | None,
        attempts: int,
    ) -> None:
        """Write the dead letter (retrying until the broker takes it), then finish the record."""
        assert self.producer is not None
        value = encode_msgpack(
            {
                **DeadLetter(
                    reason=reason,
                    raw=record.value or b"",
                    key=record.key,
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=record.offset,
                    failed_ts_ms=int(time.time() * 1000),
                ).to_wire(),
                "destination": destination,
                "channel": decision.channel if decision is not None else None,
                "action_id": decision.action_id if decision is not None else None,
                "attempts": attempts,
            }
        )
        wait = 0.5
        while True:
            try:
                await self.producer.send_and_wait(self.settings.actions_dlq_topic, value, key=record.key)
                break
            except KafkaError as exc:
                log.warning("deliver: dead-letter write failed (%s); retrying in %gs", exc, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 10.0)
        self.counters.dead_lettered += 1
        if destination is not None:
            self.counters.destination(destination).dead_lettered += 1
        who = f" (customer {log_names.customer(decision.customer_id)})" if decision is not None else ""
        where = f"{tp.topic}-{tp.partition}@{record.offset}"
        log.warning("deliver: dead-lettered the action at %s%s: %s", where, who, log_names.scrub(reason))
        self._finish(tp, record.offset)

    def _finish(self, tp: TopicPartition, offset: int) -> None:
        self._ledger.finish(tp, offset)
        self.counters.in_flight = self._ledger.unfinished

    async def _commit(self, partitions: list[TopicPartition] | None = None) -> None:
        """Commit every partition's first unfinished offset that moved (of ``partitions``)."""
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        wanted = [tp for tp in (partitions if partitions is not None else assigned) if tp in assigned]
        offsets = self._ledger.to_commit(wanted)
        if offsets:
            await self.consumer.commit(offsets)
            self._ledger.committed(offsets)
            self.counters.commits += 1

    async def _commit_logged(self) -> None:
        try:
            await self._commit()
        except CommitFailedError as exc:  # a rebalance: the revoke handler commits what it can
            log.warning("deliver: commit refused (%s)", exc)
        except (KafkaError, IllegalStateError) as exc:
            log.warning("deliver: commit failed (%s: %s); trying again later", type(exc).__name__, exc)


def _check_types(decision: ActionDecision) -> None:
    """What delivery relies on beyond ``from_wire``'s checks; raises ``ValueError``."""
    for name in ("action_id", "customer_id", "action"):
        value = getattr(decision, name)
        if not isinstance(value, str) or not value:
            got = "an empty string" if value == "" else type(value).__name__  # never the value: an id
            raise ValueError(f"{name} must be a non-empty string, got {got}")
    for name in ("features", "change"):
        if not isinstance(getattr(decision, name), dict):
            raise ValueError(f"{name} must be a map, got {type(getattr(decision, name)).__name__}")
