"""Hot-path Core statements on SQLite run on the raw driver: compiled once by SQLAlchemy, no per-call machinery."""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Awaitable, Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.types import TupleType, TypeEngine

from core.storage.orm_rows import attach

Getter = Callable[[Mapping[str, Any]], Any]
T = TypeVar("T")
# Session info key: True sends every Fast statement through session.execute (Database(without={"fastsql"})).
RAW_SQL_OFF = "jxcbot_raw_sql_off"


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


class _Marker:
    """A stand-in parameter value: compiling with markers tells which placeholder takes which value."""

    __slots__ = ("index", "name")

    def __init__(self, name: str, index: tuple[int, ...]) -> None:
        self.name, self.index = name, index


def _markers(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if _is_list(v):
            out[k] = [tuple(_Marker(k, (i, j)) for j in range(len(item))) if isinstance(item, tuple)
                      else _Marker(k, (i,)) for i, item in enumerate(v)]
        else:
            out[k] = _Marker(k, ())
    return out


def _is_list(v: Any) -> bool:
    return type(v) is list or type(v) is tuple


class _Compiled:
    """One statement compiled for SQLite at one shape (given parameters, lengths of their lists)."""

    __slots__ = ("getters", "plain", "procs", "results", "row", "sql")

    def __init__(self, stmt: Executable, dialect: Dialect, params: Mapping[str, Any]) -> None:
        if isinstance(stmt, UpdateBase):
            # An INSERT names exactly the given columns, as at execution. DML cannot take .params(), so
            # an expanding IN inside it is not offered here (session.execute handles it).
            if any(_is_list(v) for v in params.values()):
                raise NotImplementedError("Fast: an INSERT/UPDATE/DELETE with a list parameter is not supported; "
                                          "use session.execute for it")
            compiled = stmt.compile(dialect=dialect, column_keys=list(params))
            placed = {name: _Marker(name, ()) for name in params}
            values = {name: placed.get(name, bind.effective_value) for name, bind in compiled.binds.items()}
        else:
            # Compile with markers as the values and lists expanded (render_postcompile): each placeholder's
            # value is then the marker of the parameter and item it takes, or a literal of the statement.
            # No guessing from SQLAlchemy's names for expanded items.
            compiled = stmt.params(_markers(params)).compile(dialect=dialect,
                                                             compile_kwargs={"render_postcompile": True})
            values = compiled.construct_params(_check=False)
        if "__[POSTCOMPILE_" in compiled.string:
            raise NotImplementedError("Fast: a literal IN list inside an INSERT/UPDATE/DELETE is not supported")
        names = list(compiled.positiontup or ())
        types = _placeholder_types(compiled, names)
        getters: list[Getter] = []
        for name in names:
            value = values.get(name)
            proc = _processor(types[name], dialect) if types[name] is not None else None
            if isinstance(value, _Marker):
                getters.append(_getter(value.name, value.index, proc or _same))
            else:  # a literal of the statement (e.g. status = 'submitted'), or a parameter nobody gave
                bind = compiled.binds.get(name)
                if bind is not None and bind.required and name not in params:
                    raise KeyError(f"no value for bound parameter {name!r}")
                literal = proc(value) if proc is not None else value
                getters.append(lambda _p, literal=literal: literal)
        # Plain case (INSERT/UPDATE rows, simple selects): every placeholder is a whole given parameter, so
        # one C-level itemgetter builds the row and only the typed columns go through a processor.
        plain = bool(names) and all(isinstance(values.get(n), _Marker) and not values[n].index and
                                    values[n].name == n for n in names)
        self.plain = itemgetter(*names) if plain else None
        self.procs = [(i, p) for i, n in enumerate(names)
                      if types[n] is not None and (p := _processor(types[n], dialect))] if plain else []
        self.sql = compiled.string
        self.getters = getters
        result_columns = getattr(compiled, "_result_columns", None) or []
        cols = list(getattr(stmt, "exported_columns", None) or ())
        self.results = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in cols]
        # Field names as SQLAlchemy's Row has them (max_1, id_1 …) when the compiler reports them.
        keys = [rc.keyname for rc in result_columns] if len(result_columns) == len(cols) else [c.key for c in cols]
        self.row = namedtuple("Row", keys, rename=True) if cols else None

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


def _placeholder_types(compiled: Any, names: list[str]) -> dict[str, TypeEngine | None]:
    """The SQL type behind each placeholder: its bind's, or for an expanded item its list bind's (element)."""
    binds = compiled.binds
    out: dict[str, TypeEngine | None] = {}
    for name in names:
        if name in binds:
            out[name] = binds[name].type
            continue
        base, index = _split(name, binds)
        if base is None:
            out[name] = None
            continue
        type_ = binds[base].type
        if len(index) == 2 and isinstance(type_, TupleType):
            type_ = type_.types[index[1]]
        out[name] = type_
    return out


def _split(name: str, binds: Mapping[str, Any]) -> tuple[str | None, tuple[int, ...]]:
    """'pids_3' → ('pids', (2,)); 'keys_2_1' → ('keys', (1, 0)); (None, ()) when it maps to no bind."""
    base, _, i = name.rpartition("_")
    base = base.rstrip("_")
    if base in binds and i.isdigit():
        return base, (int(i) - 1,)
    base2, _, j = base.rpartition("_")
    base2 = base2.rstrip("_")
    if base2 in binds and i.isdigit() and j.isdigit():
        return base2, (int(j) - 1, int(i) - 1)
    return None, ()


def run_sqlite(conn: sqlite3.Connection, sql: str, args: Any, many: bool) -> list[tuple] | None:
    """One statement (or executemany) on a raw sqlite3 connection, raising SQLAlchemy's exception classes."""
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
        # An INSERT's Python-side column defaults, run for the columns a row leaves out (as SQLAlchemy's
        # execution context does; the raw path has none).
        self._defaults = [(c.key, c.default.arg) for c in stmt.table.c if c.default is not None] \
            if isinstance(stmt, Insert) else []

    def _fill(self, rows: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        """Rows with the defaults of the columns the first row leaves out (an executemany has one column
        list: a later row missing a column the first one has is an error, as with SQLAlchemy)."""
        missing = [(k, arg) for k, arg in self._defaults if k not in rows[0]]
        if not missing:
            return rows
        filled = []
        for row in rows:
            out = dict(row)
            for k, arg in missing:
                out[k] = arg(None) if callable(arg) else arg
            filled.append(out)
        return filled

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
        params = _lists(params or {})
        raw = await _raw(session)
        if raw is None:
            result = await session.execute(self.fallback, params)
            # An ORM select's ChunkedIteratorResult has no returns_rows (it always has rows); DML without
            # RETURNING gives a CursorResult whose returns_rows is False.
            return list(result.all()) if getattr(result, "returns_rows", True) else []
        params = self._fill([params])[0] if self._defaults else params
        c = self._compiled(session.bind.dialect, params)
        return c.rows(await raw.run_raw(run_sqlite, c.sql, c.bind(params), False) or [])

    async def fetch(self, dialect: Dialect, run: Callable[[str, Any], Awaitable[list[tuple]]],
                    params: Mapping[str, Any] | None = None) -> list[tuple]:
        """Execute once through `run(sql, args)` (e.g. a reader thread's sqlite3 call), outside any session;
        rows as from `all`. For SELECTs: an INSERT's defaults are not filled in here."""
        params = _lists(params or {})
        c = self._compiled(dialect, params)
        return c.rows(await run(c.sql, c.bind(params)))

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
        if self._defaults:
            rows = self._fill(rows)
        c = self._compiled(session.bind.dialect, rows[0])
        await raw.run_raw(run_sqlite, c.sql, [c.bind(r) for r in rows], True)


def _lists(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """Sets given for an expanding IN as lists (SQLAlchemy takes any iterable there)."""
    if any(type(v) is set or type(v) is frozenset for v in params.values()):
        return {k: list(v) if type(v) is set or type(v) is frozenset else v for k, v in params.items()}
    return params


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
        adapter = found if hasattr(found, "run_raw") and not session.info.get(RAW_SQL_OFF) else _NONE
        _ADAPTERS[session.sync_session.get_transaction()] = adapter
    return None if adapter is _NONE else adapter
