"""SQLite async dialect: aiosqlite with one worker-thread round trip per statement instead of four."""

from __future__ import annotations

import sqlite3
from collections import deque
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util.concurrency import await_only

DRIVER = "jxcsqlite"
INLINE_DRIVER = "jxcinline"


def _run(conn: Any, operation: str, parameters: Any, many: bool) -> tuple:
    """Runs inside aiosqlite's worker thread: execute, fetch and close in one go."""
    cur = conn.cursor()
    try:
        if many:
            cur.executemany(operation, parameters)
        else:
            cur.execute(operation, () if parameters is None else parameters)
        desc = cur.description
        rows = cur.fetchall() if desc else None
        return desc, rows, cur.lastrowid, cur.rowcount, conn.in_transaction
    finally:
        cur.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """Same contract as SQLAlchemy's aiosqlite cursor; cursor/execute/fetchall/close share one hop."""

    __slots__ = ()

    def _go(self, operation: str, parameters: Any, many: bool) -> None:
        aio = self._connection
        try:
            desc, rows, lastrowid, rowcount, in_tx = self.await_(
                aio._execute(_run, aio._conn, operation, parameters, many)
            )
        except Exception as error:
            self._adapt_connection.in_transaction = True  # unknown now: let the rollback go through
            self._adapt_connection._handle_exception(error)
            raise
        self._adapt_connection.in_transaction = in_tx
        if desc:
            self.description = desc
            self.lastrowid = self.rowcount = -1
            self._rows = deque(rows)
        else:
            self.description = None
            self.lastrowid = lastrowid
            self.rowcount = rowcount

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        """Execute one statement (and fetch its rows) in a single worker round trip."""
        self._go(operation, parameters, False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        """executemany in a single worker round trip."""
        self._go(operation, seq_of_parameters, True)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """Hands out OneHopCursor for ordinary (buffered) cursors; a rollback with no transaction open is free."""

    __slots__ = ("in_transaction",)

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.in_transaction = True  # unknown until a statement reports it

    def rollback(self) -> None:
        """Roll back, skipping the worker round trip when SQLite has no transaction open."""
        if self.in_transaction:
            super().rollback()
            self.in_transaction = False

    def commit(self) -> None:
        """Commit; afterwards no transaction is open."""
        super().commit()
        self.in_transaction = False

    async def run_raw(self, fn: Any, *args: Any) -> Any:
        """fn(sqlite3_connection, *args) where the connection lives: one worker round trip (inline: a call).

        For core/fastsql.py; the caller's session has begun the transaction on this connection already."""
        return await self._connection._execute(fn, self._connection._conn, *args)

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        """A buffered one-hop cursor, or SQLAlchemy's own server-side cursor."""
        if server_side:
            return super().cursor(server_side=True)
        return OneHopCursor(self)


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite DB-API adapter that wraps connections in OneHopConnection."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        """Open an aiosqlite connection (daemon worker thread), wrapped for one-hop cursors."""
        kw.pop("async_fallback", None)
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True
        return OneHopConnection(self, await_only(connection))


class OneHopDialect(SQLiteDialect_aiosqlite):
    """`sqlite+jxcsqlite://` — SQLAlchemy's aiosqlite dialect with the one-hop adapter."""

    driver = DRIVER
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> OneHopDBAPI:
        """The one-hop adapter over aiosqlite and sqlite3."""
        return OneHopDBAPI(__import__("aiosqlite"), __import__("sqlite3"))


registry.register(f"sqlite.{DRIVER}", __name__, "OneHopDialect")


def one_hop_url(url: str) -> str:
    """sqlite+aiosqlite://… → sqlite+jxcsqlite://… (other URLs unchanged)."""
    prefix = "sqlite+aiosqlite:"
    return f"sqlite+{DRIVER}:" + url[len(prefix):] if url.startswith(prefix) else url


class _InlineSqlite:
    """The slice of aiosqlite.Connection the adapter uses, run in the calling thread (the writer thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def isolation_level(self) -> str | None:
        """The sqlite3 connection's isolation level."""
        return self._conn.isolation_level

    async def _execute(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def commit(self) -> None:
        """Commit in this thread."""
        self._conn.commit()

    async def rollback(self) -> None:
        """Roll back in this thread."""
        self._conn.rollback()

    async def close(self) -> None:
        """Close in this thread."""
        self._conn.close()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        """Register a SQL function."""
        self._conn.create_function(*args, **kw)

    async def execute(self, *args: Any, **kw: Any) -> Any:
        """Execute on the raw connection (SQLAlchemy uses this only for set-up)."""
        return self._conn.execute(*args, **kw)

    def stop(self) -> None:
        """Forced close."""
        self._conn.close()


class InlineConnection(OneHopConnection):
    """A one-hop connection whose 'hop' is a plain call: for an engine that lives in the writer thread."""

    __slots__ = ()

    @property
    def isolation_level(self) -> str | None:
        """The sqlite3 connection's isolation level."""
        return self._connection.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._connection._conn.isolation_level = value

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        """A buffered cursor (server-side cursors are not offered inline)."""
        return OneHopCursor(self)


class InlineDBAPI(OneHopDBAPI):
    """sqlite3 behind the async adapter, every call made directly in the calling thread."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        """Open a sqlite3 connection in this thread (sqlite3 refuses use from any other thread)."""
        kw.pop("async_fallback", None)
        return InlineConnection(self, _InlineSqlite(sqlite3.connect(*arg, **kw)))


class InlineDialect(OneHopDialect):
    """`sqlite+jxcinline://` — for an async engine driven from one dedicated thread's event loop."""

    driver = INLINE_DRIVER
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> InlineDBAPI:
        """The inline adapter over sqlite3."""
        return InlineDBAPI(__import__("aiosqlite"), sqlite3)


registry.register(f"sqlite.{INLINE_DRIVER}", __name__, "InlineDialect")


def inline_url(url: str) -> str:
    """sqlite+aiosqlite://… → sqlite+jxcinline://…"""
    prefix = "sqlite+aiosqlite:"
    if not url.startswith(prefix):
        raise ValueError(f"not an aiosqlite URL: {url}")
    return f"sqlite+{INLINE_DRIVER}:" + url[len(prefix):]
