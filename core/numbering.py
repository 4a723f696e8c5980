"""Document numbers {PREFIX}{YYYYMMDD}{NNN} from a counter row per (prefix, day) under a row lock."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import DocCounter


def _counter_upsert(insert: Any) -> Any:
    t = DocCounter.__table__  # Core, built once: this runs for every document
    stmt = insert(t).values(prefix=bindparam("prefix"), day=bindparam("day"), last=1)
    return stmt.on_conflict_do_update(index_elements=[t.c.prefix, t.c.day], set_={"last": t.c.last + 1}).returning(
        t.c.last
    )


_UPSERT = {"postgresql": _counter_upsert(postgresql.insert), "sqlite": _counter_upsert(sqlite.insert)}


async def next_number(session: AsyncSession, prefix: str, now: datetime, tz: ZoneInfo) -> str:
    """Take the next number for prefix on now's local day; the 1000th gets four digits."""
    day = now.astimezone(tz).strftime("%Y%m%d")
    stmt = _UPSERT[session.bind.dialect.name]
    last = (await session.execute(stmt, {"prefix": prefix, "day": day})).scalar_one()
    return f"{prefix}{day}{last:03d}"
