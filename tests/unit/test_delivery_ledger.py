"""Which offsets ``segflow deliver`` may commit when actions finish out of order."""

from __future__ import annotations

import random

import pytest
from aiokafka import TopicPartition

from engine.activation.delivery.ledger import Ledger, PartitionLedger

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


def test_the_commit_stops_at_the_first_unfinished_offset() -> None:
    ledger = PartitionLedger()
    assert ledger.committable is None
    for offset in (5, 6, 7, 9):  # 8 is a gap in the log (e.g. a transaction marker)
        ledger.read(offset)
    assert ledger.committable == 5
    ledger.finish(7)
    ledger.finish(6)
    assert (ledger.committable, ledger.unfinished) == (5, 2)
    ledger.finish(5)
    assert (ledger.committable, ledger.unfinished) == (9, 1)
    ledger.finish(9)
    assert (ledger.committable, ledger.unfinished) == (10, 0)
    with pytest.raises(ValueError):
        ledger.read(3)


def test_random_finishing_orders_never_commit_past_an_unfinished_record() -> None:
    rng = random.Random(3)
    for _ in range(50):
        ledger = PartitionLedger()
        offsets = list(range(40))
        for offset in offsets:
            ledger.read(offset)
        finished: set[int] = set()
        for offset in rng.sample(offsets, len(offsets)):
            ledger.finish(offset)
            finished.add(offset)
            expected = next((o for o in offsets if o not in finished), 40)
            assert ledger.committable == expected


def test_only_moved_offsets_are_committed_and_revoked_partitions_are_forgotten() -> None:
    ledger = Ledger()
    for offset in range(3):
        ledger.read(TP0, offset)
        ledger.read(TP1, offset)
    ledger.finish(TP0, 0)
    ledger.finish(TP1, 1)
    assert ledger.to_commit() == {TP0: 1, TP1: 0}
    ledger.committed({TP0: 1, TP1: 0})
    assert ledger.to_commit() == {}
    ledger.finish(TP1, 0)
    assert ledger.to_commit([TP0]) == {}
    assert ledger.to_commit() == {TP1: 2}
    assert ledger.unfinished == 3
    ledger.drop([TP1])
    ledger.finish(TP1, 2)  # a late finish of a revoked partition changes nothing
    assert (ledger.to_commit(), ledger.unfinished) == ({}, 2)
