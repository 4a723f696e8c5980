"""Is the database there: one round trip, for /healthz."""

from __future__ import annotations

from sqlalchemy import text

from core.storage.database import Database


async def ping(db: Database) -> None:
    """One `SELECT 1` on a fresh read session; raises what the driver raises when the database is down."""
    async with db.read(snapshot=False) as s:
        await s.execute(text("SELECT 1"))
