"""``segflow evaluate``: the worker's own pipeline and learner over a stream, metrics side by side.

The stream (a JSON-lines file of schema-v1 events, or the population simulator) is replayed
without Kafka through ``SegmentPipeline`` and the in-process learner (``engine.stream.replay``,
``engine.learner.local``), on Redis under a namespace of its own that is removed afterwards: the
same features, label rules, canonical learning order and sealed snapshots as a worker, so the
metrics are the ones the worker's learner reports for the same stream. Each record goes to the
partition the producer's partitioner gives its key, so the labels are the worker's too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from aiokafka.partitioner import DefaultPartitioner

from engine.app import build_pipeline
from engine.learner.local import LocalLearner
from engine.redis_clients import redis_client
from engine.settings import Settings, namespaced
from engine.stream.batch_records import LABEL, RawRecord
from engine.stream.replay import replay
from models.baselines import SimpleRule, strongest_rule
from models.evaluation import ModelEvaluation
from models.hindsight import LabelRow, hindsight_auc
from models.label_messages import decode_label
from models.pending import unpack_input
from models.population import PopulationConfig
from models.simulate import generate_events

TICKS_AFTER_THE_END = 100


@dataclass(slots=True)
class EvaluationResult:
    """The learner's metrics per model, and the labelled rows of each model."""

    evaluations: dict[str, ModelEvaluation]
    rows: dict[str, list[LabelRow]] = field(default_factory=dict)
    events: int = 0
    too_late: int = 0
    input_names: list[str] = field(default_factory=list)
    sealed_version: int | None = None
    readiness: dict[str, str] = field(default_factory=dict)
    """Per model, "ready" or "warming up: <reason>" as of the last sealed version."""
    baselines: dict[str, SimpleRule] = field(default_factory=dict)
    """Per model, the strongest simple rule beside the online model (``models.baselines``)."""
    hindsight: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per classifier, the scikit-learn reference trained with hindsight (``models.hindsight``)."""


def file_payloads(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every line of a JSON-lines file, as a producer would send them."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                customer = json.loads(line)["customer_id"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not an event with a customer_id") from None
            yield str(customer).encode(), line.strip()


def simulated_payloads(customers: int, days: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of the simulator's events, msgpack as the demo produces them."""
    for wire in generate_events(PopulationConfig(customers=customers, days=days, seed=seed)):
        yield wire["customer_id"].encode(), msgpack.packb(wire)


def as_records(settings: Settings, payloads: Iterator[tuple[bytes, bytes]]) -> list[RawRecord]:
    """The records as the events topic would hold them: partition by key, offsets in order."""
    partitions = list(range(settings.events_partitions))
    choose = DefaultPartitioner()
    offsets = dict.fromkeys(partitions, 0)
    records = []
    for key, value in payloads:
        partition = int(choose(key, partitions, partitions))
        records.append(RawRecord(settings.events_topic, partition, offsets[partition], key, value))
        offsets[partition] += 1
    return records


async def replay_stream(settings: Settings, records: list[RawRecord]) -> tuple[LocalLearner, list[Any]]:
    """Replay ``records`` under ``settings``' key prefix; the learner and every output entry."""
    client = redis_client(settings)
    try:
        pipeline = build_pipeline(settings, client)
        learner = LocalLearner(settings, client)
        per_partition = max(1, settings.batch_max_events // settings.events_partitions)
        result = await replay(pipeline, records, learner, per_partition)
        outputs = list(result.delivered)
        for _ in range(TICKS_AFTER_THE_END):  # the worker's timer goes on after the last event
            ticked = await pipeline.tick()
            outputs += ticked.changes
            learner.offer(ticked.changes)
            pipeline.defer_clear(ticked.changes)
            if not ticked.ticked:
                break
        await pipeline.flush_cleared()
        return learner, outputs
    finally:
        await client.aclose()


async def remove_keys(settings: Settings) -> None:
    """Delete every Redis key under ``settings``' key prefix (a scratch namespace)."""
    client = redis_client(settings)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


def run_evaluation(
    settings: Settings, payloads: Iterator[tuple[bytes, bytes]], models: list[str] | None, warmup_days: float
) -> tuple[EvaluationResult, dict[str, Any]]:
    """Replay the stream; return the learner's metrics and the churn model's hindsight comparison.

    ``warmup_days`` leaves the predictions of the stream's first days out of the hindsight
    comparison only (an untrained model's guesses say nothing about it); the metrics are the
    learner's over every label, as the worker's learner reports them.
    """
    tag = uuid.uuid4().hex[:10]
    scratch = namespaced(settings, f"evaluate-{tag}", f"eval{tag}")
    records = as_records(scratch, payloads)
    try:
        learner, outputs = asyncio.run(replay_stream(scratch, records))
    finally:
        asyncio.run(remove_keys(scratch))
    core = learner.learner
    names = list(core.config.input_names)
    if models:
        unknown = set(models) - set(core.evaluations)
        if unknown:
            raise ValueError(
                f"unknown model(s) {', '.join(sorted(unknown))}; known: {sorted(core.evaluations)}"
            )
    wanted = models or list(core.evaluations)
    first_ts = min((_event_ts(r.value) for r in records[:1]), default=0.0)
    rows: dict[str, list[LabelRow]] = {}
    seen: set[str] = set()
    for entry in outputs:
        if entry.kind != LABEL:
            continue
        label = decode_label(entry.payload)
        if label.label_id in seen or label.model not in wanted or label.due_ts >= _sealed_end(core):
            continue
        seen.add(label.label_id)
        if label.made_ts < first_ts + warmup_days * 86_400:
            continue
        x = unpack_input(label.x, names)
        rows.setdefault(label.model, []).append(
            LabelRow(x, label.y_true, label.y_pred, label.holdout, label.customer_id)
        )
    result = EvaluationResult(
        evaluations={name: core.evaluations[name] for name in wanted},
        rows=rows,
        events=len(records),
        too_late=sum(1 for e in outputs if e.kind == "d"),
        input_names=names,
        sealed_version=core.sealed,
        readiness={name: r.describe() for name, r in core.readiness().items() if name in wanted},
    )
    for name in wanted:
        task = core.tasks[name]
        result.baselines[name] = strongest_rule(name, task, rows.get(name, []), names)
        if task == "classification" and name in rows:
            result.hindsight[name] = hindsight_auc(rows[name], names)
    reference = result.hindsight.get("churn", {})
    return result, reference


def _sealed_end(core: Any) -> float:
    """Labels due from here on were not learned (their period is not sealed)."""
    return float("inf") if core.sealed is None else (core.sealed + 1) * core.period_seconds


def _event_ts(raw: bytes | None) -> float:
    if not raw:
        return 0.0
    try:
        data = json.loads(raw)
    except ValueError:
        data = msgpack.unpackb(raw)
    return float(data["ts"]) / 1000


def render(result: EvaluationResult, reference: dict[str, Any]) -> str:
    """The metrics as a table, then the hindsight comparison."""
    lines = [
        f"events {result.events} (too late: {result.too_late}); inputs {len(result.input_names)}; "
        f"model snapshots sealed through version {result.sealed_version}"
    ]
    lines.append(
        f"{'model':24} {'group':12} {'labels':>7} {'pos':>6} {'roc_auc':>8} {'log_loss':>9} {'ece':>7} "
        f"{'mae':>9} {'rmse':>9}"
    )
    for name, evaluation in result.evaluations.items():
        report = evaluation.report()
        for group in ("prequential", "holdout"):
            row = report.get(group, {})
            lines.append(
                f"{name:24} {group:12} {row.get('n', 0):>7} {_fmt(row.get('positives'), 'd'):>6} "
                f"{_fmt(row.get('roc_auc')):>8} {_fmt(row.get('log_loss')):>9} {_fmt(row.get('ece')):>7} "
                f"{_fmt(row.get('mae')):>9} {_fmt(row.get('rmse')):>9}"
            )
        drift = report.get("drift", {})
        lines.append(
            f"{name:24} drift detections: {drift.get('detections', 0)} (response: {drift.get('response')})"
        )
        if name in result.readiness:
            lines.append(f"{name:24} {result.readiness[name]}")
    lines += _baseline_lines(result)
    if reference:
        lines.append(
            "churn on the holdout labels: online (prequential predictions) ROC AUC "
            f"{_fmt(reference.get('online_auc'))} vs scikit-learn with hindsight "
            f"{_fmt(reference.get('reference_auc'))} ({reference.get('train_labels')} training labels, "
            f"{reference.get('holdout_labels')} holdout labels, "
            f"{reference.get('holdout_positives')} of them positive)"
        )
        online, hindsight = reference.get("online_auc"), reference.get("reference_auc")
        if online is not None and hindsight is not None:
            lines.append(
                f"churn hindsight minus online ROC AUC: {hindsight - online:.3f} (95% interval over "
                f"holdout customers {_fmt(reference.get('gap_low'))} to {_fmt(reference.get('gap_high'))})"
            )
    return "\n".join(lines)


def _baseline_lines(result: EvaluationResult) -> list[str]:
    """Per model: online vs the strongest simple rule vs hindsight, on the holdout labels."""
    lines = [
        "holdout labels: the online model vs the strongest simple rule (one input, chosen on the "
        "training labels) vs scikit-learn with hindsight"
    ]
    for name, rule in result.baselines.items():
        hindsight = result.hindsight.get(name, {}).get("reference_auc")
        verdict = {True: "online better", False: "RULE BETTER", None: "-"}[rule.online_wins]
        lines.append(
            f"{name:24} {rule.metric} online {_fmt(rule.online_metric)}, rule {_fmt(rule.rule_metric)}"
            f" [{rule.rule or '-'}], hindsight {_fmt(hindsight)} ({rule.holdout_labels} labels): {verdict}"
        )
    return lines


def as_json(result: EvaluationResult, reference: dict[str, Any]) -> str:
    """Machine-readable form of the same."""
    return json.dumps(
        {
            "events": result.events,
            "too_late": result.too_late,
            "models": {name: e.report() for name, e in result.evaluations.items()},
            "readiness": result.readiness,
            "churn_hindsight": reference,
            "baselines": {
                name: {
                    "metric": rule.metric,
                    "online": rule.online_metric,
                    "rule": rule.rule,
                    "rule_metric": rule.rule_metric,
                    "online_better": rule.online_wins,
                    "hindsight_auc": result.hindsight.get(name, {}).get("reference_auc"),
                    "holdout_labels": rule.holdout_labels,
                }
                for name, rule in result.baselines.items()
            },
        },
        indent=2,
        default=str,
    )


def _fmt(value: Any, kind: str = ".3f") -> str:
    if value is None:
        return "-"
    return format(value, kind)
