"""The demo's purchasing: an open purchase order (approved yesterday, 8 of 20 bags received) and a purchase request
waiting for 陈经理, made through the same calls as 采购申请 / 同意 / 收货 in chat."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.approvals import engine
from core.approvals.engine import Actor
from core.config import Settings
from core.ledger import purchasing
from core.ledger.ordering import order_of
from core.messaging import people
from core.models import Product


async def _actor(session: AsyncSession, name: str) -> Actor:
    person = await people.by_name(session, name)
    assert person is not None, name  # the demo's users.csv has them
    return Actor(person, "console", f"demo:{name}")


async def _product(session: AsyncSession, sku: str) -> Product:
    product = await session.scalar(select(Product).where(Product.sku == sku))
    assert product is not None, sku  # the demo's products.csv has it
    return product


async def seed_purchases(session: AsyncSession, settings: Settings, now: datetime) -> list[str]:
    """李采购's request for 20 bags of bread flour, approved by 陈经理 yesterday (its order from 江南粮油, 8 bags
    received by 王库管 this morning, 12 still to come), and 李采购's request for 6 tubs of cream waiting for
    陈经理. Returns the order's and the waiting request's numbers."""
    buyer, manager = await _actor(session, "李采购"), await _actor(session, "陈经理")
    flour = await purchasing.request_purchase(
        session, settings, buyer, await _product(session, "RM-FLOUR-HI"), qty=Decimal(20), unit="袋",
        reason="欧包新品下周上市，高筋面粉备货", now=now - timedelta(hours=26))
    await engine.decide(session, settings, flour.doc.number, manager, approve=True, now=now - timedelta(hours=25))
    order = await order_of(session, flour.doc.id)
    assert order is not None
    await purchasing.receive(session, settings, order.number, [purchasing.ReceiptLine("RM-FLOUR-HI", "8袋")],
                             by="王库管", now=now - timedelta(hours=5))
    cream = await purchasing.request_purchase(
        session, settings, buyer, await _product(session, "RM-CREAM"), qty=Decimal(6), unit="桶",
        reason="中秋蛋糕预订增加，淡奶油备货", now=now - timedelta(minutes=40))
    return [order.number, cream.doc.number]
