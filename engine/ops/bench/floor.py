"""The feature step's own CPU per event, with no server: the floor under the worker's hot path.

Three cumulative stages over every event, timed with this thread's CPU time: the worker's decode
and schema check (``engine.event_decoder.decode_event``); then ``features.state.apply_event`` on
a dict of states; then the catalogue's ``features.catalogue.snapshot`` at the event. No Kafka,
Redis, models or rules: whatever a pipeline built on ``features/`` costs per event, it costs at
least this, on this machine, that day. ``segflow bench`` measures the last stage in every round,
beside the worker, over the workload's first ``FLOOR_EVENTS`` events (``floor_phase``); ``python
-m engine.ops.bench.floor`` measures each stage on its own over the bench's simulated workload.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from engine.app import feature_config
from engine.event_decoder import decode_event
from engine.ops.bench.setup import build_workload
from engine.settings import Settings
from features.catalogue import snapshot
from features.config import FeatureConfig
from features.state import CustomerState, apply_event

STAGES = ("decode", "decode + apply_event", "decode + apply_event + snapshot")
FLOOR_EVENTS = 20_000
"""Events the bench's floor phase takes from the workload: a pass of about a second."""
FLOOR_PASSES = 3
"""Passes of the bench's floor phase; the median is reported (one pass swung 2x on a busy machine)."""


def stage_cpu_us(workload: Sequence[tuple[bytes, bytes]], config: FeatureConfig, stage: int) -> float:
    """CPU microseconds per event of stages 0..``stage`` (see ``STAGES``) over ``workload``."""
    states: dict[str, CustomerState] = {}
    started = time.thread_time()
    for _key, raw in workload:
        event = decode_event(raw)
        if stage >= 1:
            state, _ = apply_event(states.get(event.customer_id), event, config)
            states[event.customer_id] = state
            if stage >= 2:
                snapshot(event.customer_id, state, config)
    return (time.thread_time() - started) / len(workload) * 1e6


def floor_phase(workload: Sequence[tuple[bytes, bytes]], settings: Settings) -> dict[str, Any]:
    """The bench's figure: CPU per event of decode, ``apply_event`` and ``snapshot`` together, over
    the first ``FLOOR_EVENTS`` events of ``workload``; the median of ``FLOOR_PASSES`` passes."""
    config = feature_config(settings)
    share = workload[:FLOOR_EVENTS]
    passes = [stage_cpu_us(share, config, len(STAGES) - 1) for _ in range(FLOOR_PASSES)]
    return {"events": len(share), "cpu_us_per_event": statistics.median(passes), "passes": passes}


def main(argv: Sequence[str] | None = None) -> None:
    """Print each stage's median CPU per event over the repeats, and every repeat's."""
    parser = argparse.ArgumentParser(prog="python -m engine.ops.bench.floor", description=__doc__)
    parser.add_argument("--events", type=int, default=40_000, help="events simulated (default 40000)")
    parser.add_argument("--customers", type=int, default=5_000, help="customers (default 5000)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per stage (default 5)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeats < 1:
        parser.error("--events and --repeats must be at least 1")
    workload = build_workload(args.events, args.customers, args.seed)
    config = feature_config(Settings())
    print(f"{len(workload):,} simulated events of the bench's workload; CPU us per event, cumulative")
    for stage, name in enumerate(STAGES):
        runs = [stage_cpu_us(workload, config, stage) for _ in range(args.repeats)]
        shown = ", ".join(f"{r:.1f}" for r in runs)
        print(f"{name:34s} median {statistics.median(runs):6.1f}   ({shown})")


if __name__ == "__main__":
    main()
