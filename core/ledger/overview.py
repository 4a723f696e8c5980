"""Stock overview: one row per product with totals across warehouses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.ledger.stock import reserved_quantities
from core.models import Batch, Product, StockBalance

ZERO = Decimal(0)


@dataclass(frozen=True)
class OverviewRow:
    """Totals of one product over all warehouses."""

    sku: str
    name: str
    unit: str
    on_hand: Decimal
    on_loan: Decimal
    reserved: Decimal
    warehouses: int
    next_expiry: date | None

    @property
    def available(self) -> Decimal:
        """On hand less reserved."""
        return self.on_hand - self.reserved


async def stock_overview(session: AsyncSession) -> list[OverviewRow]:
    """Every product with stock, on loan or reservations; nearest expiry among batches in stock."""
    stmt = (
        select(
            StockBalance.product_id,
            func.sum(StockBalance.qty),
            func.sum(StockBalance.on_loan),
            func.count(func.distinct(StockBalance.warehouse_id)).filter(StockBalance.qty != 0),
            func.min(Batch.expiry).filter(StockBalance.qty > 0),
        )
        .join(Batch, Batch.id == StockBalance.batch_id)
        .group_by(StockBalance.product_id)
    )
    totals = {r[0]: r[1:] for r in (await session.execute(stmt)).all()}
    products = list(await session.scalars(select(Product).order_by(Product.sku)))
    reserved = await reserved_quantities(session, [p.id for p in products])
    res_by_product: dict[int, Decimal] = {}
    for (pid, _w), q in reserved.items():
        res_by_product[pid] = res_by_product.get(pid, ZERO) + q
    rows = []
    for p in products:
        on_hand, on_loan, n_wh, expiry = totals.get(p.id, (ZERO, ZERO, 0, None))
        res = res_by_product.get(p.id, ZERO)
        if on_hand or on_loan or res:
            rows.append(OverviewRow(p.sku, p.name, p.stock_unit, on_hand, on_loan, res, n_wh, expiry))
    return rows
