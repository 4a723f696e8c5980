"""Document numbers {PREFIX}{YYYYMMDD}{NNN} from a counter row per (prefix, day) under a row lock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import DocCounter


async def next_number(session: AsyncSession, prefix: str, now: datetime, tz: ZoneInfo) -> str:
    """Take the next number for prefix on now's local day; the 1000th gets four digits."""
    day = now.astimezone(tz).strftime("%Y%m%d")
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    t = DocCounter.__table__  # Core, not the ORM bulk path: this runs once per document
    stmt = insert(t).values(prefix=prefix, day=day, last=1)
    stmt = stmt.on_conflict_do_update(index_elements=[t.c.prefix, t.c.day], set_={"last": t.c.last + 1}).returning(
        t.c.last
    )
    last = (await session.execute(stmt)).scalar_one()
    return f"{prefix}{day}{last:03d}"
