"""Hot-path Core statements on SQLite run on the raw driver: compiled once by SQLAlchemy, no per-call machinery."""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TupleType, TypeEngine

from core.orm_rows import attach

Getter = Callable[[Mapping[str, Any]], Any]
T = TypeVar("T")


def _processor(type_: TypeEngine, dialect: Dialect) -> Callable[[Any], Any] | None:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _same(value: Any) -> Any:
    return value


def _getter(name: str, index: tuple[int, ...], proc: Callable[[Any], Any]) -> Getter:
    if not index:
        return lambda p: proc(p[name])
    if len(index) == 1:
        (i,) = index
        return lambda p: proc(p[name][i])
    i, j = index
    return lambda p: proc(p[name][i][j])


class _Compiled:
    """One statement compiled for SQLite at one shape (the lengths of its expanding lists)."""

    __slots__ = ("getters", "plain", "procs", "results", "row", "sql")

    def __init__(self, stmt: Executable, dialect: Dialect, params: Mapping[str, Any]) -> None:
        if any(isinstance(v, list | tuple) for v in params.values()):  # expanding IN lists of these lengths
            compiled = stmt.params(dict(params)).compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        else:  # an INSERT names exactly the given columns, as at execution
            compiled = stmt.compile(dialect=dialect, column_keys=list(params))
        binds = compiled.binds
        names = list(compiled.positiontup or ())
        # Plain case (INSERT/UPDATE rows, simple selects): every placeholder is a given parameter, so one
        # C-level itemgetter builds the row and only the typed columns go through a processor.
        self.plain = itemgetter(*names) if names and all(n in params for n in names) else None
        self.procs = [(i, p) for i, n in enumerate(names) if (p := _processor(binds[n].type, dialect))] \
            if self.plain is not None else []
        getters: list[Getter] = []
        for name in names:
            base, index = _split(name, binds)
            bind = binds[base]
            type_ = bind.type
            if index and isinstance(type_, TupleType):
                type_ = type_.types[index[1]]
            proc = _processor(type_, dialect) or _same
            if base in params:
                getters.append(_getter(base, index, proc))
            else:  # a literal inside the statement (e.g. status = 'submitted')
                if bind.required or bind.callable is not None:
                    raise KeyError(f"no value for bound parameter {base!r}")
                value = bind.effective_value
                for i in index:
                    value = value[i]
                value = proc(value)
                getters.append(lambda _p, value=value: value)
        self.sql = compiled.string
        self.getters = getters
        cols = list(getattr(stmt, "exported_columns", None) or ())
        self.results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in cols]
        self.row = namedtuple("Row", [c.key for c in cols], rename=True) if cols else None

    def bind(self, params: Mapping[str, Any]) -> list:
        if self.plain is None:
            return [g(params) for g in self.getters]
        values = self.plain(params)
        values = [values] if len(self.getters) == 1 else list(values)
        for i, proc in self.procs:
            values[i] = proc(values[i])
        return values

    def rows(self, raw: list[tuple]) -> list[tuple]:
        make, procs = self.row, self.results
        if make is None:
            return raw
        if not any(procs):
            return [make._make(r) for r in raw]
        return [make._make([v if p is None else p(v) for p, v in zip(procs, r, strict=True)]) for r in raw]


def _split(name: str, binds: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    """'pids_3' → ('pids', (2,)); 'keys_2_1' → ('keys', (1, 0)); a plain bind name → (name, ())."""
    if name in binds:
        return name, ()
    base, _, i = name.rpartition("_")
    if base in binds:
        return base, (int(i) - 1,)
    base2, _, j = base.rpartition("_")
    if base2 in binds:
        return base2, (int(j) - 1, int(i) - 1)
    raise KeyError(f"cannot map bound parameter {name!r}")


def _run(conn: sqlite3.Connection, sql: str, args: Any, many: bool) -> list[tuple] | None:
    try:
        if many:
            conn.executemany(sql, args)
            return None
        return conn.execute(sql, args).fetchall()
    except sqlite3.Error as e:  # the same exception classes SQLAlchemy would raise
        raise DBAPIError.instance(sql, args, e, sqlite3.Error) from e


def _count(conn: sqlite3.Connection, sql: str, args: Any) -> int:
    try:
        return conn.execute(sql, args).rowcount
    except sqlite3.Error as e:
        raise DBAPIError.instance(sql, args, e, sqlite3.Error) from e


class Fast:
    """A Core statement for the posting path. On SQLite it is compiled once per shape by SQLAlchemy and run
    on the raw sqlite3 connection of the session's transaction (in the writer thread that is a plain call);
    elsewhere `fallback` (default: the same statement) goes through `session.execute`. Rows come back as
    named tuples typed as SQLAlchemy would type them (the same bind and result processors)."""

    def __init__(self, stmt: Executable, fallback: Executable | None = None) -> None:
        self.stmt = stmt
        self.fallback = stmt if fallback is None else fallback  # what other backends execute
        self._shapes: dict[tuple, _Compiled] = {}

    def _compiled(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        # The shape: which parameters are given (an INSERT names exactly those columns) and the length of
        # each list (an expanding IN renders one placeholder per item).
        key = tuple([len(v) if type(v) is list or type(v) is tuple else k for k, v in params.items()])
        found = self._shapes.get(key)
        if found is None:
            found = self._shapes[key] = _Compiled(self.stmt, dialect, params)
        return found

    async def all(self, session: AsyncSession, params: Mapping[str, Any] | None = None) -> list[tuple]:
        """Execute once; the result rows (an empty list for a statement without rows)."""
        params = params or {}
        raw = await _raw(session)
        if raw is None:
            result = await session.execute(self.fallback, params)
            return list(result.all()) if result.returns_rows else []
        c = self._compiled(session.bind.dialect, params)
        return c.rows(await raw.run_raw(_run, c.sql, c.bind(params), False) or [])

    async def rowcount(self, session: AsyncSession, params: Mapping[str, Any]) -> int:
        """Execute a DML statement once; the number of rows it matched."""
        raw = await _raw(session)
        if raw is None:
            return (await session.execute(self.fallback, params)).rowcount
        c = self._compiled(session.bind.dialect, params)
        return await raw.run_raw(_count, c.sql, c.bind(params))

    async def objects(self, session: AsyncSession, model: type[T], params: Mapping[str, Any] | None = None
                      ) -> list[T]:
        """Run a select of every column of model's table; the rows as the session's ORM objects."""
        return [attach(session, model, r._asdict()) for r in await self.all(session, params)]

    async def many(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per parameter set (one executemany on SQLite); returns nothing."""
        if not rows:
            return
        raw = await _raw(session)
        if raw is None:
            await session.execute(self.fallback, list(rows))
            return
        c = self._compiled(session.bind.dialect, rows[0])
        await raw.run_raw(_run, c.sql, [c.bind(r) for r in rows], True)


_ADAPTERS: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()
_NONE = object()


async def _raw(session: AsyncSession) -> Any:
    """The session connection's one-hop/inline SQLite adapter (it has run_raw), or None.

    Remembered per session transaction: a transaction keeps its connection until it ends."""
    trans = session.sync_session.get_transaction()
    adapter = _ADAPTERS.get(trans) if trans is not None else None
    if adapter is None:
        conn = await session.connection()
        found = conn.sync_connection.connection.dbapi_connection
        adapter = found if hasattr(found, "run_raw") else _NONE
        _ADAPTERS[session.sync_session.get_transaction()] = adapter
    return None if adapter is _NONE else adapter
