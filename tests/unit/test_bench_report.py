"""The bench report's figures: paths into a round, medians over rounds, rendering, JSON."""

from __future__ import annotations

import json
import math

import pytest

from engine.ops.bench.report import as_json, get_path, metric_rows, set_path
from engine.ops.bench.run import BenchParams, medians


def _round(rate: float, naive: float) -> dict[str, object]:
    return {
        "bare": {"events_per_s": 100_000.0},
        "naive": {"events_per_s": naive},
        "workers": {
            "1": {"events_per_s": rate, "ratio_naive": rate / naive, "cpu_us_per_event_each": [250.0]},
        },
        "latency": {"loads": {"50": {"end_to_end": {"p50": rate / 10}}}},
    }


def test_paths_reach_into_dicts_and_lists() -> None:
    data = _round(3000.0, 1000.0)
    assert get_path(data, ("workers", "1", "cpu_us_per_event_each", 0)) == 250.0
    assert get_path(data, ("workers", "2", "events_per_s")) is None
    out: dict[str, object] = {}
    set_path(out, ("workers", "1", "cpu_us_per_event_each", 0), 1.0)
    assert get_path(out, ("workers", "1", "cpu_us_per_event_each", 0)) == 1.0


def test_medians_take_each_figure_over_the_rounds() -> None:
    params = BenchParams(workers=(1,), latency_loads=(0.5,))
    rounds = [_round(3000.0, 1000.0), _round(1000.0, 1000.0), _round(2000.0, 500.0)]
    median = medians(rounds, params)  # type: ignore[arg-type]
    assert median["workers"]["1"]["events_per_s"] == 2000.0
    assert median["workers"]["1"]["ratio_naive"] == pytest.approx(3.0)
    assert median["latency"]["loads"]["50"]["end_to_end"]["p50"] == 200.0
    assert median["workers"]["1"]["cpu_us_per_event_each"]["0"] == 250.0


def test_rows_cover_every_worker_count_and_load() -> None:
    labels = [label for label, _, _ in metric_rows(BenchParams(workers=(1, 2), latency_loads=(0.25, 0.75)))]
    assert "ratio 2 worker(s) / naive" in labels
    assert "ratio 2 worker(s) CPU / feature step" in labels
    assert "feature step alone CPU us/event" in labels
    assert "  worker 2 of 2: own events" in labels
    assert "at 75%: latency p99 ms" in labels


def test_json_writes_nan_as_null() -> None:
    assert json.loads(as_json({"x": math.nan, "y": [1.5]})) == {"x": None, "y": [1.5]}


def test_quick_parameters_are_small_and_valid() -> None:
    quick = BenchParams.quick()
    quick.validate()
    assert quick.events < BenchParams().events and quick.rounds < BenchParams().rounds
    assert BenchParams.quick(rounds=1).rounds == 1
