"""Freeze and unfreeze one product in one warehouse, with a freeze-event log; integrity sweep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.models import ON_HAND, ON_LOAN, Freeze, FreezeEvent, Product, StockBalance, StockMove, Warehouse, utcnow
from core.types import Dec


async def freeze(session: AsyncSession, product_id: int, warehouse_id: int, reason: str,
                 now: datetime | None = None, actor: str = "system") -> Freeze:
    """Freeze the pair (idempotent: an active freeze gets a further 'trigger' event instead)."""
    now = now or utcnow()
    active = await session.scalar(
        select(Freeze).where(Freeze.product_id == product_id, Freeze.warehouse_id == warehouse_id,
                             Freeze.active.is_(True))
    )
    if active is None:
        active = Freeze(product_id=product_id, warehouse_id=warehouse_id, reason=reason, created_at=now)
        session.add(active)
        await session.flush()
        session.add(FreezeEvent(freeze_id=active.id, event="freeze", reason=reason, actor=actor, at=now))
    else:
        session.add(FreezeEvent(freeze_id=active.id, event="trigger", reason=reason, actor=actor, at=now))
    await session.flush()
    return active


async def freeze_held(session: AsyncSession, error: DomainError, now: datetime | None = None,
                      actor: str = "system") -> Freeze | None:
    """After a posting the magnitude guard held (the g-vs-kg mistake): freeze that product in that warehouse — the
    smallest scope — so nothing else moves there until someone looks (诊断) and lifts it (解冻). For the caller
    whose transaction goes on after the refused posting (its savepoint rolled back); other errors freeze nothing."""
    if error.code != "MAGNITUDE_GUARD" or "product_id" not in error.fields:
        return None
    return await freeze(session, int(error.fields["product_id"]), int(error.fields["warehouse_id"]),
                        f"数量异常暂扣：{error.message_zh}", now, actor)


async def unfreeze(session: AsyncSession, sku: str, warehouse: str, actor: str, note: str = "",
                   now: datetime | None = None) -> Freeze:
    """Lift the active freeze of a product in a warehouse (解冻)."""
    now = now or utcnow()
    row = (await session.execute(
        select(Freeze, Product, Warehouse)
        .join(Product, Product.id == Freeze.product_id)
        .join(Warehouse, Warehouse.id == Freeze.warehouse_id)
        .where(Product.sku == sku, Warehouse.code == warehouse, Freeze.active.is_(True))
    )).first()
    if row is None:
        raise DomainError("NOT_FROZEN", f"{sku} 在 {warehouse} 没有处于冻结状态", "无需解冻；请核对商品和仓库",
                          {"sku": sku, "warehouse": warehouse})
    fr = row[0]
    fr.active, fr.lifted_at = False, now
    session.add(FreezeEvent(freeze_id=fr.id, event="unfreeze", reason=note, actor=actor, at=now))
    await session.flush()
    return fr


@dataclass(frozen=True)
class Anomaly:
    """A balance row that disagrees with its moves, or a strict warehouse below zero."""

    product_id: int
    warehouse_id: int
    reason: str


async def sweep_integrity(session: AsyncSession, now: datetime | None = None) -> list[Anomaly]:
    """Compare every balance with the sum of its moves; freeze each anomalous pair (smallest scope).

    One statement: the database sums the moves per (product, warehouse, batch) — from the covering move index —
    and returns only the balances that disagree or are negative in a strict warehouse."""
    m, b, w = StockMove.__table__.c, StockBalance.__table__.c, Warehouse.__table__.c
    sums = (select(m.product_id, m.warehouse_id, m.batch_id,
                   func.sum(case((m.bucket == ON_HAND, m.qty), else_=0)).label("stock"),
                   func.sum(case((m.bucket == ON_LOAN, m.qty), else_=0)).label("loan"))
            .group_by(m.product_id, m.warehouse_id, m.batch_id).subquery())
    moved = type_coerce(func.coalesce(sums.c.stock, 0), Dec)
    loaned = type_coerce(func.coalesce(sums.c.loan, 0), Dec)
    key = (sums.c.product_id == b.product_id) & (sums.c.warehouse_id == b.warehouse_id) & \
        (sums.c.batch_id == b.batch_id)
    rows = (await session.execute(
        select(b.product_id, b.warehouse_id, b.qty, moved, loaned, b.on_loan, w.allow_negative)
        .select_from(StockBalance.__table__.join(Warehouse.__table__, w.id == b.warehouse_id)
                     .outerjoin(sums, key))
        .where((moved != b.qty) | (loaned != b.on_loan) | ((b.qty < 0) & w.allow_negative.is_(False)))
        .order_by(b.product_id, b.warehouse_id, b.batch_id)
    )).all()
    anomalies: dict[tuple[int, int], str] = {}
    for pid, wid, qty, stock, loan, on_loan, allow_negative in rows:
        if stock != qty or loan != on_loan:
            anomalies[(pid, wid)] = f"余额 {qty} 与流水合计 {stock} 不一致"
        elif qty < 0 and not allow_negative and (pid, wid) not in anomalies:
            anomalies[(pid, wid)] = f"不允许负库存的仓库出现负数 {qty}"
    for (p, w_id), reason in sorted(anomalies.items()):
        await freeze(session, p, w_id, reason, now)
    return [Anomaly(p, w_id, r) for (p, w_id), r in sorted(anomalies.items())]
