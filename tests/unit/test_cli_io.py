"""Event files into payloads (CSV and JSONL), segment changes into lines, and ``read_to_end``'s
giving up (on a stand-in consumer); no Kafka involved."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from engine.cli import io
from engine.cli.io import TopicReadError, format_change, iter_csv, iter_payloads, read_to_end
from engine.schemas import validate_event
from engine.settings import load_settings

CSV_TEXT = (
    "event_id,customer_id,type,ts,attrs.amount,attrs.currency,attrs.product,attrs.page\n"
    "e1,c-1,purchase,1700000000000,19.99,EUR,basic,\n"
    "e2,c-2,page_view,2023-11-14T22:13:20Z,,,,/pricing\n"
    "e3,c-1,purchase,1700000001000,5,EUR,pro,\n"
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


# --- iter_csv --------------------------------------------------------------------------------


def test_iter_csv_builds_envelopes(tmp_path: Path) -> None:
    events = list(iter_csv(write(tmp_path, "events.csv", CSV_TEXT)))
    assert events == [
        {
            "event_id": "e1",
            "customer_id": "c-1",
            "type": "purchase",
            "ts": 1_700_000_000_000,
            "attrs": {"amount": 19.99, "currency": "EUR", "product": "basic"},
        },
        {
            "event_id": "e2",
            "customer_id": "c-2",
            "type": "page_view",
            "ts": "2023-11-14T22:13:20Z",
            "attrs": {"page": "/pricing"},
        },
        {
            "event_id": "e3",
            "customer_id": "c-1",
            "type": "purchase",
            "ts": 1_700_000_001_000,
            "attrs": {"amount": 5, "currency": "EUR", "product": "pro"},
        },
    ]


def test_iter_csv_coerces_numbers_and_keeps_types(tmp_path: Path) -> None:
    events = list(iter_csv(write(tmp_path, "events.csv", CSV_TEXT)))
    assert type(events[0]["attrs"]["amount"]) is float
    assert type(events[2]["attrs"]["amount"]) is int
    assert type(events[0]["ts"]) is int
    assert type(events[0]["event_id"]) is str


def test_iter_csv_envelopes_validate(tmp_path: Path) -> None:
    events = [validate_event(e, currency="EUR") for e in iter_csv(write(tmp_path, "events.csv", CSV_TEXT))]
    assert [e.ts for e in events] == [1_700_000_000.0, 1_700_000_000.0, 1_700_000_001.0]
    assert [e.attrs.get("amount") for e in events] == [19.99, None, 5]


def test_iter_csv_empty_cells_are_left_out(tmp_path: Path) -> None:
    text = "event_id,customer_id,type,ts,attrs.channel\ne1,c-1,login,,\n"
    assert list(iter_csv(write(tmp_path, "e.csv", text))) == [
        {"event_id": "e1", "customer_id": "c-1", "type": "login", "attrs": {}}
    ]


def test_iter_csv_quoted_values(tmp_path: Path) -> None:
    text = 'event_id,customer_id,type,ts,attrs.reason\ne1,c-1,call_center,1700000000000,"billing, late fee"\n'
    (event,) = iter_csv(write(tmp_path, "e.csv", text))
    assert event["attrs"] == {"reason": "billing, late fee"}


def test_iter_csv_keeps_numeric_looking_string_attributes(tmp_path: Path) -> None:
    text = (
        "event_id,customer_id,type,ts,attrs.ticket_id,attrs.status,attrs.severity\n"
        "e1,c-1,support_ticket,1700000000000,4711,opened,high\n"
    )
    (event,) = iter_csv(write(tmp_path, "e.csv", text))
    assert event["attrs"]["ticket_id"] == "4711"


# --- iter_payloads ---------------------------------------------------------------------------

EVENT_1 = {"event_id": "e1", "customer_id": "c-1", "type": "login", "ts": 1_700_000_000_000}
EVENT_2 = {"event_id": "e2", "customer_id": "c-2", "type": "login", "ts": 1_700_000_000_001, "attrs": {}}


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_jsonl_to_msgpack_with_customer_key(tmp_path: Path) -> None:
    path = write(tmp_path, "events.jsonl", jsonl(json.dumps(EVENT_1), json.dumps(EVENT_2)))
    pairs = list(iter_payloads(path, "auto", "msgpack", False))
    assert [key for key, _ in pairs] == [b"c-1", b"c-2"]
    assert [msgpack.unpackb(value, raw=False) for _, value in pairs] == [EVENT_1, EVENT_2]


def test_jsonl_to_json_wire(tmp_path: Path) -> None:
    path = write(tmp_path, "events.jsonl", jsonl(json.dumps(EVENT_1)))
    ((key, value),) = iter_payloads(path, "jsonl", "json", False)
    assert key == b"c-1"
    assert json.loads(value) == EVENT_1


def test_jsonl_blank_lines_skipped_and_missing_customer_has_no_key(tmp_path: Path) -> None:
    no_customer = {"event_id": "e3", "type": "login"}
    bad_customer = {"event_id": "e4", "customer_id": 42}
    content = jsonl(
        json.dumps(EVENT_1), "", "   ", json.dumps(no_customer), json.dumps(bad_customer), "[1, 2]"
    )
    pairs = list(iter_payloads(write(tmp_path, "e.jsonl", content), "auto", "msgpack", False))
    assert [key for key, _ in pairs] == [b"c-1", None, None, None]
    assert msgpack.unpackb(pairs[3][1]) == [1, 2]


def test_jsonl_non_ascii_customer_key_is_utf8(tmp_path: Path) -> None:
    event = {**EVENT_1, "customer_id": "Zoë"}
    path = write(tmp_path, "e.jsonl", jsonl(json.dumps(event)))
    ((key, _),) = iter_payloads(path, "auto", "msgpack", False)
    assert key == "Zoë".encode()


def test_jsonl_non_json_line_names_path_and_line(tmp_path: Path) -> None:
    # line 1 JSON, line 2 blank (still counted), line 3 not JSON
    path = write(tmp_path, "events.jsonl", jsonl(json.dumps(EVENT_1), "", "this is not json"))
    payloads = iter_payloads(path, "auto", "msgpack", False)
    assert next(payloads)[0] == b"c-1"
    with pytest.raises(ValueError) as info:
        next(payloads)
    message = str(info.value)
    assert message.startswith(f"{path}:3: not JSON (")
    assert "--keep-invalid" in message


def test_jsonl_keep_invalid_sends_bad_lines_unchanged(tmp_path: Path) -> None:
    good = '{"customer_id": "c-1",   "type": "login"}'
    content = (good + "\r\n" + "not json\r\n" + "{broken\n" + '{"v": 2, "customer_id": "c-9"}').encode()
    pairs = list(iter_payloads(write(tmp_path, "e.jsonl", content), "auto", "msgpack", True))
    # JSON lines are still re-encoded as the wire format; only the invalid ones go as they are
    assert pairs == [
        (b"c-1", msgpack.packb({"customer_id": "c-1", "type": "login"})),
        (None, b"not json"),
        (None, b"{broken"),
        (b"c-9", msgpack.packb({"v": 2, "customer_id": "c-9"})),
    ]


def test_csv_format_detected_by_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "events.CSV", CSV_TEXT)
    pairs = list(iter_payloads(path, "auto", "msgpack", False))
    assert [key for key, _ in pairs] == [b"c-1", b"c-2", b"c-1"]
    first = msgpack.unpackb(pairs[0][1], raw=False)
    assert first["attrs"] == {"amount": 19.99, "currency": "EUR", "product": "basic"}
    assert first["ts"] == 1_700_000_000_000


def test_explicit_csv_format_overrides_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "events.txt", CSV_TEXT)
    assert len(list(iter_payloads(path, "csv", "json", False))) == 3


def test_jsonl_keep_invalid_sends_non_utf8_line(tmp_path: Path) -> None:
    path = write(tmp_path, "e.jsonl", b"\x80\xffgarbage\n")
    assert list(iter_payloads(path, "auto", "msgpack", True)) == [(None, b"\x80\xffgarbage")]


# --- format_change ---------------------------------------------------------------------------

CHANGE = {
    "v": 1,
    "change_id": "0123456789abcdef0123456789abcdef",
    "customer_id": "c-1",
    "family": "lifecycle",
    "from": None,
    "to": "new",
    "event_ts": 1_700_000_000_000,  # 2023-11-14 22:13:20 UTC
    "emitted_ts": 1_700_000_000_500,
    "rules_version": "lifecycle-v1",
    "reason": {
        "rule": "lifecycle.new",
        "conditions": [],
        "text": "lifecycle=new because tenure_days=0 < 30 and orders=1 < 2",
    },
}


def test_format_change_line() -> None:
    assert format_change(CHANGE) == (
        "2023-11-14 22:13:20  c-1  lifecycle: (none) -> new  because tenure_days=0 < 30 and orders=1 < 2"
    )


def test_format_change_move_between_segments() -> None:
    change = {
        **CHANGE,
        "from": "active",
        "to": "lapsed",
        "event_ts": 946_684_800_000,  # 2000-01-01 00:00:00 UTC
        "reason": {"text": "lifecycle=lapsed because recency_days=31 > 30 and tenure_days=40 >= 30"},
    }
    assert format_change(change) == (
        "2000-01-01 00:00:00  c-1  lifecycle: active -> lapsed  "
        "because recency_days=31 > 30 and tenure_days=40 >= 30"
    )


def test_format_change_tolerates_missing_fields() -> None:
    change = {
        "customer_id": "c-1",
        "family": "lifecycle",
        "from": "new",
        "to": None,
        "reason": {"text": "odd"},
    }
    assert format_change(change) == "?  c-1  lifecycle: new -> (none)  because odd"


# --- read_to_end giving up --------------------------------------------------------------------


class StandIn:
    """A consumer of partitions 0 (end offset 3) and 1 (end offset 2) whose only fetch returns
    partition 0's records 0 to 4: partition 1's never arrive."""

    def __init__(self, **_config: Any) -> None:
        self.positions: dict[TopicPartition, int] = {}
        self.fetches = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 3 - tp.partition for tp in partitions}

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None: ...

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def pause(self, *partitions: TopicPartition) -> None: ...

    async def getmany(self, **_options: Any) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.fetches += 1
        if self.fetches > 1:
            return {}
        tp = TopicPartition("t", 0)
        self.positions[tp] = 5
        return {tp: [ConsumerRecord("t", 0, n, 0, 0, None, b"%d" % n, None, 0, 1, []) for n in range(5)]}


def test_read_to_end_gives_up_naming_the_partitions_short_of_their_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def partitions(_settings: object, _topic: str) -> list[int]:
        return [0, 1]

    monkeypatch.setattr(io, "topic_partitions", partitions)
    monkeypatch.setattr(io, "AIOKafkaConsumer", StandIn)
    values: list[bytes | None] = []
    settings = load_settings(kafka_bootstrap="stand-in:9092")
    with pytest.raises(TopicReadError) as raised:
        asyncio.run(read_to_end(settings, "t", on_record=lambda r: values.append(r.value), idle_fetches=3))
    assert str(raised.value) == "t: no records arrive in 6s for partition 1 before offset 2"
    assert values == [b"0", b"1", b"2"]  # nothing past partition 0's end offset
