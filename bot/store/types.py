"""Column types that keep money exact and datetimes in UTC on SQLite and PostgreSQL alike.

Two silent traps make these necessary (both verified, see ``shared/notes/exchange-facts.md`` §10):

* SQLite has no decimal type: a ``NUMERIC`` column is stored as an 8-byte float, so
  ``Decimal("55000.1")`` comes back as ``Decimal("55000.099999999999")`` without a warning
  (https://www.sqlite.org/datatype3.html, "Type Affinity"). :class:`ExactDecimal` stores TEXT there
  and ``NUMERIC(38, 18)`` on PostgreSQL. SQL ``ORDER BY``/``SUM`` on the TEXT column are therefore
  not numeric: aggregate in Python.
* SQLite has no timezone-aware datetime: ``DateTime(timezone=True)`` returns naive values.
  :class:`UTCDateTime` refuses naive input and always returns aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine

from bot.ports.store import STORED_DECIMALS, STORED_INTEGER_DIGITS

# NUMERIC(38, 18) on PostgreSQL: 20 integer digits and 18 fractional digits (the port's bounds,
# which the exchange adapter holds every number of a venue's answer to). The same limits are
# enforced on SQLite so that a value accepted by one backend is accepted, unchanged, by the other
# (PostgreSQL would silently round a 19th fractional digit).
SCALE = STORED_DECIMALS
INTEGER_DIGITS = STORED_INTEGER_DIGITS
PRECISION = INTEGER_DIGITS + SCALE
_TEXT_LENGTH = 64


def canonical_text(value: Decimal) -> str:
    """Plain (non-scientific) text of ``value`` without trailing fractional zeros.

    Exact: no decimal context (and so no 28-digit rounding) is involved.
    """
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def check_exact(value: object, where: str = "") -> Decimal:
    """Return ``value`` as a Decimal that both backends store exactly, or raise ``ValueError``.

    Accepts ``Decimal`` and ``int``; a ``float`` is refused because it is already inexact.
    """
    label = f" ({where})" if where else ""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"expected Decimal or int{label}, got {type(value).__name__}: {value!r}")
    dec = Decimal(value)
    if not dec.is_finite():
        raise ValueError(f"cannot store non-finite decimal {dec}{label}")
    integer, _, fraction = canonical_text(dec).lstrip("-").partition(".")
    if len(integer.lstrip("0")) > INTEGER_DIGITS or len(fraction) > SCALE:
        raise ValueError(
            f"decimal {dec}{label} does not fit NUMERIC({PRECISION}, {SCALE}): at most "
            f"{INTEGER_DIGITS} integer and {SCALE} fractional digits are stored exactly"
        )
    return dec


class ExactDecimal(TypeDecorator[Decimal]):
    """A ``Decimal`` column: TEXT on SQLite, ``NUMERIC(38, 18)`` on PostgreSQL.

    Values read back are canonical (no trailing fractional zeros), whatever the backend, so
    ``Decimal("55000.10")`` is returned as ``Decimal("55000.1")`` on both.
    """

    impl = String(_TEXT_LENGTH)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(PRECISION, SCALE, asdecimal=True))
        return dialect.type_descriptor(String(_TEXT_LENGTH))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        dec = check_exact(value)
        return dec if dialect.name == "postgresql" else canonical_text(dec)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, float):  # never expected: it would mean the column lost exactness
            raise TypeError(
                f"decimal column returned a float ({value!r}); the column type is wrong"
            )
        return Decimal(canonical_text(Decimal(value)))


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime column. Naive datetimes are refused on write.

    SQLite stores the naive UTC wall time; PostgreSQL stores ``timestamp with time zone``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} (a timezone is required)")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
