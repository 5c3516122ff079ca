"""A file of purchases (CSV or Parquet) as schema-v1 ``purchase`` events, one per row.

The classic shape is ``CustomerID,PurchaseDate,OrderTotal``. Columns are found by role, their
names compared case-insensitively and without spaces, ``_`` or ``-`` (``Customer ID``,
``customer_id`` and ``CUSTOMERID`` are one name): the name given for the role
(``--customer``, ``--date``, ``--amount``, ``--product``, ``--currency``), else the first of
``DEFAULT_COLUMNS[role]`` the header has. Customer, date and amount are required; without a
product column every purchase's product is ``unspecified``, without a currency column (or in an
empty cell) the currency is the configured one (``SEGFLOW_CURRENCY``).

Each row becomes ``{v: 1, event_id, customer_id, type: purchase, ts (epoch ms), attrs: {amount,
currency, product}}``, checked with ``engine.schemas.validate_event`` as the worker would. The
``event_id`` is a hash of what the event says (customer, time, amount in minor units, currency,
product) and of how many identical purchases came before it in the file, so importing the same
rows again gives the same ids, and two identical rows are two purchases.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.codecs import encode_msgpack
from engine.ingest_files.dates import NO_FORMAT_HINT, DateError, DateReader
from engine.ingest_files.tables import Prepared, Problems, columns_of, read_rows
from engine.schemas import MAX_ID_LENGTH, InvalidEvent, validate_event
from features.state import to_minor_units

ROLES = ("customer", "date", "amount", "product", "currency")
REQUIRED_ROLES = ("customer", "date", "amount")
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer": ("CustomerID", "customer", "cust_id", "customer_no", "client_id", "client", "user_id"),
    "date": (
        "PurchaseDate", "date", "order_date", "InvoiceDate", "transaction_date", "purchase_time",
        "timestamp", "datetime", "ts", "time", "purchased_at", "created_at",
    ),
    "amount": (
        "OrderTotal", "amount", "total", "total_amount", "order_value", "revenue", "sales", "spend", "value",
    ),
    "product": ("product", "product_id", "product_name", "sku", "StockCode", "item", "category"),
    "currency": ("currency", "currency_code"),
}  # fmt: skip
DEFAULT_PRODUCT = "unspecified"


def column_key(name: str) -> str:
    """How column names are compared: lowercase letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass(frozen=True, slots=True)
class Columns:
    """The file's column for each role (None: the role has no column)."""

    customer: str
    date: str
    amount: str
    product: str | None = None
    currency: str | None = None


def resolve_columns(path: Path, header: list[str], chosen: Mapping[str, str | None]) -> Columns:
    """Each role's column in ``header``: the one named in ``chosen``, else the first default.

    Raises a one-line ``ValueError`` for a named column the header lacks, or a required role
    with no column.
    """
    by_key: dict[str, str] = {}
    for column in header:
        by_key.setdefault(column_key(column), column)
    listing = ", ".join(header) if header else "none"
    found: dict[str, str | None] = {}
    for role in ROLES:
        name = chosen.get(role)
        if name and column_key(name) not in by_key:
            raise ValueError(f"{path}: no column {name!r} (--{role}); its columns: {listing}")
    for role in ROLES:
        name = chosen.get(role)
        if name:
            found[role] = by_key[column_key(name)]
            continue
        found[role] = next((by_key[k] for k in map(column_key, DEFAULT_COLUMNS[role]) if k in by_key), None)
        if found[role] is None and role in REQUIRED_ROLES:
            looked = ", ".join(DEFAULT_COLUMNS[role][:4])
            raise ValueError(
                f"{path}: no {role} column (looked for {looked}, ...); its columns: {listing}; "
                f"name it with --{role} COLUMN"
            )
    return Columns(**found)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TransactionOptions:
    """How to read a transactions file."""

    currency: str
    """The configured currency: the default, and the only one accepted."""
    columns: Mapping[str, str | None] = field(default_factory=dict)
    """Role -> column name given (``--customer`` etc.); a missing role is found by default names."""
    date_format: str | None = None
    timezone: tzinfo = UTC
    fmt: str = "auto"
    encoding: str = "utf-8"
    max_problems: int = 20


class RowError(ValueError):
    """Why a row cannot become a purchase event (``str``), and how to fix that kind, if known."""

    def __init__(self, problem: str, hint: str | None = None) -> None:
        super().__init__(problem)
        self.hint = hint


def prepare_transactions(path: Path, options: TransactionOptions) -> Prepared:
    """Read and check the whole file: every row as an encoded purchase event, or a problem."""
    columns = resolve_columns(path, columns_of(path, options.fmt, options.encoding), options.columns)
    dates = DateReader(options.date_format, options.timezone)
    prepared = Prepared(path, "purchases", Problems(options.max_problems))
    seen: Counter[tuple[str, int, int, str, str]] = Counter()
    for where, row in read_rows(path, options.fmt, options.encoding):
        prepared.rows += 1
        if isinstance(row, str):
            prepared.problems.add(where, row)
            continue
        try:
            envelope = _purchase(row, columns, dates, options.currency, seen)
        except RowError as exc:
            prepared.problems.add(where, str(exc), exc.hint)
            continue
        prepared.add(envelope["ts"], envelope["customer_id"], encode_msgpack(envelope))
    return prepared


def purchase_event_id(
    customer: str, ts_ms: int, amount_minor: int, currency: str, product: str, n: int
) -> str:
    """The stable id of the ``n``-th (0-based) purchase in a file with exactly these values."""
    text = "\x1f".join((customer, str(ts_ms), str(amount_minor), currency, product, str(n)))
    return "tx-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _purchase(
    row: Mapping[str, Any],
    columns: Columns,
    dates: DateReader,
    currency: str,
    seen: Counter[tuple[str, int, int, str, str]],
) -> dict[str, Any]:
    customer = _customer(columns.customer, row.get(columns.customer))
    raw_date = row.get(columns.date)
    try:
        ts_ms = dates(raw_date)
    except DateError as exc:
        problem = str(exc)
        hint = NO_FORMAT_HINT if dates.fmt is None and problem == "is not a date" else None
        raise RowError(f"{columns.date} {_shown(raw_date)} {problem}", hint) from None
    amount = _amount(columns.amount, row.get(columns.amount))
    paid_in = _text(row.get(columns.currency)) if columns.currency else ""
    if paid_in and paid_in != currency:
        raise RowError(
            f"{columns.currency} {paid_in!r} is not the configured currency {currency} (SEGFLOW_CURRENCY)"
        )
    product = (_text(row.get(columns.product)) if columns.product else "") or DEFAULT_PRODUCT
    identity = (customer, ts_ms, to_minor_units(float(amount)), currency, product)
    envelope = {
        "v": 1,
        "event_id": purchase_event_id(*identity, seen[identity]),
        "customer_id": customer,
        "type": "purchase",
        "ts": ts_ms,
        "attrs": {"amount": amount, "currency": currency, "product": product},
    }
    try:
        validate_event(envelope, currency=currency)
    except InvalidEvent as exc:  # what the checks above did not foresee: the worker's reason
        raise RowError(f"not a valid purchase event: {exc}") from None
    seen[identity] += 1
    return envelope


def _shown(value: Any) -> str:
    return f"'{value}'" if not isinstance(value, str) else repr(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():  # a Parquet id column read as float
        return str(int(value))
    return str(value).strip()


def _customer(column: str, value: Any) -> str:
    text = _text(value)
    if not text:
        raise RowError(f"{column} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise RowError(f"{column} {text[:20]!r}... is longer than {MAX_ID_LENGTH} characters")
    return text


def _amount(column: str, value: Any) -> int | float:
    """The amount as the schema takes it: an int when the text is one (as ``segflow produce``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowError(f"{column} is empty")
    number: int | float
    if isinstance(value, bool):
        raise RowError(f"{column} {_shown(value)} is not a number")
    if isinstance(value, int | float | Decimal):
        number = float(value) if isinstance(value, Decimal) else value
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise RowError(f"{column} {text!r} is not a number") from None
    if not math.isfinite(number):
        raise RowError(f"{column} {_shown(value)} is not a finite number")
    if number < 0:
        raise RowError(f"{column} {_shown(value)} is negative (a refund is not a purchase)")
    return number
