"""Chunked `IN (...)` database lookups for the values of a whole file."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

_CHUNK = 500  # values per IN (...) query


async def _fetch_in(session: AsyncSession, stmt_for: Callable[[list[Any]], Any], values: Iterable[Any]) -> list[Any]:
    """Run stmt_for(chunk) over the distinct values in chunks and collect the scalars."""
    distinct = sorted({v for v in values if v not in (None, "")})
    out: list[Any] = []
    for i in range(0, len(distinct), _CHUNK):
        out += list(await session.scalars(stmt_for(distinct[i : i + _CHUNK])))
    return out


async def _fetch_by(session: AsyncSession, model: type, key: str, values: Iterable[Any]) -> dict[Any, Any]:
    """Records of model whose column `key` is one of values, keyed by that column."""
    column = getattr(model, key)
    found = await _fetch_in(session, lambda c: select(model).where(column.in_(c)), values)
    return {getattr(o, key): o for o in found}
