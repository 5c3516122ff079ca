"""Network faults between the worker and Redis or Kafka decide nothing differently (#14).

One seeded simulated stream is processed by one worker process, each run in its own namespace,
on the real stack: first directly (the reference), then with the worker's Kafka and Redis
reached through the stack's toxiproxy (``segflow stack up --proxy``; the broker's ``PROXIED``
listener keeps a Kafka client behind the proxy) while, once a fifth of the events are applied,

(redis) the Redis link is slow (latency 50 ms ± 20 ms), then every connection is reset as soon
        as a reply comes (reset_peer), then replies stop and the connections close (timeout);
(kafka) the Kafka link is slow, then silent with its connections closed (timeout), then the
        proxy is disabled (connections refused).

Each run must end with the reference's feature states, final memberships, change ids (a change
sent twice carries the same id), action decisions, outcomes and sealed tallies, and every event
accounted once (``determinism_outcome.same``/``accounted``). The fault runs lower the Redis socket
timeout to 3 s (30 s by default), so that a silent Redis costs seconds per batch, not half a minute.

Quick by default (seconds of fault, a small stream: each run well under a minute on a quiet
machine). ``SEGFLOW_TEST_LONG_FAULTS=1`` runs the longer version by hand: the determinism test's
larger stream, half a minute of latency and 15 s of each drop.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from determinism_outcome import Outcome, accounted, describe, same
from determinism_runs import APPLIED, DEAD, RETRIES, Fleet, namespaced_runs, worker_run
from helpers import wait_until
from proxy_helpers import behind_proxies, toxiproxy_up

from engine.activation.demo_experiment import demo_rules_text
from engine.app import load_rule_set
from engine.rules.loader import DEFAULT_RULES_PATH
from engine.settings import Settings
from engine.stack.toxiproxy import KAFKA_PROXY, REDIS_PROXY
from engine.stack.toxiproxy_api import ToxiproxyClient, latency, reset_peer, timeout
from models.population import PopulationConfig
from models.simulate import generate_events, write_jsonl

pytestmark = pytest.mark.integration

LONG = os.environ.get("SEGFLOW_TEST_LONG_FAULTS", "") == "1"
# Quick: ~13k events over 60 days (30 days enter no win-back action); long: the determinism test's ~71k.
POPULATION = (
    PopulationConfig(customers=600, days=60, seed=10)
    if LONG
    else PopulationConfig(customers=120, days=60, seed=14)
)
SLOW_SECONDS, DROP_SECONDS = (30.0, 15.0) if LONG else (4.0, 5.0)
PARTITIONS = 8
IDLE_ADVANCE_SECONDS = 3600.0
"""As in the determinism test: keeps the wall clock out of what is compared."""
REDIS_SOCKET_TIMEOUT_SECONDS = 3.0


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], int]:
    events = list(generate_events(POPULATION))
    path = tmp_path_factory.mktemp("faults") / "events.jsonl"
    write_jsonl(events, path)
    return path, sorted({e["customer_id"] for e in events}), len(events)


@pytest.fixture(scope="module")
def run_settings(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Settings]]:
    """Fresh settings per run; the shipped rules with the win-back actions also on 'lapsing' (so
    that action decisions are compared too), as in the determinism test."""
    text = demo_rules_text(DEFAULT_RULES_PATH.read_text())
    assert text is not None
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    rules.write_text(text)
    update = {
        "events_partitions": PARTITIONS,
        "changes_partitions": PARTITIONS,
        "idle_advance_seconds": IDLE_ADVANCE_SECONDS,
        "rules_file": rules,
    }
    yield from namespaced_runs(stack_settings, "net", update)


@pytest.fixture(scope="module")
def api(stack_settings: Settings) -> ToxiproxyClient:
    return toxiproxy_up(stack_settings)


@pytest.fixture(scope="module")
def reference(
    run_settings: Callable[[str], Settings],
    stream: tuple[Path, list[str], int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Outcome:
    path, customers, count = stream
    outcome = worker_run(run_settings("clean"), path, customers, tmp_path_factory.mktemp("clean"))
    assert accounted(outcome) == count
    assert outcome.notes[APPLIED] + outcome.notes[DEAD] == count, outcome.notes
    assert outcome.changes and outcome.actions and outcome.tallies, outcome.notes
    return outcome


Fault = Callable[[], contextlib.AbstractContextManager[object]]


def _stretches(api: ToxiproxyClient, proxy: str) -> list[tuple[str, Fault, float]]:
    """The faults on ``proxy``, one after the other: (name, the fault, how long it lasts)."""
    drop_ms = int(DROP_SECONDS * 1000)
    faults: list[tuple[str, Fault, float]] = [
        ("slow", lambda: api.applied(proxy, latency(50, 20)), SLOW_SECONDS),
    ]
    if proxy == REDIS_PROXY:
        faults.append(("reset", lambda: api.applied(proxy, reset_peer(0)), DROP_SECONDS))
    # Silent: no data either way, and each connection closed after the drop's length.
    faults.append(("silent", lambda: _both_ways(api, proxy, drop_ms), DROP_SECONDS))
    if proxy == KAFKA_PROXY:
        faults.append(("refused", lambda: api.disabled(proxy), DROP_SECONDS))
    return faults


@contextlib.contextmanager
def _both_ways(api: ToxiproxyClient, proxy: str, ms: int) -> Iterator[None]:
    with api.applied(proxy, timeout(ms, "upstream")), api.applied(proxy, timeout(ms, "downstream")):
        yield


def _through(api: ToxiproxyClient, proxy: str) -> Callable[[Fleet, int], dict[str, int]]:
    """A disturbance (``determinism_runs.worker_run``): the faults on ``proxy`` once a fifth of the
    events are applied; notes how many were applied when each fault ended."""

    def disturb(fleet: Fleet, total: int) -> dict[str, int]:
        started = wait_until(lambda: fleet.metric(APPLIED) >= total // 5, 120, every=0.1)
        assert started, f"the worker never applied {total // 5} events\n{fleet.log_tail()}"
        notes = {"applied_at_first_fault": fleet.metric(APPLIED)}
        for name, fault, seconds in _stretches(api, proxy):
            with fault():
                time.sleep(seconds)
            notes[f"applied_after_{name}"] = fleet.metric(APPLIED)
        return notes

    return disturb


@pytest.mark.parametrize("proxy", [REDIS_PROXY, KAFKA_PROXY])
def test_network_faults_change_no_decision(
    proxy: str,
    api: ToxiproxyClient,
    reference: Outcome,
    run_settings: Callable[[str], Settings],
    stream: tuple[Path, list[str], int],
    stack_settings: Settings,
    tmp_path: Path,
) -> None:
    path, customers, count = stream
    settings = behind_proxies(run_settings(proxy)).model_copy(
        update={"redis_socket_timeout_seconds": REDIS_SOCKET_TIMEOUT_SECONDS}
    )
    outcome = worker_run(settings, path, customers, tmp_path, disturb=_through(api, proxy))
    notes = outcome.notes
    assert notes["workers_alive_at_end"] == 1, f"the worker did not survive: {notes}"
    # The faults hit mid-stream: the worker still had events to apply when the drops began.
    assert notes["applied_after_slow"] < count, notes
    if proxy == REDIS_PROXY:
        assert notes[RETRIES] > 0, f"the worker never noticed Redis was unreachable: {notes}"
    assert accounted(outcome) == count, f"{proxy}: not every event was applied once"
    families = [family.name for family in load_rule_set(stack_settings).families]
    identical = same(reference, outcome)  # a bool, so that pytest does not print both outcomes
    assert identical, describe(f"faults on {proxy}", reference, outcome, families)
    print(f"faults on {proxy}: {notes}; change events sent twice: {outcome.sent_twice}")  # shown by -rP
