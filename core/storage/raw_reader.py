"""SQLite single-statement reads as one call on a reader thread: no session, no per-statement round trips."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.storage.fastsql import run_sqlite

READERS = 4  # threads; SQLite reads run concurrently in WAL mode and release the GIL while they run


class RawReader:
    """A few threads, each with its own read-only sqlite3 connection to one database file.

    A read is one statement, already compiled (see core.storage.fastsql.Fast.fetch): the thread executes it and
    fetches every row in one go, so a read costs one hand-off instead of an ORM session, a pooled
    connection checkout and a round trip per step. A single statement sees one consistent snapshot."""

    def __init__(self, path: str, threads: int = READERS) -> None:
        self.path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jxcbot-sqlite-reader")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._guard:
                self._conns.append(conn)
        return conn

    def _run(self, sql: str, args: Any) -> list[tuple]:
        return run_sqlite(self._conn(), sql, args, False) or []

    async def rows(self, sql: str, args: Any) -> list[tuple]:
        """Execute one statement on a reader thread; its raw rows."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, sql, args)

    async def close(self) -> None:
        """Wait for running reads, then close every connection."""
        await asyncio.to_thread(self._pool.shutdown, True)
        with self._guard:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
