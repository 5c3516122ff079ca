"""A file of schema-v1 events (JSON lines, or CSV as ``segflow produce`` reads it), checked whole.

Every line (JSON) or row (CSV: ``event_id, customer_id, type, ts`` and ``attrs.<name>``
columns, read by ``csv_event``, as ``segflow produce`` reads them) is decoded and checked with
``engine.schemas.validate_event`` against the configured currency, as the worker would; an
event that passes is kept as its original map (msgpack), keyed by its customer. What does not
pass is a problem with its line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.codecs import encode_msgpack
from engine.ingest_files.tables import Prepared, Problems, columns_of, read_rows
from engine.schemas import ATTRIBUTE_SPECS, InvalidEvent, validate_event

FORMATS = ("auto", "jsonl", "csv")


def _coerce(event_type: Any, name: str, text: str) -> Any:
    """A CSV cell as the schema types it: numbers only where the schema expects a number."""
    spec = ATTRIBUTE_SPECS.get(event_type, {}).get(name) if isinstance(event_type, str) else None
    if spec is None or spec.kind == "str":
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text  # left as text: validation dead-letters it with the reason


CSV_COLUMNS = ("event_id", "customer_id", "type", "ts")
"""The columns a CSV of schema-v1 events must have (attributes are ``attrs.<name>`` columns)."""


def missing_csv_columns(path: Path, header: Sequence[str] | None) -> None:
    """Raise a one-line ``ValueError`` naming the schema's columns ``header`` lacks, if any."""
    missing = [c for c in CSV_COLUMNS if c not in (header or ())]
    if missing:
        raise ValueError(
            f"{path}: not a CSV of events: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (a CSV of events has "
            f"{', '.join(CSV_COLUMNS)} and attrs.<name>; other purchase files: segflow import transactions)"
        )


def csv_event(row: Mapping[str, str | None]) -> dict[str, Any]:
    """The envelope of one CSV row: empty cells left out, ``attrs.<name>`` typed by the schema."""
    event: dict[str, Any] = {"attrs": {}}
    for column, value in row.items():
        if not value:  # None or empty: left out
            continue
        if column.startswith("attrs."):
            name = column[len("attrs.") :]
            event["attrs"][name] = _coerce(row.get("type"), name, value)
        elif column == "ts":
            event["ts"] = int(value) if value.isdigit() else value
        else:
            event[column] = value
    return event


def events_format(path: Path, fmt: str) -> str:
    """``jsonl`` or ``csv``: ``fmt``, or for ``auto`` by suffix (``.csv``, else JSON lines)."""
    if fmt != "auto":
        return fmt
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def prepare_events(path: Path, currency: str, fmt: str = "auto", max_problems: int = 20) -> Prepared:
    """Read and check the whole file: every event encoded, or a problem with its line."""
    prepared = Prepared(path, "events", Problems(max_problems))
    for where, envelope in _envelopes(path, events_format(path, fmt)):
        prepared.rows += 1
        if isinstance(envelope, str):
            prepared.problems.add(where, envelope)
            continue
        try:
            event = validate_event(envelope, currency=currency)
        except InvalidEvent as exc:
            prepared.problems.add(where, str(exc))
            continue
        prepared.add(round(event.ts * 1000), event.customer_id, encode_msgpack(envelope))
    return prepared


def _envelopes(path: Path, fmt: str) -> Iterator[tuple[str, Any]]:
    """(where, decoded map or the problem as text) per line or row."""
    if fmt == "csv":
        missing_csv_columns(path, columns_of(path, "csv"))
        for where, row in read_rows(path, "csv"):
            yield where, row if isinstance(row, str) else csv_event(row)
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except UnicodeDecodeError:
                yield f"line {number}", "not UTF-8"
            except json.JSONDecodeError as exc:
                yield f"line {number}", f"not JSON ({exc.msg})"
