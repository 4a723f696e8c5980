"""Stock queries: find products by SKU, barcode or name fragment; balances now or as of a time."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.models import ON_HAND, Batch, Document, DocumentLine, Product, StockBalance, StockMove, Warehouse

ZERO = Decimal(0)


@dataclass(frozen=True)
class BatchStock:
    """Quantities of one batch in one warehouse."""

    batch: str
    expiry: date | None
    on_hand: Decimal
    on_loan: Decimal


@dataclass(frozen=True)
class WarehouseStock:
    """One product in one warehouse: totals and per-batch detail."""

    sku: str
    name: str
    unit: str
    warehouse: str
    warehouse_name: str
    on_hand: Decimal
    on_loan: Decimal
    reserved: Decimal
    batches: tuple[BatchStock, ...] = field(default_factory=tuple)

    @property
    def available(self) -> Decimal:
        """On hand less reserved."""
        return self.on_hand - self.reserved


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def find_products(session: AsyncSession, query: str, limit: int = 20) -> list[Product]:
    """Exact SKU or barcode first; otherwise SKU prefix or name fragment matches (up to limit)."""
    q = query.strip()
    if not q:
        raise DomainError("EMPTY_QUERY", "请输入要查询的商品", "例如：库存 奶油、库存 SKU001 或扫描条码")
    exact = list(await session.scalars(select(Product).where(or_(Product.sku == q, Product.barcode == q))))
    if exact:
        return exact
    pattern = f"%{_escape_like(q)}%"
    stmt = (
        select(Product)
        .where(or_(Product.name.like(pattern, escape="\\"), Product.sku.like(f"{_escape_like(q)}%", escape="\\")))
        .order_by(Product.sku)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def _warehouse_id(session: AsyncSession, code: str | None) -> int | None:
    if code is None:
        return None
    wid = await session.scalar(select(Warehouse.id).where(or_(Warehouse.code == code, Warehouse.name == code)))
    if wid is None:
        raise DomainError("NOT_FOUND", f"找不到仓库「{code}」", "请核对仓库编码或名称", {"warehouse": code})
    return wid


async def reserved_quantities(session: AsyncSession, product_ids: list[int]) -> dict[tuple[int, int], Decimal]:
    """Stock reserved by open (submitted) sales orders, per (product, warehouse)."""
    stmt = (
        select(DocumentLine.product_id, DocumentLine.warehouse_id, func.sum(DocumentLine.reserved_qty))
        .join(Document, Document.id == DocumentLine.document_id)
        .where(Document.type == "sales_order", Document.status == "submitted",
               DocumentLine.product_id.in_(product_ids))
        .group_by(DocumentLine.product_id, DocumentLine.warehouse_id)
    )
    return {(p, w): s for p, w, s in (await session.execute(stmt)).all()}


async def stock_levels(
    session: AsyncSession, products: list[Product], warehouse: str | None = None, at: datetime | None = None
) -> list[WarehouseStock]:
    """Per warehouse and batch: on hand, on loan, reserved, available (as of `at` when given)."""
    if not products:
        return []
    pids = [p.id for p in products]
    wid = await _warehouse_id(session, warehouse)
    # rows: (product_id, warehouse_id, batch_id, on_hand, on_loan)
    if at is None:
        stmt = select(StockBalance.product_id, StockBalance.warehouse_id, StockBalance.batch_id,
                      StockBalance.qty, StockBalance.on_loan).where(StockBalance.product_id.in_(pids))
        if wid is not None:
            stmt = stmt.where(StockBalance.warehouse_id == wid)
        rows = list((await session.execute(stmt)).all())
        reserved = await reserved_quantities(session, pids)
    else:
        rows = await _as_of(session, pids, wid, at)
        reserved = {}
    batch_ids = {r[2] for r in rows}
    wh_ids = {r[1] for r in rows}
    batches = {b.id: b for b in await session.scalars(select(Batch).where(Batch.id.in_(batch_ids)))}
    whs = {w.id: w for w in await session.scalars(select(Warehouse).where(Warehouse.id.in_(wh_ids)))}
    grouped: dict[tuple[int, int], list] = defaultdict(list)
    for r in rows:
        grouped[(r[0], r[1])].append(r)
    by_id = {p.id: p for p in products}
    out: list[WarehouseStock] = []
    for (pid, w), rs in sorted(grouped.items(), key=lambda kv: (by_id[kv[0][0]].sku, whs[kv[0][1]].code)):
        detail = tuple(
            BatchStock(batches[b].code, batches[b].expiry, q, loan)
            for _, _, b, q, loan in sorted(rs, key=lambda r: (batches[r[2]].expiry or date.max, batches[r[2]].code))
            if q != 0 or loan != 0
        )
        on_hand = sum((r[3] for r in rs), ZERO)
        on_loan = sum((r[4] for r in rs), ZERO)
        res = reserved.get((pid, w), ZERO)
        if on_hand == 0 and on_loan == 0 and res == 0:
            continue
        p = by_id[pid]
        out.append(WarehouseStock(p.sku, p.name, p.stock_unit, whs[w].code, whs[w].name, on_hand, on_loan, res, detail))
    return out


async def _as_of(session: AsyncSession, pids: list[int], wid: int | None, at: datetime) -> list[tuple]:
    """Balances as of `at`: the balance_after of the last move per key and bucket at or before it."""
    last = (
        select(func.max(StockMove.id).label("id"))
        .where(StockMove.product_id.in_(pids), StockMove.posted_at <= at)
        .group_by(StockMove.product_id, StockMove.warehouse_id, StockMove.batch_id, StockMove.bucket)
    )
    if wid is not None:
        last = last.where(StockMove.warehouse_id == wid)
    stmt = select(StockMove.product_id, StockMove.warehouse_id, StockMove.batch_id, StockMove.bucket,
                  StockMove.balance_after).where(StockMove.id.in_(last.scalar_subquery()))
    acc: dict[tuple[int, int, int], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for p, w, b, bucket, after in (await session.execute(stmt)).all():
        acc[(p, w, b)][0 if bucket == ON_HAND else 1] = after
    return [(p, w, b, v[0], v[1]) for (p, w, b), v in acc.items()]
