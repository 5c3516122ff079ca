"""Model inputs of a whole batch of feature snapshots at once, equal to ``input_row`` row by row."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import NoneType
from typing import Any

import numpy as np

from models.inputs import _INDICATOR, _LOG, _NULLABLE, _NULLABLE_LOG, _plan, input_row

_ABSENT = object()
_Snapshot = Mapping[str, float | int | None]
_FAST_TYPES = frozenset({float, int, bool, NoneType})


def input_rows(snapshots: Sequence[Mapping[str, float | int | None]], names: Sequence[str]) -> np.ndarray:
    """The model inputs of ``snapshots`` as an (n, len(names)) float64 array.

    Row i equals ``list(to_model_input(snapshots[i], names).values())`` exactly, and a snapshot
    that ``to_model_input`` rejects raises the same error here (the first such snapshot's).
    Plain ints, floats and bools are read a column at a time; any other value sends the whole
    batch through ``input_row`` one snapshot at a time.
    """
    plan = _plan(tuple(names))
    result = np.empty((len(snapshots), len(plan)))
    columns: dict[str, list[Any]] = {}
    for j, (_, feature, role) in enumerate(plan):
        values = columns.get(feature)
        if values is None:
            values = columns[feature] = [snapshot.get(feature, _ABSENT) for snapshot in snapshots]
        column = _column(values, role)
        if column is None:
            return _rows_one_by_one(snapshots, names)
        result[:, j] = column
    return result


def _column(values: list[Any], role: int) -> np.ndarray | list[float] | None:
    """One input's values for all snapshots, or None when they need ``input_row``'s checks."""
    types = set(map(type, values))
    if not types <= _FAST_TYPES:  # also a feature missing from a snapshot (_ABSENT)
        return None
    if role == _INDICATOR:
        return [1.0 if value is None else 0.0 for value in values]
    if NoneType in types:
        if role not in (_NULLABLE, _NULLABLE_LOG):
            return None
        values = [0.0 if value is None else value for value in values]
    try:
        column = np.array(values, dtype=np.float64)
    except OverflowError:  # an int beyond float range
        return None
    if not np.isfinite(column).all():
        return None
    if role in (_LOG, _NULLABLE_LOG):
        # math.log1p, not np.log1p: numpy's differs in the last bit for about 1% of values.
        return [math.copysign(math.log1p(abs(v)), v) for v in column.tolist()]
    return column


def _rows_one_by_one(snapshots: Sequence[_Snapshot], names: Sequence[str]) -> np.ndarray:
    rows = [input_row(snapshot, names) for snapshot in snapshots]
    return np.array(rows, dtype=np.float64).reshape(len(snapshots), len(names))
