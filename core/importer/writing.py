"""Shared upsert writer: create new records and update existing ones from a validated plan."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def _write_simple(session: AsyncSession, model: type, plan: list[tuple[Any, dict[str, Any]]]) -> tuple[int, int]:
    created = updated = 0
    for current, attrs in plan:
        if current is None:
            session.add(model(**attrs))
            created += 1
        else:
            for k, v in attrs.items():
                setattr(current, k, v)
            updated += 1
    await session.flush()
    return created, updated
