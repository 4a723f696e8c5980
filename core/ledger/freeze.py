"""Freeze and unfreeze one product in one warehouse, with a freeze-event log; integrity sweep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.ledger.posting import sum_moves
from core.models import Freeze, FreezeEvent, Product, StockBalance, Warehouse, utcnow


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
    """Compare every balance with the sum of its moves; freeze each anomalous pair (smallest scope)."""
    sums = await sum_moves(session)
    anomalies: dict[tuple[int, int], str] = {}
    strict = {w.id for w in await session.scalars(select(Warehouse).where(Warehouse.allow_negative.is_(False)))}
    for bal in await session.scalars(select(StockBalance)):
        moved = sums.get((bal.product_id, bal.warehouse_id, bal.batch_id, "stock"), Decimal(0))
        loaned = sums.get((bal.product_id, bal.warehouse_id, bal.batch_id, "loan"), Decimal(0))
        if moved != bal.qty or loaned != bal.on_loan:
            anomalies[(bal.product_id, bal.warehouse_id)] = f"余额 {bal.qty} 与流水合计 {moved} 不一致"
        elif bal.qty < 0 and bal.warehouse_id in strict:
            anomalies[(bal.product_id, bal.warehouse_id)] = f"不允许负库存的仓库出现负数 {bal.qty}"
    for (p, w), reason in sorted(anomalies.items()):
        await freeze(session, p, w, reason, now)
    return [Anomaly(p, w, r) for (p, w), r in sorted(anomalies.items())]
