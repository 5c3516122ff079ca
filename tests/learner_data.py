"""Labels for the learner's tests: seeded, spread over periods, in any order and partitioning."""

from __future__ import annotations

import math
import random
import zlib
from array import array
from collections.abc import Sequence

import msgspec

from models.config import ModelConfig
from models.evaluation import is_holdout
from models.label_messages import LabelMessage, make_label_id

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a period boundary for a period of one day


def make_labels(
    config: ModelConfig,
    count: int,
    seed: int,
    days: float = 20.0,
    partitions: int = 8,
    start: float = T0,
    holdout_fraction: float = 0.2,
) -> list[LabelMessage]:
    """``count`` labels with unique ids, predictions made over ``days`` from ``start``.

    Inputs differ in scale by three orders of magnitude; the outcome depends on the first input,
    so the models learn something. ``partition`` is a hash of the customer over ``partitions``.
    """
    rng = random.Random(seed)
    tasks = {spec.name: spec.task for spec in config.specs}
    horizons = {spec.name: spec.horizon_days * DAY for spec in config.specs}
    seen: set[str] = set()
    labels = []
    while len(labels) < count:
        customer = f"c{rng.randrange(max(1, count // 3))}"
        model = rng.choice(sorted(tasks))
        made = start + rng.randrange(round(days * DAY * 1000)) / 1000
        label_id = make_label_id(customer, model, made)
        if label_id in seen:
            continue
        seen.add(label_id)
        row = [rng.gauss(0.0, 10.0 ** (j % 4)) for j in range(len(config.input_names))]
        signal = row[0]
        if tasks[model] == "classification":
            y_true = float(rng.random() < 1.0 / (1.0 + math.exp(-signal)))
            y_pred = rng.random()
        else:
            y_true = max(0.0, 50.0 + 20.0 * signal + rng.gauss(0.0, 5.0))
            y_pred = rng.uniform(0.0, 200.0)
        due = made + horizons[model]
        resolved = due if rng.random() < 0.5 else rng.uniform(made, due)
        labels.append(
            LabelMessage(
                schema=1,
                label_id=label_id,
                customer_id=customer,
                model=model,
                x=array("f", row).tobytes(),
                y_true=y_true,
                y_pred=y_pred,
                holdout=is_holdout(customer, holdout_fraction),
                made_ts=made,
                due_ts=due,
                resolved_ts=resolved,
                partition=zlib.crc32(customer.encode()) % partitions,
            )
        )
    return labels


def repartitioned(labels: Sequence[LabelMessage], partitions: int) -> list[LabelMessage]:
    """The same labels as if the events topic had ``partitions`` partitions."""
    return [
        msgspec.structs.replace(m, partition=zlib.crc32(m.customer_id.encode()) % partitions) for m in labels
    ]


def shuffled_with_copies(
    labels: Sequence[LabelMessage], seed: int, copies: float = 0.3
) -> list[LabelMessage]:
    """``labels`` in a random order with about ``copies`` of them delivered twice or three times."""
    rng = random.Random(seed)
    out = list(labels)
    out += [rng.choice(labels) for _ in range(round(copies * len(labels)))]
    rng.shuffle(out)
    return out
