"""Scoring a batch at once: run every customer's step up to its score request, score, resume.

A customer's step (``engine.stream.customer_step``) is a generator that yields
``(model snapshot, model-input row)`` whenever it needs scores. ``run_scored`` advances all
customers of a batch in lock step: it gathers the pending requests, scores them per snapshot
version in one call, and sends each step its row's scores. Each customer's own events still run
strictly in order; only the scoring of different customers is batched, so the result equals
scoring one event at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.stream.customer_step import Scored, ScoreRequest
from engine.stream.model_gate import VersionModels


def run_scored(steps: Mapping[str, Scored]) -> dict[str, Any]:
    """Drive every step to its end; return each one's result, keyed like ``steps``."""
    results: dict[str, Any] = {}
    waiting: dict[str, ScoreRequest] = {}
    for key, step in steps.items():
        try:
            waiting[key] = next(step)
        except StopIteration as done:
            results[key] = done.value
    while waiting:
        by_version: dict[int, tuple[VersionModels, list[str]]] = {}
        for key, (models, _row) in waiting.items():
            by_version.setdefault(id(models), (models, []))[1].append(key)
        answers: dict[str, dict[str, float]] = {}
        for models, keys in by_version.values():
            scored = models.score_rows([waiting[key][1] for key in keys])
            answers.update(zip(keys, scored, strict=True))
        resumed: dict[str, ScoreRequest] = {}
        for key, scores in answers.items():
            try:
                resumed[key] = steps[key].send(scores)
            except StopIteration as done:
                results[key] = done.value
        waiting = resumed
    return {key: results[key] for key in steps}
