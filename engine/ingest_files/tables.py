"""Rows of a CSV or Parquet file, each with where it is, and what an import made of them.

``read_rows`` yields ``(where, row)``: ``where`` is ``"line N"`` (the CSV line the row starts on,
the header being line 1) or ``"row N"`` (1-based Parquet row), ``row`` a dict of column -> value
(CSV: text; Parquet: the column's Python values) or, for a CSV row with more cells than the
header, the problem as text. pyarrow is imported only for Parquet.

``Prepared`` is what an import made of a whole file before anything is produced: the encoded
events with their times, the customers, and the rows that could not become events
(``Problems``, the first few kept as ``"line 7: ..."`` lines).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMATS = ("auto", "csv", "parquet")
DELIMITERS = ",;\t|"
PARQUET_BATCH_ROWS = 10_000

Row = dict[str, Any] | str
"""A row's values by column, or (a str) why the row has none."""


def table_format(path: Path, fmt: str) -> str:
    """``csv`` or ``parquet``: ``fmt``, or for ``auto`` by suffix (``.parquet``/``.pq``, else CSV)."""
    if fmt != "auto":
        return fmt
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"


def columns_of(path: Path, fmt: str, encoding: str = "utf-8") -> list[str]:
    """The column names of a CSV header or a Parquet schema (empty for an empty CSV)."""
    if table_format(path, fmt) == "parquet":
        return list(_parquet_file(path).schema_arrow.names)
    with path.open(newline="", encoding=_encoding(encoding)) as handle:
        header = handle.readline()
    return next(csv.reader([header], delimiter=_delimiter(header)), [])


def read_rows(path: Path, fmt: str, encoding: str = "utf-8") -> Iterator[tuple[str, Row]]:
    """Every data row of the file with where it is (see the module doc)."""
    if table_format(path, fmt) == "parquet":
        yield from _parquet_rows(path)
        return
    try:
        yield from _csv_rows(path, encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not {encoding} text ({exc.reason}); give the file's --encoding") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from None


def _encoding(encoding: str) -> str:
    # A UTF-8 file saved by a spreadsheet starts with a byte-order mark: not part of the first column's name.
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _delimiter(header: str) -> str:
    """The delimiter the header line uses most (a comma when it has none of them)."""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(path: Path, encoding: str) -> Iterator[tuple[str, Row]]:
    with path.open(newline="", encoding=_encoding(encoding)) as handle:
        first = handle.readline()
        reader = csv.reader(handle, delimiter=_delimiter(first))
        header = next(csv.reader([first], delimiter=_delimiter(first)), [])
        ended = 1  # the physical line the previous record ended on
        for cells in reader:
            start, ended = ended + 1, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            where = f"line {start}"
            if len(cells) > len(header):
                yield where, f"{len(cells)} cells, the header has {len(header)}"
                continue
            yield where, dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("reading Parquet needs pyarrow: pip install 'segflow[export]'") from None
    try:
        return pq.ParquetFile(str(path))
    except Exception as exc:  # pyarrow's errors (ArrowInvalid, OSError) vary by version
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, Row]]:
    number = 0
    for batch in _parquet_file(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            number += 1
            yield f"row {number}", row


@dataclass
class Problems:
    """Rows that cannot become events: how many, and the first ``limit`` as ``"line 7: ..."``."""

    limit: int = 20
    count: int = 0
    shown: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    """How to fix a kind of problem, each once (shown after the problems)."""

    def add(self, where: str, problem: str, hint: str | None = None) -> None:
        """Count one bad row (kept for display while fewer than ``limit`` are)."""
        self.count += 1
        if len(self.shown) < self.limit:
            self.shown.append(f"{where}: {problem}")
        if hint is not None and hint not in self.hints:
            self.hints.append(hint)

    def lines(self) -> list[str]:
        """The kept problems, how many more there are, and the hints."""
        more = self.count - len(self.shown)
        return self.shown + ([f"... and {more} more"] if more > 0 else []) + self.hints


@dataclass
class Prepared:
    """A whole file made into events, not produced yet."""

    path: Path
    kind: str
    """What the rows are (``purchases``, ``events``), for the summary."""
    problems: Problems
    rows: int = 0
    events: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    """(event time in epoch ms, Kafka key, msgpack value), in file order."""
    customers: set[str] = field(default_factory=set)

    def add(self, ts_ms: int, customer_id: str, value: bytes) -> None:
        """Keep one event, keyed by its customer."""
        self.events.append((ts_ms, customer_id.encode(), value))
        self.customers.add(customer_id)

    def payloads(self, keep_order: bool = False) -> list[tuple[bytes | None, bytes]]:
        """(key, value) to produce: in event-time order (stable: file order among equal times),
        so that no event is older than its partition's watermark; or in file order."""
        events = self.events if keep_order else sorted(self.events, key=lambda e: e[0])
        return [(key, value) for _, key, value in events]

    def summary(self) -> str:
        """One line: what was read and what it became."""
        span = ""
        if self.events:
            first, last = (min(e[0] for e in self.events), max(e[0] for e in self.events))
            span = f", {_day(first)}..{_day(last)}"
        skipped = f"; {self.problems.count} bad rows skipped" if self.problems.count else ""
        return (
            f"{self.path}: {self.rows} rows, {len(self.events)} {self.kind} of "
            f"{len(self.customers)} customers{span}{skipped}"
        )


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")
