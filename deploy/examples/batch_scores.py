"""A worked batch model: train a scikit-learn random forest on ``segflow scores export`` and
publish its scores back to the engine as ``score`` events.

    segflow scores export -o customers.csv
    python deploy/examples/batch_scores.py customers.csv --out scores.jsonl [--labels labels.csv] [--produce]
    SEGFLOW_EXTERNAL_SCORES=rf_churn segflow worker      # rules may then read score_rf_churn

The label comes from ``--labels`` (a CSV of ``customer_id,label``, e.g. from the warehouse).
Without it the example uses a stand-in so that it runs on any export: "inactive for more than 14
days" (or never active), with the columns that define it (``days_since_last_*``,
``recency_days``) left out of the inputs. The inputs are the export's numeric feature columns
(blank cells read as 0); scores and segments are left out. Each customer gets one event:
``model`` (``--model``, default ``rf_churn``), the positive-class probability as ``value``,
``version`` (default ``rf-<UTC date>``) and ``as_of`` = ``ts`` = the moment this job ran.
``--produce`` hands the file to ``segflow produce``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier

LEAKY_PREFIXES = ("days_since_last_", "recency_days")
INACTIVE_DAYS = 14.0


def _number(text: str) -> float | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read_export(path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Customer ids, the numeric feature columns, their matrix (blank: 0) and where it was blank."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"{path}: no customers")
    candidates = [c for c in rows[0] if c != "customer_id" and not c.startswith(("score_", "segment_"))]
    # A feature column is one whose cells are all numbers or blank (True/False count as 1/0).
    columns = [
        c for c in candidates if all(r[c] in ("", "True", "False") or _number(r[c]) is not None for r in rows)
    ]
    values = [[_number({"True": "1", "False": "0"}.get(r[c], r[c])) for c in columns] for r in rows]
    blank = np.array([[v is None for v in row] for row in values])
    matrix = np.array([[0.0 if v is None else v for v in row] for row in values])
    return [row["customer_id"] for row in rows], columns, matrix, blank


def labels_of(
    ids: list[str], columns: list[str], x: np.ndarray, blank: np.ndarray, path: Path | None
) -> tuple[np.ndarray, list[int]]:
    """The labels and the input columns to train on (the stand-in drops the ones defining it)."""
    if path is not None:
        with path.open(newline="") as handle:
            given = {row["customer_id"]: int(row["label"]) for row in csv.DictReader(handle)}
        return np.array([given.get(cid, 0) for cid in ids]), list(range(len(columns)))
    column = columns.index("days_since_last_activity")
    y = ((x[:, column] > INACTIVE_DAYS) | blank[:, column]).astype(int)
    return y, [i for i, c in enumerate(columns) if not c.startswith(LEAKY_PREFIXES)]


def score_events(
    ids: list[str], values: np.ndarray, model: str, version: str, now_ms: int
) -> list[dict[str, object]]:
    """One schema-v1 ``score`` event per customer (event ids stable per model, version, customer)."""
    return [
        {
            "event_id": f"score-{model}-{version}-{cid}",
            "customer_id": cid,
            "type": "score",
            "ts": now_ms,
            "attrs": {"model": model, "value": round(float(v), 6), "version": version, "as_of": now_ms},
        }
        for cid, v in zip(ids, values, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    """Train, score every exported customer, write the events (and produce them if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="CSV from `segflow scores export`")
    parser.add_argument("--out", type=Path, default=Path("scores.jsonl"))
    parser.add_argument("--labels", type=Path, default=None, help="CSV customer_id,label (0/1)")
    parser.add_argument("--model", default="rf_churn")
    parser.add_argument("--version", default=None, help="default: rf-<UTC date>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--produce", action="store_true", help="run `segflow produce` on the file")
    args = parser.parse_args(argv)

    ids, columns, x, blank = read_export(args.export)
    y, used = labels_of(ids, columns, x, blank, args.labels)
    forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, random_state=args.seed)
    forest.fit(x[:, used], y)
    positive = list(forest.classes_).index(1) if 1 in forest.classes_ else None
    values = forest.predict_proba(x[:, used])[:, positive] if positive is not None else np.zeros(len(ids))
    version = args.version or time.strftime("rf-%Y-%m-%d", time.gmtime())
    events = score_events(ids, values, args.model, version, int(time.time() * 1000))
    args.out.write_text("".join(json.dumps(e) + "\n" for e in events))
    positives = f"{int(y.sum())}/{len(y)} positive labels"
    print(f"{len(events)} {args.model} scores ({version}, {positives}) -> {args.out}")
    if args.produce:
        return subprocess.call([sys.executable, "-m", "engine", "produce", str(args.out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
