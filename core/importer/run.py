"""Import entry point: read a file, validate every row of its kind, then write all or nothing in a savepoint."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.importer.opening import _check_opening, _write_opening
from core.importer.products import _check_products, _write_products
from core.importer.progress import Progress
from core.importer.reading import _read_table, _Table
from core.importer.results import ImportFailed, ImportReport, RowError
from core.importer.specs import _columns
from core.importer.users import _check_users, _write_users
from core.importer.warehouses import _check_warehouses
from core.importer.writing import _write_simple
from core.models import Warehouse, utcnow
from core.storage import savepoint


async def import_file(
    session: AsyncSession,
    settings: Settings,
    kind: str,
    path: Path,
    *,
    post: bool = True,
    progress: Progress = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import one file all-or-nothing: validate every row (ImportFailed lists them all), then write.

    The caller owns the transaction. Opening stock becomes one opening document per warehouse, submitted
    and (with post=True) posted at `now` (default: the current time), which also decides "today" for expiry.
    """
    cols = _columns(kind)
    table = await asyncio.to_thread(_read_table, cols, Path(path))
    return await _import_table(session, settings, kind, table, post=post, progress=progress, now=now)


async def _import_table(session: AsyncSession, settings: Settings, kind: str, table: _Table, *, post: bool,
                        progress: Progress, now: datetime | None) -> ImportReport:
    errors: list[RowError] = []
    today = (now or utcnow()).astimezone(settings.timezone).date()
    if kind == "products":
        plan: Any = await _check_products(session, table, errors, progress)
    elif kind == "warehouses":
        plan = await _check_warehouses(session, table, errors, progress)
    elif kind == "users":
        plan = await _check_users(session, table, errors, progress)
    else:
        plan = await _check_opening(session, table, errors, today, progress)
    if errors:
        raise ImportFailed(errors)
    rows = len(table.rows)
    documents: tuple[str, ...] = ()
    # A savepoint: a failure while writing leaves the caller's session as it was.
    async with await savepoint(session):
        if kind == "products":
            created, updated = await _write_products(session, plan)
        elif kind == "warehouses":
            created, updated = await _write_simple(session, Warehouse, plan)
        elif kind == "users":
            created, updated = await _write_users(session, plan)
        else:
            documents = await _write_opening(session, settings, plan, post=post, now=now, progress=progress)
            created, updated = rows, 0
    if progress is not None and kind != "opening":
        progress(rows, rows)
    return ImportReport(kind, rows, created, updated, documents)
