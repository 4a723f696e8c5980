"""Async database access: engines, SQLite write transactions (BEGIN IMMEDIATE) and retries."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)

from core.storage.fastsql import RAW_SQL_OFF, Fast
from core.storage.orm_rows import PUBLIC_REGISTRATION
from core.storage.raw_reader import RawReader
from core.storage.sqlite_driver import inline_url, one_hop_url
from core.storage.writer_thread import WriterThread

T = TypeVar("T")
_SINGLE_STATEMENT = "jxcbot_single_statement"

_RETRYABLE_PG = {"40001", "40P01"}  # serialization failure, deadlock detected
# The parts of the SQLite speed code that `Database(url, without=...)` can leave out (bench.ledger --variants).
SPEED_PARTS = ("one_hop", "writer_thread", "reader_threads", "fastsql", "orm_rows")


def _begin(conn: Any, sql: str) -> None:
    """Send BEGIN on the driver cursor: no execution context, no statement events (this runs per transaction)."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql)
    except sqlite3.Error as e:  # as SQLAlchemy would raise it, so `write` can retry "database is locked"
        raise DBAPIError.instance(sql, (), e, sqlite3.Error) from e
    finally:
        cursor.close()


def _sqlite_engine(url: str, *, immediate: bool, inline: bool = False, one_hop: bool = True) -> AsyncEngine:
    # Sessions always end their transaction (commit or rollback) before the connection goes back, so the
    # pool's own reset-on-return ROLLBACK would be a second worker round trip for nothing.
    # No overflow: an overflow connection is closed on return, and each new one costs a thread, an open
    # and a schema parse (under 100 concurrent handlers that churn was over half the bot's CPU). Readers
    # beyond the pool wait for a connection; SQLite work per read is short.
    driver_url = inline_url(url) if inline else one_hop_url(url) if one_hop else url
    engine = create_async_engine(driver_url, pool_size=8, max_overflow=0, pool_timeout=60,
                                 pool_reset_on_return=None)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite recipe), so BEGIN IMMEDIATE is real.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint every ~40 MB of log instead of SQLite's 4 MB: a posting writes ~50 pages, most of them
        # the same hot index pages, so rarer checkpoints copy each page back once for many commits (the
        # average COMMIT went from ~0.9 to ~0.57 ms in bench.ledger). The log is truncated after that.
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.execute(f"PRAGMA journal_size_limit={64 * 2**20}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if immediate:
            _begin(conn, "BEGIN IMMEDIATE")
        elif not conn.get_execution_options().get(_SINGLE_STATEMENT):
            _begin(conn, "BEGIN")

    return engine


def is_retryable(exc: BaseException) -> bool:
    """True for 'database is locked' on SQLite and serialization/deadlock errors on PostgreSQL."""
    if isinstance(exc, OperationalError) and "locked" in str(exc).lower():
        return True
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return code in _RETRYABLE_PG or "deadlock" in str(exc).lower()
    return False


class Database:
    """One database: a writer engine and (on SQLite) a separate reader engine and a writer thread.

    `without` leaves parts of the SQLite speed code out, for measuring what each buys (bench.ledger
    --variants); results are the same, only the speed differs. Default: every part in. The parts
    (SPEED_PARTS): "one_hop" (the caller-loop engines use SQLAlchemy's plain aiosqlite driver instead of
    core/storage/sqlite_driver.py's one-hop one), "writer_thread" (`write` runs on the caller's loop, queued
    on an asyncio lock), "reader_threads" (`fetch` runs in a read session), "fastsql" (Fast statements go
    through `session.execute`), "orm_rows" (rows become ORM objects through `make_transient_to_detached` and
    `session.add`). Ignored on PostgreSQL, which has none of these."""

    def __init__(self, url: str, *, without: Iterable[str] = ()) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        parts = frozenset(without)
        if not parts <= set(SPEED_PARTS):
            raise ValueError(f"unknown speed-code parts {sorted(parts - set(SPEED_PARTS))}; "
                             f"the parts are {', '.join(SPEED_PARTS)}")
        self.without = parts if self.dialect == "sqlite" else frozenset()
        if self.dialect == "sqlite":
            one_hop = "one_hop" not in self.without
            self.engine = _sqlite_engine(url, immediate=True, one_hop=one_hop)
            self.read_engine = _sqlite_engine(url, immediate=False, one_hop=one_hop)
        else:
            self.engine = create_async_engine(url, pool_size=16, max_overflow=0, pool_timeout=60)
            self.read_engine = self.engine
        info: dict[str, bool] = {}
        if "fastsql" in self.without:
            info[RAW_SQL_OFF] = True
        if "orm_rows" in self.without:
            info[PUBLIC_REGISTRATION] = True
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False, info=info)
        self._info = info
        # SQLite has one writer at a time. `write` runs each transaction whole in a writer thread (no
        # worker round trip per statement), queued behind one lock there; `session` holds the same lock,
        # so in-process writers never meet SQLite's busy handler (it sleeps in steps of up to 100 ms).
        # Other processes still meet busy_timeout.
        self._thread: WriterThread | None = None
        self._thread_sessions: async_sessionmaker[AsyncSession] | None = None
        self._reader_threads: RawReader | None = None
        self._lock: asyncio.Lock | None = None  # the writer lock on the caller's loop, without the writer thread
        path = make_url(url).database if self.dialect == "sqlite" else None
        self._file = path if path and path != ":memory:" and not path.startswith("file:") else None
        if "reader_threads" in self.without:
            self._file = None

    @property
    def is_sqlite(self) -> bool:
        """True when the backend is SQLite."""
        return self.dialect == "sqlite"

    def _writer_thread(self) -> WriterThread:
        if self._thread is None:
            self._thread = WriterThread(lambda: _sqlite_engine(self.url, immediate=True, inline=True))
            self._thread_sessions = async_sessionmaker(self._thread.engine, expire_on_commit=False, info=self._info)
        return self._thread

    @property
    def _in_thread(self) -> bool:
        return self.is_sqlite and "writer_thread" not in self.without

    def _loop_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    @property
    def write_engine(self) -> AsyncEngine:
        """The engine `write` transactions run on (SQLite: the writer thread's; PostgreSQL: `engine`)."""
        return self._writer_thread().engine if self._in_thread else self.engine

    @asynccontextmanager
    async def read(self, *, snapshot: bool = True) -> AsyncIterator[AsyncSession]:
        """A read-only session: one snapshot for all its statements (a deferred transaction on SQLite).

        snapshot=False is for a session that runs a single statement (itself atomic): on SQLite it then
        skips BEGIN and ROLLBACK, two worker round trips."""
        async with self._reader() as session:
            if not snapshot and self.is_sqlite:
                await session.connection(execution_options={_SINGLE_STATEMENT: True})
            yield session

    async def fetch(self, stmt: Fast, params: Mapping[str, Any] | None = None) -> list[tuple]:
        """Run one read statement on its own (a single statement is atomic) and return its rows.

        On a SQLite file this is one call on a reader thread, without a session: the cheap path for the
        reads every chat message makes (its sender, a stock query). Elsewhere a read session runs it."""
        if self._file is None:
            async with self.read(snapshot=False) as session:
                return await stmt.all(session, params)
        if self._reader_threads is None:
            self._reader_threads = RawReader(self._file)
        return await stmt.fetch(self.read_engine.dialect, self._reader_threads.rows, params)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A write session on the caller's loop whose transaction begins immediately; commits on success."""
        if not self.is_sqlite:
            async with self._writer() as session, session.begin():
                yield session
            return
        if not self._in_thread:
            async with self._loop_lock(), self._writer() as session, session.begin():
                yield session
            return
        async with self._writer_thread().held(), self._writer() as session, session.begin():
            yield session

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]], *, attempts: int = 8) -> T:
        """Run `work` in one write transaction, retrying on lock/serialization errors.

        On SQLite `work` runs on the writer thread's event loop: it may use the session and plain
        coroutines (asyncio.sleep, asyncio.to_thread), but nothing bound to the caller's loop."""
        if not self.is_sqlite:
            return await self._attempts(work, attempts, self._writer, None)
        if not self._in_thread:
            return await self._attempts(work, attempts, self._writer, self._loop_lock())
        thread = self._writer_thread()
        assert self._thread_sessions is not None
        return await thread.run(self._attempts(work, attempts, self._thread_sessions, thread.lock))

    @staticmethod
    async def _attempts(work: Callable[[AsyncSession], Awaitable[T]], attempts: int,
                        sessions: async_sessionmaker[AsyncSession], lock: asyncio.Lock | None) -> T:
        for attempt in range(attempts):
            try:
                if lock is None:
                    async with sessions() as session, session.begin():
                        return await work(session)
                async with lock, sessions() as session, session.begin():
                    return await work(session)
            except (OperationalError, DBAPIError) as exc:
                if not is_retryable(exc) or attempt == attempts - 1:
                    raise
                await asyncio.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def dispose(self) -> None:
        """Close every pooled connection and stop the writer thread (a later write starts a new one)."""
        if self._thread is not None:
            thread, self._thread = self._thread, None
            await thread.close()
        if self._reader_threads is not None:
            readers, self._reader_threads = self._reader_threads, None
            await readers.close()
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


async def savepoint(session: AsyncSession) -> AsyncSessionTransaction:
    """A SAVEPOINT that is really open now. SQLAlchemy emits it lazily, on the session's next statement through its
    connection; the posting path's raw SQLite statements (Fast) bypass that, so without this a rollback to the
    savepoint would not undo them."""
    nested = await session.begin_nested()
    await session.connection()
    return nested
