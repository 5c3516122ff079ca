"""Reports for analysts and operators, read from Redis: segment sizes, model quality, fairness.

``segment_sizes`` reads the incrementally kept sums (no scan). ``model_report`` reads the
learner's report (``engine.learner``): one model per kind, evaluated over every label.
``score_distribution`` is an analyst's report and the one place that scans customers: score
quantiles per value of the configured group attribute (``SEGFLOW_GROUP_ATTRIBUTE``), so that a
model that scores one group systematically differently can be seen.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, cast

from engine.app import build_pipeline
from engine.codecs import decode_msgpack
from engine.redis_clients import redis_client
from engine.settings import Settings
from engine.stream.customer_step import GROUP_EXTRA, SCORES_EXTRA
from features.redis_store import _parse_record
from models.snapshots import ModelSnapshotStore


async def segment_sizes(settings: Settings) -> dict[str, Any]:
    """Per family and segment: customers and revenue (major units), with the rules version."""
    client = redis_client(settings)
    try:
        pipeline = build_pipeline(settings, client)
        sizes = await pipeline.aggregates.sizes(pipeline.rules)
        return {"rules_version": pipeline.rules.version, "families": sizes}
    finally:
        await client.aclose()


async def model_report(settings: Settings) -> dict[str, Any]:
    """The learner's report: the sealed model version, labels consumed and learned, the
    prequential and holdout quality of each model over every label (one model per kind), and
    each model's readiness ("ready" or "warming up: <reason>")."""
    client = redis_client(settings)
    try:
        store = ModelSnapshotStore(client, settings.key_prefix)  # type: ignore[arg-type]
        sealed = await store.sealed_version()
        report = await store.report()
    finally:
        await client.aclose()
    return {
        "sealed_version": sealed,
        "learner": {k: v for k, v in report.items() if k not in ("reports", "readiness")},
        "models": report.get("reports") or {},
        "readiness": {name: r["text"] for name, r in (report.get("readiness") or {}).items()},
    }


async def score_distribution(settings: Settings, limit: int = 1_000_000) -> dict[str, Any]:
    """Per model and group value: count, mean and the 10/50/90th percentiles of the stored scores."""
    client = redis_client(settings)
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seen = 0
    try:
        async for key in client.scan_iter(match=f"{settings.key_prefix}:c:*", count=1000):
            # The client does not decode responses: the hash's fields and values are bytes.
            raw = cast("dict[bytes, bytes]", await client.hgetall(key))
            record = _parse_record("", raw)
            if SCORES_EXTRA not in record.extras:
                continue
            group = decode_msgpack(record.extras[GROUP_EXTRA]) if GROUP_EXTRA in record.extras else None
            for model, value in decode_msgpack(record.extras[SCORES_EXTRA]).items():
                scores[model][str(group) if group is not None else "(none)"].append(float(value))
            seen += 1
            if seen >= limit:
                break
    finally:
        await client.aclose()
    out: dict[str, Any] = {"attribute": settings.group_attribute, "customers": seen, "models": {}}
    for model, groups in sorted(scores.items()):
        out["models"][model] = {group: _summary(values) for group, values in sorted(groups.items())}
    return out


def _summary(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    deciles = statistics.quantiles(ordered, n=10) if len(ordered) > 1 else [ordered[0]] * 9
    return {
        "n": len(ordered),
        "mean": round(statistics.fmean(ordered), 6),
        "p10": round(deciles[0], 6),
        "p50": round(deciles[4], 6),
        "p90": round(deciles[8], 6),
    }
