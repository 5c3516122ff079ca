"""Export rows to CSV (stdlib) or Parquet (pyarrow, optional: ``pip install 'segflow[export]'``)."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("csv", "parquet")
PARQUET_ROWS = 50_000
"""Rows per Parquet row group (and per buffered chunk)."""


async def write_csv(path: Path, header: Sequence[str], rows: AsyncIterator[list[Any]]) -> None:
    """A header line, then one line per row; None is an empty cell (NaN in pandas)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        async for row in rows:
            writer.writerow(["" if v is None else v for v in row])


async def write_parquet(path: Path, header: Sequence[str], rows: AsyncIterator[list[Any]]) -> None:
    """Typed columns: text where a value is text, bool where every value is, else float64
    (so a column keeps one type across row groups); None is null."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install 'segflow[export]'") from None
    writer: Any = None
    chunk: list[list[Any]] = []

    def flush() -> None:
        nonlocal writer
        columns = list(zip(*chunk, strict=True)) if chunk else [() for _ in header]
        arrays = [pa.array(list(values), type=_arrow_type(pa, values)) for values in columns]
        table = pa.Table.from_arrays(arrays, names=list(header))
        if writer is None:
            writer = pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table.cast(writer.schema))
        chunk.clear()

    async for row in rows:
        chunk.append(row)
        if len(chunk) >= PARQUET_ROWS:
            flush()
    if chunk or writer is None:
        flush()
    writer.close()


def _arrow_type(pa: Any, values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present or any(isinstance(v, str) for v in present):
        return pa.string()
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    return pa.float64()
