"""``segflow export scores``: per customer, the model inputs and every score, as CSV from Redis.

A report (it scans the customers' hashes), meant for batch jobs that train on what the engine
knows, e.g. ``deploy/examples/batch_scores.py``, which publishes its own scores back as
``score`` events. Each row is read at the moment the customer was last judged, as
``segflow explain`` reads it: features from their state, scores as stored with their record.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

from engine.app import build_pipeline
from engine.settings import Settings
from engine.stream.customer_step import CustomerStep
from features.client import connect
from features.redis_store import CustomerRecord, _parse_record
from models.inputs import snapshot_row

SCORE_COLUMN_PREFIX = "score_"


def export_row(record: CustomerRecord, step: CustomerStep) -> dict[str, Any] | None:
    """A customer's CSV row: id, as-of time (epoch ms), model inputs, ``score_<name>`` per score."""
    state = record.state
    if state is None:
        return None
    work = step.working(record)
    as_of = max(work.evaluated_at or state.last_ts, state.last_ts)
    features = step.variables(record.customer_id, state, work.scores, as_of).features
    names = step.config.input_names
    row: dict[str, Any] = {"customer_id": record.customer_id, "as_of": round(as_of * 1000)}
    row |= dict(zip(names, snapshot_row(features.raw, names), strict=True))
    row |= {SCORE_COLUMN_PREFIX + name: value for name, value in sorted(work.scores.items())}
    return row


def write_csv(rows: Iterable[dict[str, Any]], input_names: Iterable[str], out: TextIO) -> int:
    """``rows`` as CSV with a header; score columns are the union over rows (empty when absent)."""
    materialised = list(rows)
    scores = sorted({k for row in materialised for k in row if k.startswith(SCORE_COLUMN_PREFIX)})
    writer = csv.DictWriter(out, ["customer_id", "as_of", *input_names, *scores], restval="")
    writer.writeheader()
    writer.writerows(materialised)
    return len(materialised)


async def export_scores(settings: Settings, out: TextIO, limit: int | None = None) -> int:
    """Write every stored customer's row (at most ``limit``) to ``out``; return the count."""
    client = connect(settings.redis_url)
    rows: list[dict[str, Any]] = []
    try:
        step = build_pipeline(settings, client).step
        async for key in client.scan_iter(match=f"{settings.key_prefix}:c:*", count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            customer_id = text[text.index("{") + 1 : text.rindex("}")]
            row = export_row(_parse_record(customer_id, await client.hgetall(key)), step)
            if row is not None:
                rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    finally:
        await client.aclose()
    rows.sort(key=lambda row: row["customer_id"])
    return write_csv(rows, step.config.input_names, out)
