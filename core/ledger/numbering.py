"""Document numbers {PREFIX}{YYYYMMDD}{NNN} from a counter row per (prefix, day) under a row lock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.storage import Fast

# The same SQL on SQLite (>= 3.35) and PostgreSQL. Written as text because SQLAlchemy cannot cache the
# compiled form of an `on_conflict_do_update` construct: it recompiled it for every document (~0.2 ms).
_UPSERT = Fast(text(
    "INSERT INTO doc_counters (prefix, day, last) VALUES (:prefix, :day, 1) "
    "ON CONFLICT (prefix, day) DO UPDATE SET last = doc_counters.last + 1 RETURNING last"
).bindparams(bindparam("prefix"), bindparam("day")).columns(last=Integer))


async def next_number(session: AsyncSession, prefix: str, now: datetime, tz: ZoneInfo) -> str:
    """Take the next number for prefix on now's local day; the 1000th gets four digits."""
    day = now.astimezone(tz).strftime("%Y%m%d")
    last = (await _UPSERT.all(session, {"prefix": prefix, "day": day}))[0][0]
    return f"{prefix}{day}{last:03d}"
