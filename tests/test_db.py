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


async def test_one_hop_driver_keeps_the_dbapi_contract(db):
    """The one-round-trip cursor still reports rowcount, lastrowid, rows of RETURNING and executemany."""
    if not db.is_sqlite:
        pytest.skip("SQLite driver; this run is on PostgreSQL")
    assert db.engine.dialect.driver == "jxcsqlite"
    async with db.session() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
        res = await s.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": 1}, {"v": 2}, {"v": 3}])
        assert res.rowcount == 3
        res = await s.execute(text("INSERT INTO t (v) VALUES (4)"))
        assert res.lastrowid == 4
        assert (await s.execute(text("UPDATE t SET v = v + 1 WHERE v >= 3"))).rowcount == 2
        rows = (await s.execute(text("UPDATE t SET v = 0 WHERE id = 1 RETURNING id, v"))).all()
        assert [tuple(r) for r in rows] == [(1, 0)]
        assert (await s.execute(text("SELECT sum(v) FROM t"))).scalar() == 0 + 2 + 4 + 5


async def test_concurrent_writers_queue_instead_of_failing(db):
    """In-process SQLite writers wait for each other instead of meeting SQLite's lock.

    With busy_timeout 0 any writer that reached BEGIN IMMEDIATE while another held the lock would fail
    with 'database is locked'; the queue in Database.session() makes that impossible (and no update is lost)."""
    import asyncio

    from sqlalchemy import event

    if not db.is_sqlite:
        pytest.skip("SQLite writer queue; PostgreSQL uses row locks (FOR UPDATE) instead")
    await db.engine.dispose()  # new connections get the listener below

    @event.listens_for(db.engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    async with db.session() as s:
        await s.execute(text("CREATE TABLE c (n INTEGER)"))
        await s.execute(text("INSERT INTO c VALUES (0)"))

    async def bump() -> None:
        async with db.session() as s:
            n = (await s.execute(text("SELECT n FROM c"))).scalar()
            await asyncio.sleep(0.001)  # let the other writers try to start meanwhile
            await s.execute(text("UPDATE c SET n = :n"), {"n": n + 1})

    await asyncio.gather(*(bump() for _ in range(30)))
    async with db.read() as s:
        assert (await s.execute(text("SELECT n FROM c"))).scalar() == 30


async def test_single_statement_read_skips_begin_and_rollback(db, monkeypatch):
    """read(snapshot=False) sends only its statement; read() keeps one snapshot (BEGIN … ROLLBACK)."""
    if not db.is_sqlite:
        pytest.skip("SQLite round trips; PostgreSQL sessions are unchanged")
    from core.storage import sqlite_driver

    sent: list[str] = []
    run = sqlite_driver._run

    def recording(conn, operation, parameters, many):  # what reaches sqlite3, BEGIN included
        if not operation.startswith("PRAGMA"):  # a new connection's set-up
            sent.append(operation)
        return run(conn, operation, parameters, many)

    monkeypatch.setattr(sqlite_driver, "_run", recording)
    async with db.read(snapshot=False) as s:
        assert (await s.execute(text("SELECT 1"))).scalar() == 1
        raw = (await s.connection()).sync_connection.connection.dbapi_connection
        assert raw.in_transaction is False
    assert sent == ["SELECT 1"]
    sent.clear()
    async with db.read() as s:
        await s.execute(text("SELECT 1"))
        raw = (await s.connection()).sync_connection.connection.dbapi_connection
        assert raw.in_transaction is True
    assert sent == ["BEGIN", "SELECT 1"]
    async with db.read(snapshot=False) as s:  # a pooled connection that held a snapshot starts clean
        await s.execute(text("SELECT 1"))
        assert (await s.connection()).sync_connection.connection.dbapi_connection.in_transaction is False
