"""The demo's documents waiting for sign-off: a count discrepancy for the three roles and a loss for the manager."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.approvals import engine, evidence
from core.approvals.engine import Actor
from core.approvals.policy import policy_for
from core.config import Settings
from core.ledger import count_sheet
from core.ledger.documents import LineInput, create_document
from core.messaging import people
from core.models import Product, StockBalance, Warehouse

PHOTO = Path(__file__).parent.parent / "demo" / "count-photo.png"


async def _actor(session: AsyncSession, name: str) -> Actor:
    person = await people.by_name(session, name)
    assert person is not None, name  # the demo's users.csv has them
    return Actor(person, "console", f"demo:{name}")


async def _book(session: AsyncSession, sku: str, warehouse: str) -> Decimal:
    rows = await session.scalars(
        select(StockBalance.qty)
        .join(Product, Product.id == StockBalance.product_id).join(Warehouse, Warehouse.id == StockBalance.warehouse_id)
        .where(Product.sku == sku, Warehouse.code == warehouse))
    return sum(rows, Decimal(0))


async def seed_pending(session: AsyncSession, settings: Settings, now: datetime) -> list[str]:
    """王库管's count of CW (two lines short: 20 cake boxes lent without a slip, 5 crushed) with the types and a
    photo, waiting for 刘库管 / 李采购 / a sales holder; 刘库管's loss of low-gluten flour waiting for 陈经理.
    Returns the two document numbers."""
    counter = await _actor(session, "王库管")
    count, _ = await count_sheet.open_count(session, settings, counter.person.id, "CW", now - timedelta(hours=3))
    short = {"PK-BOX8": (Decimal(20), "客户借货未还", "婚庆公司活动前临时借走 20 个，未开借条"),
             "PK-BOX6": (Decimal(5), "损坏", "搬运时压坏 5 个")}
    for sku, (less, _kind, _note) in short.items():
        product = await session.scalar(select(Product).where(Product.sku == sku))
        assert product is not None
        book = await _book(session, sku, "CW")
        await count_sheet.set_line(session, settings, count, product, book - less, product.stock_unit, "",
                                   now - timedelta(hours=2, minutes=40))
    disc = await count_sheet.submit_count(session, settings, count, now - timedelta(hours=2, minutes=30))
    assert disc is not None
    by_sku = {ln.product_id: ln.line_no for ln in disc.lines}
    for sku, (_less, kind, note) in short.items():
        pid = await session.scalar(select(Product.id).where(Product.sku == sku))
        await evidence.set_type(session, disc, by_sku[pid], kind, note)
    await evidence.attach_photo(session, disc, PHOTO.read_bytes(), counter.person.id, "console",
                                now - timedelta(hours=2, minutes=20))
    policy = policy_for(settings, disc.type)
    assert policy is not None
    await engine.open_round(session, disc, policy, counter, now - timedelta(hours=2, minutes=15))

    clerk = await _actor(session, "刘库管")
    loss = await create_document(session, settings, "loss", [LineInput("RM-FLOUR-LOW", 5, "kg")], warehouse="CW",
                                 created_by="刘库管", note="面粉袋受潮结块，5 kg 不能再用",
                                 now=now - timedelta(hours=1, minutes=10))
    await engine.submit_for_approval(session, settings, loss, clerk, now - timedelta(hours=1))
    return [disc.number, loss.number]
