"""The private aiosqlite and SQLAlchemy internals core/storage/sqlite_driver.py builds on, checked on real objects.

sqlite_driver.py runs each statement in one hop of aiosqlite's worker thread (Connection._execute with
Connection._conn), marks that thread a daemon before it starts (Connection._thread), and subclasses
SQLAlchemy's private aiosqlite adapter. None of this is public API: pyproject.toml pins both packages for
it, and these tests fail with the attribute and the pin named the day an upgrade changes any of it."""

from __future__ import annotations

import inspect
import sqlite3
import threading
import tomllib
from collections import deque
from pathlib import Path

import aiosqlite
import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.dialects.sqlite import aiosqlite as sa_aiosqlite
from sqlalchemy.ext.asyncio import create_async_engine

from core.storage import sqlite_driver

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _pin(package: str) -> str:
    """The dependency line of `package` in pyproject.toml, as written there."""
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    return next(d for d in deps if d.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() == package)


def need_aiosqlite(ok: object, attr: str, what: str) -> None:
    """Fail naming the aiosqlite attribute, what was expected of it, the installed version and the pin."""
    if not ok:
        pytest.fail(
            f"aiosqlite {aiosqlite.__version__}: {attr} {what}. core/storage/sqlite_driver.py relies on this "
            f"private internal, which is why pyproject.toml pins {_pin('aiosqlite')!r}: adapt sqlite_driver.py "
            "(OneHopCursor._go, OneHopConnection.run_raw, OneHopDBAPI.connect) before moving the pin.",
            pytrace=False,
        )


def need_sqlalchemy(ok: object, attr: str, what: str) -> None:
    """The same for SQLAlchemy's private aiosqlite adapter."""
    if not ok:
        pytest.fail(
            f"SQLAlchemy {sqlalchemy.__version__}: {attr} {what}. core/storage/sqlite_driver.py subclasses this "
            f"private adapter, which is why pyproject.toml pins {_pin('sqlalchemy')!r}: adapt sqlite_driver.py "
            "before moving the pin.",
            pytrace=False,
        )


def _params(fn: object) -> list[inspect.Parameter]:
    return list(inspect.signature(fn).parameters.values())


async def test_connect_returns_an_unstarted_connection_whose_thread_can_become_a_daemon(tmp_path):
    """OneHopDBAPI.connect sets connection._thread.daemon = True between aiosqlite.connect() and the await."""
    conn = aiosqlite.connect(str(tmp_path / "t.db"))
    thread = getattr(conn, "_thread", None)
    need_aiosqlite(isinstance(thread, threading.Thread), "Connection._thread",
                   f"is {type(thread).__name__}, not the worker threading.Thread")
    need_aiosqlite(not thread.is_alive(), "Connection._thread",
                   "is already running when aiosqlite.connect() returns (daemon can no longer be set)")
    thread.daemon = True
    await conn
    try:
        need_aiosqlite(thread.is_alive() and thread.daemon, "Connection._thread",
                       "is not the running worker after `await connect(...)`")
    finally:
        await conn.close()


async def test_execute_runs_a_function_on_the_worker_thread_with_the_raw_connection(tmp_path):
    """OneHopCursor._go and run_raw call `await aio._execute(fn, aio._conn, *args)` and take fn's result."""
    need_aiosqlite(inspect.iscoroutinefunction(getattr(aiosqlite.Connection, "_execute", None)),
                   "Connection._execute", "is gone or no longer a coroutine function")
    params = _params(aiosqlite.Connection._execute)
    need_aiosqlite([p.kind for p in params[1:3]] == [inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                     inspect.Parameter.VAR_POSITIONAL],
                   "Connection._execute", f"signature is {inspect.signature(aiosqlite.Connection._execute)}, "
                   "not (self, fn, *args, ...)")
    need_aiosqlite(isinstance(inspect.getattr_static(aiosqlite.Connection, "_conn", None), property),
                   "Connection._conn", "is no longer a property")
    async with aiosqlite.connect(str(tmp_path / "t.db")) as conn:
        raw = conn._conn
        need_aiosqlite(type(raw) is sqlite3.Connection, "Connection._conn",
                       f"gives {type(raw).__name__}, not the sqlite3.Connection")

        def probe(c: sqlite3.Connection, sql: str, many: bool) -> tuple:
            return threading.current_thread(), c, c.execute(sql).fetchall(), many

        ran_on, got, rows, many = await conn._execute(probe, raw, "SELECT 41 + 1", True)
        need_aiosqlite(ran_on is conn._thread, "Connection._execute",
                       f"ran the function on {ran_on.name}, not on the connection's worker thread")
        need_aiosqlite(got is raw and rows == [(42,)] and many is True, "Connection._execute",
                       "did not pass the positional arguments through or return the function's result")

        def fail(c: sqlite3.Connection) -> None:
            c.execute("SELECT * FROM no_such_table")

        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            await conn._execute(fail, raw)


def test_sqlalchemys_aiosqlite_adapter_has_what_the_one_hop_classes_use():
    """OneHopCursor fills the parent cursor's slots; OneHopConnection calls the parent's private helpers."""
    cursor = sa_aiosqlite.AsyncAdapt_aiosqlite_cursor
    slots = {s for klass in cursor.__mro__ for s in getattr(klass, "__slots__", ())}
    for attr in ("_connection", "_adapt_connection", "await_", "_rows", "description", "lastrowid", "rowcount"):
        need_sqlalchemy(attr in slots, f"AsyncAdapt_aiosqlite_cursor.{attr}", "is no longer a slot of the cursor")
    for name in ("fetchone", "fetchmany", "fetchall"):
        need_sqlalchemy(callable(getattr(cursor, name, None)), f"AsyncAdapt_aiosqlite_cursor.{name}", "is gone")
    conn = sa_aiosqlite.AsyncAdapt_aiosqlite_connection
    need_sqlalchemy([p.name for p in _params(conn.__init__)][1:] == ["dbapi", "connection"],
                    "AsyncAdapt_aiosqlite_connection.__init__",
                    f"signature is {inspect.signature(conn.__init__)}, not (self, dbapi, connection)")
    for name in ("_handle_exception", "rollback", "commit", "cursor"):
        need_sqlalchemy(callable(getattr(conn, name, None)), f"AsyncAdapt_aiosqlite_connection.{name}", "is gone")
    need_sqlalchemy("server_side" in inspect.signature(conn.cursor).parameters,
                    "AsyncAdapt_aiosqlite_connection.cursor", "takes no server_side argument")
    need_sqlalchemy(isinstance(inspect.getattr_static(conn, "isolation_level", None), property),
                    "AsyncAdapt_aiosqlite_connection.isolation_level", "is no longer a property")
    dbapi = sa_aiosqlite.AsyncAdapt_aiosqlite_dbapi(aiosqlite, sqlite3)
    need_sqlalchemy(dbapi.aiosqlite is aiosqlite, "AsyncAdapt_aiosqlite_dbapi.aiosqlite",
                    "is not the aiosqlite module it was given")
    need_sqlalchemy(callable(getattr(sa_aiosqlite.SQLiteDialect_aiosqlite, "import_dbapi", None)),
                    "SQLiteDialect_aiosqlite.import_dbapi", "is gone")


async def test_the_one_hop_driver_runs_on_a_real_connection(tmp_path):
    """End to end on the installed versions: the one-hop adapter wraps a live aiosqlite connection whose
    _conn, _execute and daemon _thread it uses, and its statements and run_raw return what sqlite3 does."""
    engine = create_async_engine(sqlite_driver.one_hop_url(f"sqlite+aiosqlite:///{tmp_path / 't.db'}"))
    try:
        async with engine.connect() as conn:
            adapter = (await conn.get_raw_connection()).dbapi_connection
            assert isinstance(adapter, sqlite_driver.OneHopConnection)
            aio = adapter._connection
            need_aiosqlite(isinstance(aio, aiosqlite.Connection), "AsyncAdapt_aiosqlite_connection._connection",
                           f"holds {type(aio).__name__}, not the aiosqlite.Connection")
            need_aiosqlite(aio._thread.daemon, "Connection._thread", "was not made a daemon by OneHopDBAPI.connect")
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
            res = await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": 1}, {"v": 2}])
            assert res.rowcount == 2
            assert (await conn.execute(text("SELECT sum(v) FROM t"))).scalar() == 3
            def through_cursor(_sync_conn: object) -> tuple[object, list]:
                # The adapter's cursor awaits inside SQLAlchemy's greenlet: run_sync provides one.
                cursor = adapter.cursor()
                cursor.execute("SELECT v FROM t ORDER BY id")
                return cursor._rows, cursor.fetchall()

            stored, fetched = await conn.run_sync(through_cursor)
            need_sqlalchemy(isinstance(stored, deque) and fetched == [(1,), (2,)],
                            "AsyncAdapt_aiosqlite_cursor._rows / fetchall",
                            "do not serve the rows the one-hop cursor stored")
            rows = await adapter.run_raw(lambda c, sql: c.execute(sql).fetchall(), "SELECT count(*) FROM t")
            assert rows == [(2,)]
    finally:
        await engine.dispose()
