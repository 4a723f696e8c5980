"""Get-or-create batches by (product, code) in one round trip; code '' is unbatched stock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Row, bindparam, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Batch, StockBalance
from core.storage import Fast

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


_BT = Batch.__table__.c
# SQLite plans a bare row-value IN as a full scan; the product_id IN lets it use the index.
_BATCHES = Fast(select(_BT.id, _BT.product_id, _BT.code, _BT.expiry).where(
    _BT.product_id.in_(bindparam("pids", expanding=True)),
    tuple_(_BT.product_id, _BT.code).in_(bindparam("keys", expanding=True)),
))


async def _select_batches(session: AsyncSession, keys: list[tuple[int, str]]) -> dict[tuple[int, str], Row]:
    params = {"pids": sorted({p for p, _ in keys}), "keys": keys}
    return {(r.product_id, r.code): r for r in await _BATCHES.all(session, params)}


def balance_filter(keys: Iterable[tuple[int, int, int]]) -> tuple:
    """WHERE terms for balance rows by (product, warehouse, batch), index-friendly on SQLite too."""
    keys = sorted(set(keys))
    return (
        StockBalance.product_id.in_({p for p, _, _ in keys}),
        tuple_(StockBalance.product_id, StockBalance.warehouse_id, StockBalance.batch_id).in_(keys),
    )


def pair_filter(product_col: Any, warehouse_col: Any, pairs: Iterable[tuple[int, int]]) -> tuple:
    """WHERE terms for (product, warehouse) pairs, index-friendly on SQLite too."""
    pairs = sorted(set(pairs))
    return product_col.in_({p for p, _ in pairs}), tuple_(product_col, warehouse_col).in_(pairs)


def _insert(session: AsyncSession):
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert


async def ensure_batches(
    session: AsyncSession, wanted: Iterable[tuple[int, str, date | None]]
) -> dict[tuple[int, str], Row]:
    """Batch rows (id, product_id, code, expiry) keyed by (product_id, code), created when missing.

    An existing batch keeps its expiry."""
    rows = {(p, c): e for p, c, e in wanted}
    if not rows:
        return {}
    keys = sorted(rows)
    found = await _select_batches(session, keys)
    missing = [{"product_id": p, "code": c, "expiry": rows[(p, c)]} for p, c in keys if (p, c) not in found]
    if missing:
        stmt = _insert(session)(Batch.__table__).on_conflict_do_nothing(index_elements=["product_id", "code"])
        await session.execute(stmt, missing)
        found.update(await _select_batches(session, [(m["product_id"], m["code"]) for m in missing]))
    return found


async def ensure_balance_rows(
    session: AsyncSession, keys: Iterable[tuple[int, int, int]], at: datetime | None = None
) -> None:
    """Create missing balance rows (product, warehouse, batch) in sorted order; no-op for existing ones."""
    ordered = sorted(set(keys))
    if not ordered:
        return
    existing = set(
        (
            await session.execute(
                select(StockBalance.product_id, StockBalance.warehouse_id, StockBalance.batch_id).where(
                    *balance_filter(ordered)
                )
            )
        ).all()
    )
    missing = [
        {"product_id": p, "warehouse_id": w, "batch_id": b, "updated_at": at or EPOCH}
        for p, w, b in ordered
        if (p, w, b) not in existing
    ]
    if missing:
        stmt = _insert(session)(StockBalance).on_conflict_do_nothing(
            index_elements=["product_id", "warehouse_id", "batch_id"]
        )
        await session.execute(stmt, missing)
