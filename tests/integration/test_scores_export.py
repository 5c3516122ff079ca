"""``segflow scores export`` against a real Redis: a replayed stream, exported as of T, read back
with pandas as a BI tool would. Expected features are recounted here from the raw events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pandas as pd
import pytest
from helpers import with_redis
from redis.asyncio import Redis

from engine.evaluate import replay_stream
from engine.exports.scores import ExportCounts, ExportPlan, export_rows
from engine.exports.writers import write_csv, write_parquet
from engine.settings import Settings
from engine.stream.batch_records import RawRecord

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def stream() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for c in range(40):
        for k in range(1 + c % 4):  # customer c buys 1 + c % 4 times, every 3 days from day c % 5
            day = c % 5 + 3 * k
            events.append(
                {
                    "event_id": f"e{c}-{k}",
                    "customer_id": f"c{c:02d}",
                    "type": "purchase",
                    "ts": T0 + day * DAY_MS + c * 1000,
                    "attrs": {"amount": 10.0 + c, "currency": "EUR", "product": "savings"},
                }
            )
    # One customer is still active after T: not exported.
    events.append({"event_id": "late", "customer_id": "c99", "type": "login", "ts": T0 + 30 * DAY_MS})
    return sorted(events, key=lambda e: e["ts"])


def as_records(settings: Settings, events: list[dict[str, Any]]) -> list[RawRecord]:
    partitions = settings.events_partitions
    offsets = dict.fromkeys(range(partitions), 0)
    out = []
    for event in events:
        partition = sum(event["customer_id"].encode()) % partitions
        out.append(
            RawRecord(
                settings.events_topic,
                partition,
                offsets[partition],
                event["customer_id"].encode(),
                msgpack.packb(event),
            )
        )
        offsets[partition] += 1
    return out


async def export(settings: Settings, as_of: float, path: Path, fmt: str, segment: Any = None) -> ExportCounts:
    counts = ExportCounts()
    header: list[str] = []

    def on_plan(plan: ExportPlan) -> None:
        header.extend(plan.columns)

    rows = [row async for row in export_rows(settings, as_of, segment, on_plan, counts)]

    async def again() -> Any:
        for row in rows:
            yield row

    await (write_csv if fmt == "csv" else write_parquet)(path, header, again())
    return counts


def test_export_as_of_t_round_trips_into_pandas(isolated_settings: Settings, tmp_path: Path) -> None:
    settings = isolated_settings
    events = stream()
    as_of = (T0 + 25 * DAY_MS) / 1000

    async def body(client: Redis) -> None:
        await replay_stream(settings, as_records(settings, events))
        counts = await export(settings, as_of, tmp_path / "all.csv", "csv")
        assert counts.after_as_of == 1 and counts.written == 40
        await export(settings, as_of, tmp_path / "all.parquet", "parquet")
        frame = pd.read_csv(tmp_path / "all.csv")
        lifecycle = frame["segment_lifecycle"].dropna()
        assert len(lifecycle) > 0
        chosen = str(lifecycle.iloc[0])
        some = await export(settings, as_of, tmp_path / "one.csv", "csv", ("lifecycle", chosen))
        assert some.written == int((frame["segment_lifecycle"] == chosen).sum())
        assert some.other_segment == 40 - some.written
        assert set(pd.read_csv(tmp_path / "one.csv")["customer_id"]) == set(
            frame.loc[frame["segment_lifecycle"] == chosen, "customer_id"]
        )

    with_redis(settings, body)
    frame = pd.read_csv(tmp_path / "all.csv")
    assert sorted(frame["customer_id"]) == [f"c{c:02d}" for c in range(40)]
    assert pd.api.types.is_string_dtype(frame["customer_id"])
    assert str(frame["frequency"].dtype) == "int64"
    assert str(frame["recency_days"].dtype) == "float64" and str(frame["monetary"].dtype) == "float64"
    assert any(column.startswith("score_") for column in frame.columns)
    for c in range(40):
        row = frame[frame["customer_id"] == f"c{c:02d}"].iloc[0]
        buys = [e for e in events if e["customer_id"] == f"c{c:02d}"]
        assert row["frequency"] == len(buys)
        assert row["monetary"] == pytest.approx(len(buys) * (10.0 + c))
        assert row["recency_days"] == pytest.approx((as_of * 1000 - buys[-1]["ts"]) / DAY_MS)
    typed = pd.read_parquet(tmp_path / "all.parquet")
    assert list(typed.columns) == list(frame.columns)
    assert (
        str(typed["frequency"].dtype) == "float64"
        and typed["monetary"].tolist() == frame["monetary"].tolist()
    )


def test_export_refuses_an_unknown_family(isolated_settings: Settings, tmp_path: Path) -> None:
    async def body(client: Redis) -> None:
        await replay_stream(isolated_settings, as_records(isolated_settings, stream()[:5]))
        with pytest.raises(ValueError, match="unknown family 'nope'"):
            await export(
                isolated_settings, (T0 + 25 * DAY_MS) / 1000, tmp_path / "x.csv", "csv", ("nope", "a")
            )

    with_redis(isolated_settings, body)


def test_scores_export_cli_edges(isolated_settings: Settings) -> None:
    from click.testing import CliRunner

    from engine.cli.main import cli

    result = CliRunner().invoke(cli, ["scores", "export", "--segment", "rfm"], obj=isolated_settings)
    assert result.exit_code != 0 and "is not FAMILY=SEGMENT" in result.output
