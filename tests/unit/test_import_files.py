"""``segflow import``'s file reading (``engine.ingest_files``) and its CLI edge; no servers.

Column mapping, date parsing, bad rows reported with their lines, missing columns named, stable
event ids, Parquet, and the one-line errors of the command (pointed at a broker address nobody
listens on: nothing here may need Kafka).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
import pytest

from engine.cli.main import main
from engine.ingest_files.dates import DateError, DateReader, epoch_ms
from engine.ingest_files.events_file import prepare_events
from engine.ingest_files.transactions import (
    Columns,
    TransactionOptions,
    prepare_transactions,
    purchase_event_id,
    resolve_columns,
)
from engine.schemas import validate_event

REPO = Path(__file__).resolve().parents[2]
OFFLINE = "127.0.0.1:9"  # a broker address nobody listens on: nothing here may need Kafka
CLASSIC = "CustomerID,PurchaseDate,OrderTotal\n"


def ms(*parts: int) -> int:
    return round(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def write(tmp_path: Path, text: str, name: str = "tx.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def decoded(path: Path, **options: Any) -> list[dict[str, Any]]:
    prepared = prepare_transactions(path, TransactionOptions(currency="EUR", **options))
    assert prepared.problems.count == 0, prepared.problems.lines()
    return [msgpack.unpackb(value) for _, value in prepared.payloads(keep_order=True)]


# --- column mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["CustomerID", "PurchaseDate", "OrderTotal"], ("CustomerID", "PurchaseDate", "OrderTotal")),
        (["customerid", "purchasedate", "ordertotal"], ("customerid", "purchasedate", "ordertotal")),
        (["customer_id", "date", "amount"], ("customer_id", "date", "amount")),
        (["Customer ID", "InvoiceDate", "Total", "Country"], ("Customer ID", "InvoiceDate", "Total")),
        (["CUSTOMER-ID", "Order Date", "Revenue"], ("CUSTOMER-ID", "Order Date", "Revenue")),
    ],
)
def test_default_columns_are_recognised_whatever_their_case(header: list[str], expected: tuple) -> None:
    columns = resolve_columns(Path("f.csv"), header, {})
    assert (columns.customer, columns.date, columns.amount) == expected
    assert columns.product is None and columns.currency is None


def test_named_columns_win_and_match_case_insensitively() -> None:
    header = ["date", "client", "buyer", "paid", "SKU", "Currency"]
    columns = resolve_columns(Path("f.csv"), header, {"customer": "BUYER", "amount": "paid"})
    assert columns == Columns(
        customer="buyer", date="date", amount="paid", product="SKU", currency="Currency"
    )


def test_a_missing_column_is_named_in_one_line() -> None:
    with pytest.raises(ValueError) as info:
        resolve_columns(Path("f.csv"), ["CustomerID", "When", "OrderTotal"], {})
    assert str(info.value) == (
        "f.csv: no date column (looked for PurchaseDate, date, order_date, InvoiceDate, ...); "
        "its columns: CustomerID, When, OrderTotal; name it with --date COLUMN"
    )
    with pytest.raises(ValueError, match=r"^f\.csv: no column 'Paid' \(--amount\); its columns: a, b$"):
        resolve_columns(Path("f.csv"), ["a", "b"], {"amount": "Paid"})


# --- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("01/12/1997", "%d/%m/%Y", ms(1997, 12, 1)),  # 1 December: day first
        ("31/01/1990", "%d/%m/%Y", ms(1990, 1, 31)),
        ("12/01/1997 14:30", "%m/%d/%Y %H:%M", ms(1997, 12, 1, 14, 30)),
        ("1997-12-01", None, ms(1997, 12, 1)),
        ("1997-12-01 10:30:00", None, ms(1997, 12, 1, 10, 30)),
        ("1997-12-01T10:30:00Z", None, ms(1997, 12, 1, 10, 30)),
        ("1997-12-01T12:30:00+02:00", None, ms(1997, 12, 1, 10, 30)),
        ("19971201", None, ms(1997, 12, 1)),  # ISO basic date, not epoch seconds
        ("880934400", None, ms(1997, 12, 1)),  # epoch seconds, by magnitude
        ("880934400000", None, ms(1997, 12, 1)),  # epoch milliseconds
        ("880934400.5", None, ms(1997, 12, 1) + 500),
        (880_934_400, None, ms(1997, 12, 1)),  # Parquet numbers too
        (880_934_400_000, None, ms(1997, 12, 1)),
        (datetime(1997, 12, 1, 10, 30), None, ms(1997, 12, 1, 10, 30)),  # naive: UTC
        (datetime(1997, 12, 1).date(), None, ms(1997, 12, 1)),
        ("1970-01-01", None, 0),
    ],
)
def test_dates(value: Any, fmt: str | None, expected: int) -> None:
    assert DateReader(fmt)(value) == expected


def test_dates_without_a_zone_are_in_the_given_zone() -> None:
    reader = DateReader(None, ZoneInfo("Europe/London"))
    assert reader("1997-07-01 10:00") == ms(1997, 7, 1, 9, 0)  # BST
    assert reader("1997-12-01 10:00") == ms(1997, 12, 1, 10, 0)  # GMT
    assert reader("1997-12-01T10:00:00+01:00") == ms(1997, 12, 1, 9, 0)  # its own zone wins


@pytest.mark.parametrize(
    ("value", "fmt", "problem"),
    [
        ("abc", None, "is not a date"),
        ("01/12/1997", None, "is not a date"),
        ("abc", "%d/%m/%Y", "is not a date in the format %d/%m/%Y"),
        ("31/02/1998", "%d/%m/%Y", "is not a date in the format %d/%m/%Y"),
        ("", None, "is empty"),
        (None, None, "is empty"),
        ("1969-12-31", None, "is outside 1970-01-01..2100-01-01"),
        ("2100-01-02", None, "is outside 1970-01-01..2100-01-01"),
        ("-5", None, "is before 1970-01-01 (a negative epoch number)"),
        ("99999999999999", None, "is after 2100-01-01 as epoch seconds or milliseconds"),
        (float("nan"), None, "is not a date"),
        (True, None, "is not a date"),
    ],
)
def test_what_is_not_a_date(value: Any, fmt: str | None, problem: str) -> None:
    with pytest.raises(DateError) as info:
        DateReader(fmt)(value)
    assert str(info.value) == problem


def test_epoch_numbers_are_seconds_below_2100_in_seconds_else_milliseconds() -> None:
    assert epoch_ms(4_102_444_799) == 4_102_444_799_000  # 2099-12-31T23:59:59Z in seconds
    assert epoch_ms(4_102_444_800) == 4_102_444_800  # milliseconds from here on (1970-02-17)
    assert epoch_ms(0) == 0


# --- rows into events --------------------------------------------------------------------------


def test_a_classic_file_becomes_purchase_events(tmp_path: Path) -> None:
    path = write(tmp_path, CLASSIC + "C01,01/12/1997,20.50\nC02,15/01/1998,75\n")
    events = decoded(path, date_format="%d/%m/%Y")
    assert [{k: v for k, v in e.items() if k != "event_id"} for e in events] == [
        {
            "v": 1,
            "customer_id": "C01",
            "type": "purchase",
            "ts": ms(1997, 12, 1),
            "attrs": {"amount": 20.5, "currency": "EUR", "product": "unspecified"},
        },
        {
            "v": 1,
            "customer_id": "C02",
            "type": "purchase",
            "ts": ms(1998, 1, 15),
            "attrs": {"amount": 75, "currency": "EUR", "product": "unspecified"},
        },
    ]
    for event in events:
        validate_event(event, currency="EUR")
        assert event["event_id"].startswith("tx-") and len(event["event_id"]) == 35


def test_bad_rows_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    text = (
        CLASSIC
        + "C01,01/12/1997,20\n"  # line 2
        + "\n"  # line 3: blank, skipped
        + 'C02,"15/01/1998",10\n'  # line 4
        + "C03,abc,10\n"  # line 5
        + ",02/02/1998,10\n"  # line 6
        + "C04,abc,-5\n"  # line 7: the first problem of a row is reported
        + "C05,03/03/1998,-5\n"  # line 8
        + "C06,03/03/1998,12;50\n"  # line 9
        + '"C07\nwith a newline",03/03/1998,1\n'  # lines 10-11: a quoted id over two lines
        + "C08,03/03/1998,1,extra\n"  # line 12
        + "C09,03/03/1998\n"  # line 13: a missing cell is empty
    )
    options = TransactionOptions(currency="EUR", date_format="%d/%m/%Y", max_problems=5)
    prepared = prepare_transactions(write(tmp_path, text), options)
    assert (prepared.rows, prepared.problems.count, len(prepared.events)) == (10, 7, 3)
    assert prepared.problems.lines() == [
        "line 5: PurchaseDate 'abc' is not a date in the format %d/%m/%Y",
        "line 6: CustomerID is empty",
        "line 7: PurchaseDate 'abc' is not a date in the format %d/%m/%Y",
        "line 8: OrderTotal '-5' is negative (a refund is not a purchase)",
        "line 9: OrderTotal '12;50' is not a number",
        "... and 2 more",
    ]
    every = prepare_transactions(
        write(tmp_path, text), TransactionOptions(currency="EUR", date_format="%d/%m/%Y")
    )
    assert every.problems.lines()[5:] == [
        "line 12: 4 cells, the header has 3",
        "line 13: OrderTotal is empty",
    ]
    assert [msgpack.unpackb(v)["customer_id"] for _, v in every.payloads()] == [
        "C01",
        "C02",
        "C07\nwith a newline",
    ]


def test_a_date_problem_without_a_format_says_how_to_give_one(tmp_path: Path) -> None:
    prepared = prepare_transactions(
        write(tmp_path, CLASSIC + "C01,01/12/1997,1\n"), TransactionOptions("EUR")
    )
    first, hint = prepared.problems.lines()
    assert first == "line 2: PurchaseDate '01/12/1997' is not a date"
    assert "--date-format" in hint and "%d/%m/%Y" in hint


def test_a_currency_column_must_hold_the_configured_currency(tmp_path: Path) -> None:
    header = "customer,date,amount,currency,product\n"
    text = header + "a,1997-12-01,5,EUR,book\nb,1997-12-01,5,,\nc,1997-12-01,5,USD,x\n"
    prepared = prepare_transactions(write(tmp_path, text), TransactionOptions("EUR"))
    assert prepared.problems.lines() == [
        "line 4: currency 'USD' is not the configured currency EUR (SEGFLOW_CURRENCY)"
    ]
    attrs = [msgpack.unpackb(v)["attrs"] for _, v in prepared.payloads()]
    assert attrs == [
        {"amount": 5, "currency": "EUR", "product": "book"},
        {"amount": 5, "currency": "EUR", "product": "unspecified"},
    ]


def test_event_ids_are_stable_and_identical_rows_are_two_purchases(tmp_path: Path) -> None:
    rows = ["C01,1997-12-01,20.5", "C01,1997-12-01,20.5", "C02,1997-12-02,7"]
    first = decoded(write(tmp_path, "customer_id,date,amount\n" + "\n".join(rows) + "\n", "a.csv"))
    again = decoded(write(tmp_path, "customer_id,date,amount\n" + "\n".join(rows[::-1]) + "\n", "b.csv"))
    ids = [e["event_id"] for e in first]
    assert len(set(ids)) == 3
    assert sorted(ids) == sorted(e["event_id"] for e in again)  # another file, other order: same ids
    assert ids[0] == purchase_event_id("C01", ms(1997, 12, 1), 2050, "EUR", "unspecified", 0)
    # The same purchase written otherwise is the same event.
    other = decoded(
        write(tmp_path, "CustomerID,PurchaseDate,OrderTotal\nC01,01/12/1997,20.50\n", "c.csv"),
        date_format="%d/%m/%Y",
    )
    assert other[0]["event_id"] == ids[0]


def test_events_are_produced_in_event_time_order_unless_kept_in_file_order(tmp_path: Path) -> None:
    text = CLASSIC + "b,1998-01-02,1\na,1997-01-01,1\nc,1998-01-02,1\n"
    prepared = prepare_transactions(write(tmp_path, text), TransactionOptions("EUR"))
    assert [key for key, _ in prepared.payloads()] == [b"a", b"b", b"c"]
    assert [key for key, _ in prepared.payloads(keep_order=True)] == [b"b", b"a", b"c"]
    assert (
        prepared.summary()
        == f"{tmp_path / 'tx.csv'}: 3 rows, 3 purchases of 3 customers, 1997-01-01..1998-01-02"
    )


def test_a_semicolon_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffCustomerID;PurchaseDate;OrderTotal\r\nC01;1997-12-01;3\r\n".encode())
    assert [e["customer_id"] for e in decoded(path)] == ["C01"]


def test_parquet_columns_keep_their_types(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "Customer ID": pa.array([17850.0, 12346.0, None]),  # float ids, as pandas writes them
            "InvoiceDate": pa.array([datetime(1997, 12, 1, 8), datetime(1998, 1, 2), datetime(1998, 1, 3)]),
            "Total": pa.array([15.3, 2.0, 1.0]),
        }
    )
    path = tmp_path / "tx.parquet"
    pq.write_table(table, path)
    prepared = prepare_transactions(path, TransactionOptions("EUR"))
    assert prepared.problems.lines() == ["row 3: Customer ID is empty"]
    events = [msgpack.unpackb(v) for _, v in prepared.payloads()]
    assert [(e["customer_id"], e["ts"], e["attrs"]["amount"]) for e in events] == [
        ("17850", ms(1997, 12, 1, 8), 15.3),
        ("12346", ms(1998, 1, 2), 2.0),
    ]


def test_parquet_without_pyarrow_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails as if not installed
    with pytest.raises(ValueError, match=r"^reading Parquet needs pyarrow: pip install 'segflow\[export\]'$"):
        prepare_transactions(tmp_path / "tx.parquet", TransactionOptions("EUR"))


# --- files of events ---------------------------------------------------------------------------


def test_an_events_file_is_checked_whole_with_line_numbers(tmp_path: Path) -> None:
    good = {"event_id": "e1", "customer_id": "c", "type": "login", "ts": "1997-12-01T00:00:00Z"}
    lines = [
        json.dumps(good),
        "{not json",
        "",
        json.dumps({**good, "ts": 880_934_400}),  # seconds for milliseconds
        json.dumps({**good, "type": "purchase", "attrs": {"amount": 1, "currency": "USD", "product": "p"}}),
    ]
    prepared = prepare_events(write(tmp_path, "\n".join(lines) + "\n", "e.jsonl"), "EUR")
    assert prepared.problems.lines() == [
        "line 2: not JSON (Expecting property name enclosed in double quotes)",
        "line 4: ts 880934400 looks like epoch seconds, not milliseconds "
        "(read as milliseconds it is in early 1970)",
        "line 5: purchase currency 'USD' is not the configured 'EUR'",
    ]
    ((key, value),) = prepared.payloads()
    assert key == b"c" and msgpack.unpackb(value) == good


def test_a_csv_of_events_without_the_schema_columns_names_them(tmp_path: Path) -> None:
    path = write(tmp_path, CLASSIC + "C01,1997-12-01,1\n")
    with pytest.raises(ValueError) as info:
        prepare_events(path, "EUR")
    assert str(info.value).startswith(
        f"{path}: not a CSV of events: missing columns event_id, customer_id, type, ts (a CSV of events has"
    )


# --- the command -------------------------------------------------------------------------------


def segflow(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``segflow ARGS`` through the CLI's entry point (its error edge): exit code, stdout, stderr."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["segflow", *args])
        patch.setenv("SEGFLOW_KAFKA_BOOTSTRAP", OFFLINE)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_the_command_lists_bad_rows_and_produces_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, CLASSIC + "C01,01/12/1997,20\nC02,abc,5\nC03,02/12/1997,x\n")
    code, out, err = segflow(capsys, "import", "transactions", str(path), "--date-format", "%d/%m/%Y")
    assert (code, out) == (1, "")
    assert err == (
        f"segflow: error: {path}: 2 of 3 rows cannot become purchases; nothing produced "
        "(--skip-bad produces the other 1):\n"
        "line 3: PurchaseDate 'abc' is not a date in the format %d/%m/%Y\n"
        "line 4: OrderTotal 'x' is not a number\n"
    )
    args = ("import", "transactions", str(path), "--date-format", "%d/%m/%Y", "--skip-bad", "--dry-run")
    code, out, err = segflow(capsys, *args, "--no-progress")
    assert code == 0, err
    assert out == (
        f"{path}: 3 rows, 1 purchases of 1 customers, 1997-12-01..1997-12-01; 2 bad rows skipped\n"
        "dry run: nothing produced\n"
    )
    assert err.startswith(f"segflow: skipping 2 bad rows of {path}:\nline 3: ")


def test_the_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "who,when,what\n1,2,3\n")
    code, _, err = segflow(capsys, "import", "transactions", str(path))
    assert (
        code == 1 and err.startswith(f"segflow: error: {path}: no customer column") and err.count("\n") == 1
    )
    good = write(tmp_path, CLASSIC + "C01,1997-12-01,1\n", "good.csv")
    _, _, err = segflow(capsys, "import", "transactions", str(good), "--timezone", "Mars/Olympus")
    assert (
        err
        == "segflow: error: --timezone 'Mars/Olympus' is not a known time zone (e.g. UTC, Europe/London)\n"
    )
    code, _, err = segflow(capsys, "import", "events", str(good), "--no-progress")
    assert code == 1 and err.startswith(f"segflow: error: {good}: not a CSV of events: missing columns")
    code, _, err = segflow(capsys, "import", "transactions", str(good), "--no-progress")  # nobody on port 9
    assert code == 1 and err.startswith("segflow: error: ") and err.count("\n") == 1, err


def test_produce_of_a_csv_without_the_schema_columns_names_them(tmp_path: Path) -> None:
    """In a child process, as people run it: one line, no traceback, no broker contacted."""
    path = write(tmp_path, CLASSIC + "C01,1997-12-01,1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}
    env |= {"SEGFLOW_KAFKA_BOOTSTRAP": OFFLINE, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "engine", "produce", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == (
        f"segflow: error: {path}: not a CSV of events: missing columns event_id, customer_id, type, ts "
        "(a CSV of events has event_id, customer_id, type, ts and attrs.<name>; other purchase files: "
        "segflow import transactions)\n"
    )
