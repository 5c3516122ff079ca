"""What the dashboard materialises from topics: membership changes by event time, dead letters,
decision outcomes.

The segment-changes topic is read from the beginning without joining a consumer group, so the
page shows exactly what campaign systems receive; a change delivered twice (same ``change_id``)
is counted once. Segment sizes over time are replayed from the changes by *event time*: each
change is -1 for its ``from`` segment and +1 for its ``to`` segment on the UTC day of its
``event_ts``, and the size at the end of day D is the sum of every delta up to D. A sum does not
depend on the order the changes are read in, so partitions can be read in any interleaving.
If retention already deleted the oldest changes (a partition's first record is not at offset
0), the series is incomplete and ``truncated`` says so. ``follow`` keeps reading as records come;
``read_once`` reads each topic to its end (``engine.cli.io.read_to_end``).

Outcome records (``engine.activation.outcomes``) are kept by ``outcome_id`` for
``engine.activation.lift_table``; dead letters are counted by reason.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.activation.outcomes import Outcome
from engine.cli.io import Record, read_to_end
from engine.codecs import decode_msgpack
from engine.kafka_clients import kafka_options
from engine.settings import Settings
from engine.topics import start_or_close, topic_partitions

DAY_MS = 86_400_000
NONE = "(none)"


@dataclass
class ChangeLog:
    """The changes, dead letters and outcomes read so far, folded one record at a time."""

    membership: dict[tuple[str, str], str] = field(default_factory=dict)
    """(family, customer) -> the segment the customer's latest change put them in."""
    seen_ids: set[str] = field(default_factory=set)
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(family, from, to) -> changes; ``(none)`` for no segment."""
    deltas: dict[str, dict[str, Counter[int]]] = field(default_factory=dict)
    """family -> segment -> UTC day index -> net members gained that day (event time)."""
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=25))
    dead_reasons: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    outcome_repeats: int = 0
    duplicates: int = 0
    truncated: bool = False
    """A partition's first record read is not at offset 0 (retention deleted the oldest ones): the
    series does not start at the beginning."""
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    read_through: dict[str, int] = field(default_factory=dict)
    """Records read per topic."""

    def reset(self) -> None:
        """Forget everything read (before reading every topic again from the beginning)."""
        fresh = ChangeLog()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def apply_change(self, change: dict[str, Any]) -> None:
        """Fold one segment-change record into the log (a repeated ``change_id`` is ignored)."""
        if change["change_id"] in self.seen_ids:
            self.duplicates += 1
            return
        self.seen_ids.add(change["change_id"])
        family, source, target = str(change["family"]), change.get("from"), change.get("to")
        key = (family, str(change["customer_id"]))
        if target is None:
            self.membership.pop(key, None)
        else:
            self.membership[key] = str(target)
        day = int(change["event_ts"]) // DAY_MS
        segments = self.deltas.setdefault(family, {})
        if source is not None:
            segments.setdefault(str(source), Counter())[day] -= 1
        if target is not None:
            segments.setdefault(str(target), Counter())[day] += 1
        self.transitions[(family, str(source or NONE), str(target or NONE))] += 1
        self.recent.appendleft(change)

    def apply_dead_letter(self, letter: dict[str, Any]) -> None:
        """Count one dead letter by reason."""
        self.dead_reasons[str(letter.get("reason"))] += 1

    def apply_outcome(self, record: dict[str, Any]) -> None:
        """Keep one outcome record by id (a repeat is counted, not kept); malformed ones are skipped."""
        try:
            outcome = Outcome.from_wire(record)
        except ValueError:
            return
        if outcome.outcome_id in self.outcomes:
            self.outcome_repeats += 1
        else:
            self.outcomes[outcome.outcome_id] = outcome

    def sizes(self) -> dict[str, dict[str, int]]:
        """Current segment sizes per family, as the changes say."""
        out: dict[str, Counter[str]] = {}
        for (family, _customer), segment in self.membership.items():
            out.setdefault(family, Counter())[segment] += 1
        return {family: dict(counts.most_common()) for family, counts in out.items()}

    def days(self) -> tuple[int, int] | None:
        """The first and last UTC day with a change (None: no change yet)."""
        every = [d for segs in self.deltas.values() for counts in segs.values() for d in counts]
        return (min(every), max(every)) if every else None

    def sizes_over_time(self, family: str) -> tuple[list[int], dict[str, list[int]]]:
        """Every day from the first change to the last, and each segment's size at each day's end."""
        span = self.days()
        if span is None:
            return [], {}
        days = list(range(span[0], span[1] + 1))
        series: dict[str, list[int]] = {}
        for segment, counts in sorted(self.deltas.get(family, {}).items()):
            total, sizes = 0, []
            for day in days:
                total += counts.get(day, 0)
                sizes.append(total)
            series[segment] = sizes
        return days, series

    def top_transitions(self, limit: int = 15) -> list[tuple[tuple[str, str, str], int]]:
        """The most frequent (family, from, to) moves."""
        return self.transitions.most_common(limit)


def fold(log: ChangeLog, settings: Settings, topic: str, message: Record) -> None:
    """Apply one record of one of the followed topics to ``log``."""
    where = (topic, message.partition)
    if where not in log.first_offsets:
        log.first_offsets[where] = message.offset
        log.truncated = log.truncated or message.offset > 0
    record = decode_msgpack(message.value)
    log.read_through[topic] = log.read_through.get(topic, 0) + 1
    if not isinstance(record, dict):
        return
    if topic == settings.changes_topic:
        log.apply_change(record)
    elif topic == settings.outcomes_topic:
        log.apply_outcome(record)
    else:
        log.apply_dead_letter(record)


def followed_topics(settings: Settings) -> tuple[str, ...]:
    """The topics the dashboard reads: segment changes, dead letters, decision outcomes."""
    return (settings.changes_topic, settings.dlq_topic, settings.outcomes_topic)


async def _assign(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    if partitions:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
    return partitions


async def _partitions(settings: Settings) -> list[TopicPartition]:
    topics = followed_topics(settings)
    return [TopicPartition(t, p) for t in topics for p in await topic_partitions(settings, t)]


async def follow(settings: Settings, log: ChangeLog, recheck_seconds: float = 5.0) -> None:
    """Keep ``log`` up to date from the followed topics.

    Topics that do not exist yet are looked for every ``recheck_seconds``; when one appears, the
    log is emptied and every topic read again from the beginning (a reassignment forgets the
    positions, and dead letters have no id to drop repeats by).
    """
    # earliest: assign() starts an offset lookup of its own, which must not land at the end.
    consumer = AIOKafkaConsumer(
        **kafka_options(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await start_or_close(consumer)
    loop = asyncio.get_running_loop()
    try:
        assigned: list[TopicPartition] = []
        checked = -math.inf
        while True:
            complete = len({tp.topic for tp in assigned}) == len(followed_topics(settings))
            if not complete and loop.time() - checked >= recheck_seconds:
                checked = loop.time()
                found = await _partitions(settings)
                if len(found) > len(assigned):
                    log.reset()
                    assigned = await _assign(consumer, found)
            if not assigned:
                await asyncio.sleep(min(1.0, recheck_seconds))
                continue
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    fold(log, settings, tp.topic, message)
    finally:
        await consumer.stop()


async def read_once(settings: Settings) -> ChangeLog:
    """The followed topics read once, from the beginning to their ends now (for ``segflow brief``)."""
    log = ChangeLog()
    for topic in followed_topics(settings):
        await read_to_end(
            settings, topic, on_record=functools.partial(fold, log, settings, topic), missing_ok=True
        )
    return log
