"""``segflow deliver`` on real Kafka against a real aiohttp receiver: outages, a crash, dead
letters and the rate limit (the acceptance of issue #12's delivery item).

Each test produces actions with ``ActionDecision(...).encode()`` to its own actions topic and
delivers them; what the receiver processed (deduplicated by ``Idempotency-Key``), the
dead-letter topic and the group's committed offsets are then compared with what was produced.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from delivery_kafka import (
    SECRET,
    assert_all_committed,
    committed,
    dead_letters,
    deliver_once,
    make_action,
    produce_actions,
    setup,
    start_deliver,
    webhook,
)
from delivery_servers import Arrival, Receiver, Reply, always

from engine.activation.delivery.webhook import verify
from engine.settings import Settings

pytestmark = pytest.mark.integration

OUTAGES = {
    # For the first 2 s of requests: ...
    "answers 503": lambda _i, t: Reply(503) if t < 2.0 else Reply(200),
    # ... processed, but answered after the client's 0.3 s timeout (the answer is lost) ...
    "answers too late": lambda _i, t: Reply(200, delay=1.0) if t < 2.0 else Reply(200),
    # ... or nothing listens on the port (see listen_after).
    "not listening": always(200),
}


def assert_signed(arrivals: list[Arrival]) -> None:
    """Every request carries its action's id as the key and a valid, recent signature."""
    for arrival in arrivals:
        h = arrival.headers
        assert h["Idempotency-Key"] == json.loads(arrival.body)["action_id"] == h["X-Segflow-Action-Id"]
        assert verify(SECRET.encode(), h["X-Segflow-Timestamp"], arrival.body, h["X-Segflow-Signature"])


@pytest.mark.parametrize("outage", list(OUTAGES))
def test_a_receiver_that_is_back_after_an_outage_gets_every_action_once(
    isolated_settings: Settings, tmp_path: Path, outage: str
) -> None:
    listen_after = 2.0 if outage == "not listening" else 0.0
    with Receiver(OUTAGES[outage], listen_after=listen_after) as receiver:
        hook = webhook(f"{receiver.url}/hooks", "  timeout_seconds: 0.3\n")
        settings = setup(isolated_settings, tmp_path, hook)
        actions = [make_action(f"c{c}", n) for n in range(5) for c in range(6)]
        produce_actions(settings, actions)
        counters = deliver_once(settings)
        arrivals = receiver.snapshot()
        processed = receiver.processed_keys()

    # Every action processed by the receiver, each exactly once by its idempotency key.
    assert processed == Counter(a.action_id for a in actions)
    assert_signed(arrivals)
    accepted = [a for a in arrivals if a.status == 200]
    if outage == "answers too late":  # the retries of a lost answer were deduplicated by the key
        assert any(a.duplicate for a in accepted)
    else:  # nothing acknowledged is sent again
        assert not any(a.duplicate for a in accepted)
        assert any(a.status == 503 for a in arrivals) == (outage == "answers 503")
    # Each customer's actions were processed in the order produced.
    order: dict[str, list[str]] = defaultdict(list)
    for arrival in accepted:
        if not arrival.duplicate:
            order[json.loads(arrival.body)["customer_id"]].append(arrival.headers["Idempotency-Key"])
    for customer, ids in order.items():
        assert ids == [a.action_id for a in actions if a.customer_id == customer]
    assert (counters.delivered, counters.dead_lettered) == (len(actions), 0)
    assert counters.retried > 0
    assert asyncio.run(dead_letters(settings)) == []
    assert_all_committed(settings)


def test_a_killed_deliverer_loses_nothing_and_its_successor_redelivers_with_the_same_keys(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    n = 60
    with Receiver() as receiver:
        hook = webhook(f"{receiver.url}/hooks", "  rate_limit_per_second: 20\n  burst: 1\n")
        # No commit before the kill: a commit interval longer than the run, and the loop is never
        # idle while actions wait for the rate limit. The broker's minimum session timeout is 6 s.
        settings = setup(
            isolated_settings,
            tmp_path,
            hook,
            commit_interval_seconds=60,
            session_timeout_seconds=6,
            heartbeat_interval_seconds=1,
        )
        actions = [make_action(f"c{i}", 0) for i in range(n)]
        produce_actions(settings, actions)
        process = start_deliver(settings, tmp_path / "first.log", once=False)
        try:
            deadline = time.monotonic() + 40
            while len(receiver.processed_keys()) < n // 3:
                assert process.poll() is None, (tmp_path / "first.log").read_text()
                assert time.monotonic() < deadline, "the first deliverer delivered too little"
                time.sleep(0.05)
        finally:
            process.kill()
            process.wait(10)
        before = receiver.processed_keys()
        assert 0 < len(before) < n
        assert asyncio.run(committed(settings)) == {}
        counters = deliver_once(settings.model_copy(update={"commit_interval_seconds": 0.2}), timeout=60)
        arrivals = receiver.snapshot()
        processed = receiver.processed_keys()

    assert processed == Counter(a.action_id for a in actions)
    redelivered = {a.headers["Idempotency-Key"] for a in arrivals if a.duplicate}
    assert redelivered >= set(before)  # uncommitted, so sent again: deduplicated by the key
    assert_signed(arrivals)
    assert counters.delivered == n and counters.dead_lettered == 0
    assert_all_committed(settings)


def test_an_always_failing_destination_dead_letters_everything_and_commits_only_after(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    with Receiver(always(500)) as receiver:
        settings = setup(
            isolated_settings,
            tmp_path,
            webhook(f"{receiver.url}/hooks"),
            deliver_max_attempts=4,
            deliver_retry_base_seconds=0.2,
            deliver_retry_cap_seconds=0.4,
        )
        actions = [make_action(f"c{c}", n) for n in range(5) for c in range(4)]
        produce_actions(settings, actions)
        sent = {a.action_id: a.encode() for a in actions}
        log = tmp_path / "deliver.log"
        process = start_deliver(settings, log)
        # While it runs: whatever is committed, every record below it is already dead-lettered.
        samples = 0
        try:
            while process.poll() is None:
                offsets = asyncio.run(committed(settings))
                letters = {(d["partition"], d["offset"]) for d in asyncio.run(dead_letters(settings))}
                for partition, offset in offsets.items():
                    assert {(partition, o) for o in range(offset)} <= letters, (partition, offset)
                samples += 1
                time.sleep(0.2)
            assert process.wait(60) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
        arrivals = receiver.snapshot()

    assert samples >= 3
    letters = asyncio.run(dead_letters(settings))
    assert sorted(d["action_id"] for d in letters) == sorted(sent)
    for letter in letters:
        assert letter["v"] == 1
        assert letter["reason"] == "gave up after 4 attempts; last: HTTP 500 Internal Server Error"
        assert (letter["destination"], letter["channel"], letter["attempts"]) == ("webhook", "webhook", 4)
        assert letter["raw"] == sent[letter["action_id"]]  # the original bytes
        assert letter["topic"] == settings.actions_topic
    assert Counter(a.headers["Idempotency-Key"] for a in arrivals) == {k: 4 for k in sent}
    assert_all_committed(settings)
    assert "dead-lettered 20 (0 malformed)" in log.read_text()


def most_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` (sorted) in any half-open window ``[t, t + window)``."""
    return max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))


def test_each_destinations_rate_limit_holds_at_its_receiver_retries_included(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    limits = {"webhook": (20, 2, 40), "in_app": (10, 1, 20)}  # rate, burst, actions
    # A receiver per destination; every 6th request to each fails and is retried.
    receivers = {
        channel: Receiver(lambda i, _t: Reply(503) if i % 6 == 5 else Reply(200)) for channel in limits
    }
    with receivers["webhook"], receivers["in_app"]:
        destinations = "".join(
            webhook(
                f"{receivers[channel].url}/{channel}",
                f"  rate_limit_per_second: {rate}\n  burst: {burst}\n  concurrency: 16\n",
                channel,
            )
            for channel, (rate, burst, _) in limits.items()
        )
        settings = setup(isolated_settings, tmp_path, destinations)
        # One action per customer, so that the per-customer order holds nothing back.
        actions = [
            make_action(f"{channel}-c{i}", 0, channel)
            for channel, (*_, n) in limits.items()
            for i in range(n)
        ]
        produce_actions(settings, actions)
        counters = deliver_once(settings)

    assert counters.delivered == len(actions) and counters.retried > 0
    for channel, (rate, burst, n) in limits.items():
        receiver = receivers[channel]
        assert receiver.processed_keys() == Counter(a.action_id for a in actions if a.channel == channel)
        times = sorted(a.at for a in receiver.snapshot())
        span = times[-1] - times[0]
        assert len(times) > n  # its retries went through the same bucket
        windows = {w: most_in_window(times, w) for w in (0.25, 0.5, 1.0, 2.0)}
        print(
            f"\n{channel}: limit {rate}/s burst {burst}: {len(times)} requests ({len(times) - n} retries) "
            f"in {span:.3f}s = {(len(times) - burst) / span:.2f}/s after the burst; most in a window: "
            + ", ".join(f"{w:g}s {m}" for w, m in windows.items())
        )
        # The bucket grants at most burst + rate * T in any T seconds; one request of slack for
        # the jitter of arrival times (a request delayed at the start of a window, say).
        for window, most in windows.items():
            assert most <= burst + rate * window + 1, (channel, window, most)
        assert len(times) <= burst + rate * span + 1, (channel, span)
