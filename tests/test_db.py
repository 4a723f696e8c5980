"""SQLite is set up for a ledger: WAL, foreign keys, and BEGIN IMMEDIATE write transactions."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.models import StockBalance


async def test_sqlite_pragmas_and_foreign_keys(db):
    if not db.is_sqlite:
        pytest.skip("SQLite-specific pragmas; this run is on PostgreSQL")
    async with db.read() as s:
        assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    with pytest.raises(IntegrityError):
        async with db.session() as s:
            s.add(StockBalance(product_id=999, warehouse_id=999, batch_id=999))


async def test_write_session_holds_the_write_lock_from_begin(db):
    """A second writer cannot start while the first transaction is open (BEGIN IMMEDIATE, not deferred)."""
    if not db.is_sqlite:
        pytest.skip("SQLite-specific locking; this run is on PostgreSQL")
    import sqlite3

    path = db.url.split(":///", 1)[1]
    async with db.session() as s:
        await s.execute(text("SELECT 1"))  # no write yet, but the lock is already held
        other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
