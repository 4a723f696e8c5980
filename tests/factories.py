"""Small master-data factories for ledger tests."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.ledger.documents import LineInput, create_document, post_document, submit_document
from core.models import Customer, Document, Product, Supplier, User, Warehouse
from core.storage import Database


async def seed(session: AsyncSession) -> None:
    """A bakery: central warehouse (strict), a store allowing negatives down to -5, cream, bottles."""
    session.add_all(
        [
            Warehouse(code="WH1", name="中央仓", allow_negative=False, kind="central"),
            Warehouse(code="S01", name="一号门店", allow_negative=True, negative_floor=Decimal(-5), kind="store"),
            Warehouse(code="S02", name="二号门店", allow_negative=False, kind="store"),
            Product(sku="CREAM", name="淡奶油", barcode="6900000000011", category="原料", stock_unit="kg",
                    purchase_unit="kg", purchase_factor=1, shelf_life_days=30),
            Product(sku="MILK", name="牛奶", barcode="6900000000028", category="原料", stock_unit="瓶",
                    purchase_unit="箱", purchase_factor=24, batch_tracked=True, shelf_life_days=60),
            Product(sku="SUGAR", name="白砂糖", category="原料", stock_unit="kg", purchase_unit="袋",
                    purchase_factor=25),
            Customer(code="C1", name="大客户甲", strategic=True),
            Customer(code="C2", name="散客乙", strategic=False),
            Supplier(code="SUP1", name="乳品供应商"),
            User(name="张库管", wecom_user_id="zhang", department="仓储部", roles="warehouse"),
        ]
    )
    await session.flush()


async def seed_stocked(session: AsyncSession, settings: Settings) -> None:
    """seed() plus 12 kg of cream received into WH1 (what the chat-server tests and benchmark query)."""
    await seed(session)
    await post(session, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")


async def seed_chat_users(db: Database, settings: Settings, wecom_ids: Iterable[str] = (), *,
                          manager: bool = False) -> None:
    """seed_stocked() plus a registered warehouse user per WeCom id (and 李经理, a manager, if asked), committed:
    what the chat-server tests and benchmark talk to."""

    async def work(s: AsyncSession) -> None:
        await seed_stocked(s, settings)
        s.add_all(User(name=f"用户{u}", wecom_user_id=u, department="仓储部", roles="warehouse") for u in wecom_ids)
        if manager:
            s.add(User(name="李经理", department="管理部", roles="manager"))

    await db.write(work)


async def post(session: AsyncSession, settings: Settings, doc_type: str, lines: list[LineInput],
               **kw: object) -> Document:
    """Create, submit and post a document in one go."""
    doc = await create_document(session, settings, doc_type, lines, **kw)  # type: ignore[arg-type]
    await submit_document(session, settings, doc)
    await post_document(session, settings, doc)
    return doc


def line(sku: str, qty: object, unit: str, **kw: object) -> LineInput:
    """Shorthand for a LineInput."""
    return LineInput(sku=sku, qty=Decimal(str(qty)), unit=unit, **kw)  # type: ignore[arg-type]
