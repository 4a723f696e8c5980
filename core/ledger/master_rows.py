"""Master data (products, warehouses, parties) for the posting path as read-only rows, fetched once per session."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.storage import Fast

_KEY = "jxcbot_master_rows"
_BY_IDS: dict[type, Fast] = {}
_BY_FIELD: dict[tuple[type, str], Fast] = {}


def _cache(session: AsyncSession) -> dict[tuple[type, int], Any]:
    return session.info.setdefault(_KEY, {})


def _remember(session: AsyncSession, model: type, rows: Iterable[Any]) -> None:
    cache = _cache(session)
    for r in rows:
        cache[(model, r.id)] = r


async def by_ids(session: AsyncSession, model: type, ids: Iterable[int]) -> dict[int, Any]:
    """Rows by id with every column as an attribute (read-only named tuples, or the session's ORM object
    when one is loaded — it may carry changes not yet flushed). Rows once read are kept for the session.

    Master models map one table without inheritance, so an identity key is (model, (id,), None)."""
    found: dict[int, Any] = {}
    cache, identity_map = _cache(session), session.sync_session.identity_map
    missing = []
    for i in ids:
        obj = identity_map.get((model, (i,), None)) or cache.get((model, i))
        if obj is None:
            missing.append(i)
        else:
            found[i] = obj
    if missing:
        fast = _BY_IDS.get(model)
        if fast is None:
            t = model.__table__
            fast = _BY_IDS[model] = Fast(select(t).where(t.c.id.in_(bindparam("ids", expanding=True))))
        rows = await fast.all(session, {"ids": sorted(missing)})
        _remember(session, model, rows)
        found.update({r.id: r for r in rows})
    return found


async def by_field(session: AsyncSession, model: type, field: str, values: Iterable[Any]) -> list[Any]:
    """Rows whose `field` is one of values (e.g. products by SKU), as by_ids; kept for the session."""
    values = sorted(set(values))
    if not values:
        return []
    fast = _BY_FIELD.get((model, field))
    if fast is None:
        t = model.__table__
        fast = _BY_FIELD[(model, field)] = Fast(select(t).where(t.c[field].in_(bindparam("values", expanding=True))))
    rows = await fast.all(session, {"values": values})
    _remember(session, model, rows)
    identity_map = session.sync_session.identity_map
    return [identity_map.get((model, (r.id,), None)) or r for r in rows]
