"""ORM objects for rows the posting path wrote or read itself, registered in the session as the loader would."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.orm.util import identity_key

T = TypeVar("T")
# Session info key: True registers objects through the ORM's public API instead (Database(without={"orm_rows"})).
PUBLIC_REGISTRATION = "jxcbot_public_registration"
_DEFAULTS: dict[Table, list[tuple[str, Any]]] = {}
_NORMALIZERS: dict[Table, list[tuple[str, Callable[[Any], Any]]]] = {}


def with_defaults(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """values plus the Python-side scalar/callable defaults of the columns it leaves out or sets to None."""
    defaults = _DEFAULTS.get(table)
    if defaults is None:
        defaults = _DEFAULTS[table] = [(c.key, c.default.arg) for c in table.c
                                       if c.default is not None and not c.primary_key]
    out = dict(values)
    for key, arg in defaults:
        if out.get(key) is None:
            out[key] = arg(None) if callable(arg) else arg
    return out


def _register(session: AsyncSession, model: type[T], values: Mapping[str, Any]) -> T:
    # Exactly what the ORM's loader does for a row it has not seen (sqlalchemy.orm.loading._instance, 2.0):
    # a new instance, its dict filled directly (no attribute events, so no history), identity key and
    # session set, registered in the identity map as persistent. Attributes left out (relationships) load
    # lazily, as after a plain query. session.add() would do the same after a cascade walk that costs
    # more than all of this; tests/test_fastsql.py pins the resulting state (persistent, clean, flushable).
    if session.info.get(PUBLIC_REGISTRATION):  # the public way to the same state, for bench.ledger --variants
        obj = model(**values)
        make_transient_to_detached(obj)
        session.add(obj)
        return obj
    obj = manager_of_class(model).new_instance()
    obj.__dict__.update(values)
    state = instance_state(obj)
    sync = session.sync_session
    state.key = identity_key(model, values["id"])
    state.identity_token = None
    state.session_id = sync.hash_key
    sync.identity_map._add_unpresent(state, state.key)
    return obj


def loaded(session: AsyncSession, model: type[T], values: Mapping[str, Any]) -> T:
    """A persistent ORM object for a row this transaction has just written with `values` (every column).

    Each value is normalised as it would read back (Decimal to 6 places, datetimes in UTC); it saves the
    ORM's INSERT … RETURNING round trip through the unit of work."""
    table = model.__table__
    norms = _NORMALIZERS.get(table)
    if norms is None:
        norms = _NORMALIZERS[table] = [(c.key, c.type.normalize) for c in table.c if hasattr(c.type, "normalize")]
    values = dict(values)
    for key, norm in norms:
        values[key] = norm(values[key])
    return _register(session, model, values)


def attach(session: AsyncSession, model: type[T], values: Mapping[str, Any]) -> T:
    """The session's object for a row just read with every column of model's table.

    An object already in the session wins (as with the ORM's own loading, its loaded state is not
    overwritten); attributes it had expired are filled from the row."""
    existing = session.sync_session.identity_map.get(identity_key(model, values["id"]))
    if existing is None:
        return _register(session, model, values)
    expired = instance_state(existing).expired_attributes
    for key in list(expired):  # as the loader does: expired attributes take the row's values
        if key in values:
            set_committed_value(existing, key, values[key])
    return existing
