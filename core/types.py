"""Column types: exact scaled decimals and timezone-aware UTC datetimes on every backend."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

SCALE = 6
_UNIT = Decimal(10) ** SCALE
_QUANT = Decimal(1).scaleb(-SCALE)


def q6(value: Decimal | int | str) -> Decimal:
    """Round a value to the ledger's six decimal places."""
    return Decimal(value).quantize(_QUANT, rounding=ROUND_HALF_EVEN)


def fq(value: Decimal | int | None) -> str:
    """A quantity for people: no exponent, no trailing zeros (12.500000 → 12.5)."""
    if value is None:
        return ""
    d = Decimal(value).normalize()
    return format(d if d != 0 else Decimal(0), "f")


class Dec(TypeDecorator[Decimal]):
    """Decimal with 6 places: NUMERIC on PostgreSQL, a scaled BIGINT elsewhere (exact on SQLite)."""

    impl = BigInteger
    cache_ok = True

    @staticmethod
    def normalize(value: Any) -> Decimal | None:
        """The value as it reads back from the database (a zero has no sign there)."""
        if value is None:
            return None
        d = q6(value)
        return d.copy_abs() if d.is_zero() else d

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(24, SCALE))
        return dialect.type_descriptor(BigInteger())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = q6(value)
        if dialect.name == "postgresql":
            return value
        return int(value * _UNIT)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return q6(value)
        return q6(Decimal(int(value)) / _UNIT)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetime stored as UTC; naive values are refused."""

    impl = DateTime
    cache_ok = True

    @staticmethod
    def normalize(value: Any) -> datetime | None:
        """The value as it reads back from the database."""
        return None if value is None else value.astimezone(UTC)

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a timezone-aware column")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
