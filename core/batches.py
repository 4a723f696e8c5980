"""Get-or-create batches by (product, code) in one round trip; code '' is unbatched stock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Batch, StockBalance

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _batch_filter(keys: list[tuple[int, str]]) -> tuple:
    # SQLite plans a bare row-value IN as a full scan; the product_id IN lets it use the index.
    return Batch.product_id.in_({p for p, _ in keys}), tuple_(Batch.product_id, Batch.code).in_(keys)


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
) -> dict[tuple[int, str], Batch]:
    """Batches keyed by (product_id, code), created when missing (existing expiry is kept)."""
    rows = {(p, c): e for p, c, e in wanted}
    if not rows:
        return {}
    keys = sorted(rows)
    found = {
        (b.product_id, b.code): b
        for b in (await session.scalars(select(Batch).where(*_batch_filter(keys))))
    }
    missing = [{"product_id": p, "code": c, "expiry": rows[(p, c)]} for p, c in keys if (p, c) not in found]
    if missing:
        stmt = _insert(session)(Batch).on_conflict_do_nothing(index_elements=["product_id", "code"])
        await session.execute(stmt, missing)
        new_keys = [(m["product_id"], m["code"]) for m in missing]
        more = await session.scalars(select(Batch).where(*_batch_filter(new_keys)))
        found.update({(b.product_id, b.code): b for b in more})
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
