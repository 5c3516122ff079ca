"""``segflow soak``: one real worker under a paced simulated stream for a long time, sampled.

The stream is a fixed simulated population (``--customers``) whose events are sent in event
time order at ``--rate`` events per second: the simulation's days go by in seconds, so rolling
windows fill and then stay bounded, and the population's records stop growing once every
customer has been seen and its history is full. Every ``--sample-seconds`` the soak records the
events sent, the events the worker applied (its metrics page), the group's consumer lag on the
events topic (from the broker: end offsets minus committed offsets), the worker's RSS
(``/proc/<pid>/status``), Redis ``used_memory`` and that over the customers known (customer
hashes under the run's key prefix), the mean ``MEMORY USAGE`` of those hashes (the records
alone, without the population-wide keys), and the key count under the prefix. The run has topics and
a key prefix of its own (``segflow-soak-<run id>``), deleted at the end unless kept; the judgement
of the samples is ``engine.ops.soak_report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from engine.codecs import encode_msgpack
from engine.kafka_clients import kafka_options
from engine.ops.bench.measure import APPLIED, DEAD
from engine.ops.bench.setup import delete_prefix, delete_topics, machine_facts, redis_client
from engine.ops.lag import offsets_sample
from engine.ops.lag import sample as lag_sample
from engine.ops.soak_report import (
    due_events,
    judge_samples,
    passed,
    per_customer,
    sample_times,
    vm_rss_bytes,
)
from engine.settings import Settings, namespaced
from engine.topics import ensure_topics, start_or_close
from engine.worker_process import free_port, read_metrics, start_worker, stop_worker

TICK_SECONDS = 0.02
DRAIN_SECONDS = 120.0
DAY_MS = 86_400_000
Record = tuple[bytes, bytes, int]  # (key, msgpack value, event time ms)


class SoakError(RuntimeError):
    """The soak cannot go on; the message is one line meant for a person."""


@dataclass(frozen=True, slots=True)
class SoakParams:
    """What one soak run does."""

    minutes: float = 30.0
    rate: float = 1300.0
    customers: int = 5_000
    sample_seconds: float = 30.0
    partitions: int = 8
    batch: int = 500
    seed: int = 7
    keep: bool = False

    def validate(self) -> None:
        """Raise ValueError with a one-line reason for parameters that cannot work."""
        checks = [
            (self.minutes > 0, f"--minutes must be positive, not {self.minutes:g}"),
            (0 < self.rate <= 50_000, f"--rate must be between 0 and 50000 events/s, not {self.rate:g}"),
            (self.customers >= 1, f"--customers must be at least 1, not {self.customers}"),
            (self.sample_seconds >= 1, f"--sample-seconds must be at least 1, not {self.sample_seconds:g}"),
            (
                self.sample_seconds * 3 <= self.minutes * 60,
                "--sample-seconds must leave at least three samples in --minutes",
            ),
            (1 <= self.partitions <= 1024, f"--partitions must be between 1 and 1024, not {self.partitions}"),
            (1 <= self.batch <= 100_000, f"--batch must be between 1 and 100000, not {self.batch}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def total_events(self) -> int:
        """Events the run sends when it keeps its pace to the end."""
        return math.ceil(self.minutes * 60 * self.rate)

    def simulated_days(self) -> int:
        """Days of simulation to draw from: about two events per active customer-day (see
        ``models.simulate``), with churn thinning the population, so three times the days the
        run needs; the stream is lazy, so the margin costs nothing."""
        return max(30, math.ceil(3 * self.total_events / self.customers))


def event_stream(params: SoakParams) -> Iterator[Record]:
    """The population's events in event-time order as (key, msgpack value, ts), lazily."""
    from models.simulate import PopulationConfig, generate_events  # imports numpy and the population

    config = PopulationConfig(customers=params.customers, days=params.simulated_days(), seed=params.seed)
    for wire in generate_events(config):
        yield wire["customer_id"].encode(), encode_msgpack(wire), int(wire["ts"])


@dataclass(slots=True)
class Probe:
    """What the sampler reads from: the worker, the broker and Redis."""

    settings: Settings
    pid: int
    web_port: int
    client: redis.Redis
    admin: AIOKafkaAdminClient
    consumer: AIOKafkaConsumer
    partitions: list[TopicPartition]

    async def lag(self) -> int:
        """Records of the events topic after the group's committed offsets (all of them before
        its first commit)."""
        try:
            taken = await lag_sample(self.admin, self.consumer, self.settings.app_id, self.partitions)
        except GroupCoordinatorNotAvailableError:  # a new broker's offsets topic: nothing committed
            taken = await offsets_sample(self.consumer, dict.fromkeys(self.partitions))
        return sum(p.lag for p in taken.partitions)

    def rss_bytes(self) -> int | None:
        """The worker's resident set size (None once it is gone)."""
        try:
            return vm_rss_bytes(Path(f"/proc/{self.pid}/status").read_text())
        except OSError:
            return None

    def redis_figures(self) -> tuple[int, int, int, int]:
        """``used_memory``, customer hashes, all keys under the run's prefix, and the bytes of
        the customer hashes (``MEMORY USAGE`` of each, pipelined)."""
        prefix = self.settings.key_prefix
        customer_prefix = f"{prefix}:c:".encode()
        keys = record_bytes = 0
        customers: list[bytes] = []
        for key in self.client.scan_iter(match=f"{prefix}:*", count=2000):
            keys += 1
            if key.startswith(customer_prefix):
                customers.append(key)
        for start in range(0, len(customers), 1000):
            pipe = self.client.pipeline(transaction=False)
            for key in customers[start : start + 1000]:
                pipe.memory_usage(key, samples=0)
            record_bytes += sum(int(n or 0) for n in pipe.execute())
        used = int(self.client.info("memory")["used_memory"])
        return used, len(customers), keys, record_bytes

    async def take(
        self, elapsed: float, sent: int, event_ts: int | None, first_ts: int | None
    ) -> dict[str, Any]:
        """One sample."""
        metrics = read_metrics(self.web_port, self.settings.web_secret)
        lag = await self.lag()
        rss = self.rss_bytes()
        used, customers, keys, record_bytes = self.redis_figures()
        bytes_each = per_customer(used, customers)
        return {
            "elapsed_s": round(elapsed, 2),
            "sent": sent,
            "applied": metrics.get(APPLIED),
            "dead_lettered": metrics.get(DEAD),
            "lag": lag,
            "worker_rss_mb": None if rss is None else rss / 2**20,
            "redis_used_mb": used / 2**20,
            "customers": customers,
            "redis_bytes_per_customer": bytes_each,
            "record_bytes_per_customer": per_customer(record_bytes, customers),
            "redis_keys": keys,
            "event_day": None if event_ts is None or first_ts is None else (event_ts - first_ts) / DAY_MS,
        }


async def _paced(
    params: SoakParams,
    settings: Settings,
    probe: Probe,
    stream: Iterator[Record],
    on_sample: Callable[[dict[str, Any]], None],
    alive: Callable[[], bool],
) -> tuple[list[dict[str, Any]], int, float, bool]:
    """Send the stream at its pace and sample on schedule; (samples, sent, seconds, exhausted)."""
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", linger_ms=5)
    await start_or_close(producer)
    samples: list[dict[str, Any]] = []
    sent, exhausted = 0, False
    first_ts = last_ts = None
    duration = params.minutes * 60
    schedule = sample_times(duration, params.sample_seconds)
    pending: list[asyncio.Future[Any]] = []
    try:
        started = time.monotonic()
        while schedule:
            elapsed = time.monotonic() - started
            if not alive():
                raise SoakError(f"the worker exited after {elapsed:.0f}s; see its log")
            due = due_events(min(elapsed, duration), params.rate, params.total_events)
            for key, value, ts in itertools.islice(stream, max(0, due - sent)) if not exhausted else ():
                pending.append(await producer.send(settings.events_topic, value=value, key=key))
                sent += 1
                first_ts = ts if first_ts is None else first_ts
                last_ts = ts
            if sent < due and not exhausted:
                exhausted = True  # the simulation ran out before the run did
            if elapsed >= schedule[0]:
                schedule.pop(0)
                await asyncio.gather(*pending)  # a sample counts only what the broker has
                pending.clear()
                samples.append(await probe.take(elapsed, sent, last_ts, first_ts))
                on_sample(samples[-1])
                continue
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(TICK_SECONDS)
        await asyncio.gather(*pending)
        return samples, sent, time.monotonic() - started, exhausted
    finally:
        await producer.stop()


async def _drain(probe: Probe, timeout: float, alive: Callable[[], bool]) -> dict[str, Any]:
    """After the stream: wait (at most ``timeout`` s) until the worker has committed every event."""
    started = time.monotonic()
    lag = await probe.lag()
    while lag > 0 and alive() and time.monotonic() - started < timeout:
        await asyncio.sleep(0.5)
        lag = await probe.lag()
    metrics = read_metrics(probe.web_port, probe.settings.web_secret)
    return {
        "drain_seconds": round(time.monotonic() - started, 2),
        "drained": lag == 0,
        "lag_after_drain": lag,
        "applied_after_drain": metrics.get(APPLIED),
        "dead_lettered_after_drain": metrics.get(DEAD),
    }


async def _soak(
    params: SoakParams,
    settings: Settings,
    pid: int,
    web_port: int,
    client: redis.Redis,
    on_sample: Callable[[dict[str, Any]], None],
    alive: Callable[[], bool],
) -> tuple[list[dict[str, Any]], int, float, bool, dict[str, Any]]:
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=10_000)
    await start_or_close(admin)
    consumer = AIOKafkaConsumer(
        **kafka_options(settings), enable_auto_commit=False, request_timeout_ms=10_000
    )
    try:
        await start_or_close(consumer)
        try:
            partitions = [TopicPartition(settings.events_topic, p) for p in range(params.partitions)]
            probe = Probe(settings, pid, web_port, client, admin, consumer, partitions)
            paced = await _paced(params, settings, probe, event_stream(params), on_sample, alive)
            drain = await _drain(probe, DRAIN_SECONDS, alive)
            return (*paced, drain)
        finally:
            await consumer.stop()
    finally:
        await admin.close()


def run_soak(
    base: Settings,
    params: SoakParams,
    on_sample: Callable[[dict[str, Any]], None] | None = None,
    work_root: Path | None = None,
) -> dict[str, Any]:
    """Run the soak and return its report: machine, params, samples, verdicts, summary.

    The worker's log and data go to ``<work_root>/<run id>`` (default: the stack dir's ``soak``).
    """
    params.validate()
    facts, _ = machine_facts(base)
    client = redis_client(base)
    if client is None:
        raise SoakError("segflow soak needs a single Redis server (INFO memory), not a Redis Cluster")
    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]
    name = f"segflow-soak-{run_id}"
    work = (work_root or base.stack_dir / "soak") / run_id
    web_port = free_port()
    settings = namespaced(base, name, f"soak{run_id.replace('-', '')}").model_copy(
        update={
            "events_partitions": params.partitions,
            "changes_partitions": params.partitions,
            "batch_max_events": params.batch,
            "web_port": web_port,
            "stack_dir": work / "stack",  # worker data and the checkpoint key stay in the run's dir
        }
    )
    log = work / "worker.log"
    process = None
    try:
        asyncio.run(ensure_topics(settings))
        process = start_worker(settings, log)
        worker = process

        def alive() -> bool:
            return worker.poll() is None

        samples, sent, seconds, exhausted, drain = asyncio.run(
            _soak(params, settings, process.pid, web_port, client, on_sample or (lambda _: None), alive)
        )
    except SoakError as exc:
        raise SoakError(f"{exc} ({log})") from None
    finally:
        if process is not None:
            stop_worker(process)
        if not params.keep:
            with contextlib.suppress(Exception):
                delete_prefix(client, settings.key_prefix)
            with contextlib.suppress(Exception):
                asyncio.run(delete_topics(settings, name))
        client.close()
    last = samples[-1]
    summary = {
        "sent": sent,
        "seconds": seconds,
        "achieved_rate": sent / seconds if seconds > 0 else math.nan,
        "applied": last["applied"] or 0,
        "dead_lettered": last["dead_lettered"] or 0,
        "final_lag": last["lag"],
        "event_days": last["event_day"] or 0.0,
        "customers_known": last["customers"],
        **drain,
        "note": "the simulated population ran out of events before the run ended; raise --customers"
        if exhausted
        else "",
    }
    verdicts = judge_samples(samples, params.rate)
    return {
        "run_id": run_id,
        "machine": facts,
        "params": asdict(params),
        "topic": settings.events_topic,
        "key_prefix": settings.key_prefix,
        "worker_log": str(log),
        "samples": samples,
        "verdicts": [j.as_dict() for j in verdicts],
        "passed": passed(verdicts),
        "summary": summary,
    }
