"""Dates of imported rows as epoch milliseconds.

Without a format a value is read as

* an epoch number, by magnitude: below ``engine.schemas.SECONDS_LIMIT`` (4,102,444,800, that is
  2100-01-01 in seconds) it is seconds, from there on milliseconds, as the schema judges ``ts``;
* else ISO 8601 text (``1997-12-01``, ``1997-12-01 10:30``, ``1997-12-01T10:30:00+02:00``,
  ``19971201``; an 8-digit number that is a valid ``YYYYMMDD`` date is that date);
* a Parquet timestamp or date column as its datetime or date.

With ``fmt`` (strftime, e.g. ``%d/%m/%Y``) text is read with ``datetime.strptime`` only. A date
or time without a zone is in ``tz`` (UTC unless told). Every result must fall in
1970-01-01..2100-01-01 (``engine.schemas``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from engine.schemas import MAX_TS_MS, MIN_TS_MS, SECONDS_LIMIT, TS_RANGE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")
NO_FORMAT_HINT = (
    "dates are read as ISO 8601 (1997-12-01, 1997-12-01T10:30:00Z) or epoch seconds/milliseconds; "
    "--date-format reads others (strftime, e.g. %d/%m/%Y)"
)


class DateError(ValueError):
    """A value that is not a date; ``str`` completes "<column> '<value>' ...", e.g. "is not a date"."""


@dataclass(frozen=True, slots=True)
class DateReader:
    """Reads one column's values as epoch milliseconds (see the module doc)."""

    fmt: str | None = None
    tz: tzinfo = UTC

    def __call__(self, value: Any) -> int:
        """The value's moment in epoch milliseconds; raises ``DateError``."""
        if isinstance(value, datetime):
            return self._ms(value)
        if isinstance(value, date):
            return self._ms(datetime(value.year, value.month, value.day))
        if isinstance(value, bool) or value is None:
            raise DateError("is not a date" if value is not None else "is empty")
        if isinstance(value, int | float | Decimal):
            return epoch_ms(value)
        text = str(value).strip()
        if not text:
            raise DateError("is empty")
        if self.fmt is not None:
            try:
                return self._ms(datetime.strptime(text, self.fmt))
            except ValueError:
                raise DateError(f"is not a date in the format {self.fmt}") from None
        if _NUMBER.fullmatch(text) and not (len(text) == 8 and _iso(text) is not None):
            return epoch_ms(Decimal(text))
        parsed = _iso(text)
        if parsed is None:
            raise DateError("is not a date")
        return self._ms(parsed)

    def _ms(self, moment: datetime) -> int:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.tz)
        millis = (moment - EPOCH) // ONE_MS
        if not MIN_TS_MS <= millis <= MAX_TS_MS:
            raise DateError(f"is outside {TS_RANGE}")
        return millis


def _iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        return None


def epoch_ms(number: int | float | Decimal) -> int:
    """An epoch number as milliseconds: seconds below ``SECONDS_LIMIT``, else milliseconds."""
    value = number if isinstance(number, Decimal) else Decimal(number)
    if not value.is_finite():
        raise DateError("is not a date")
    if value < 0:
        raise DateError("is before 1970-01-01 (a negative epoch number)")
    millis = value * 1000 if value < SECONDS_LIMIT else value
    if millis > MAX_TS_MS:
        raise DateError("is after 2100-01-01 as epoch seconds or milliseconds")
    return int(millis.to_integral_value())
