"""The demo's waiting sign-offs: a count discrepancy for the three roles and a loss for the manager, decided in chat."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from core.importer import load_demo
from core.ledger.documents import get_document
from core.models import Document, Product, StockBalance, Warehouse
from core.models.approvals import Attachment
from tests.chat import Chat, reply


@pytest.fixture
async def demo(db, settings):
    await db.write(lambda s: load_demo(s, settings))
    c = Chat(db, settings)
    yield c
    await c.close()


async def _numbers(db) -> dict[str, str]:
    async with db.read() as s:
        rows = await s.execute(select(Document.type, Document.number).where(Document.status == "submitted",
                                                                            Document.type.in_(("discrepancy", "loss"))))
        return dict(rows.all())


async def _on_hand(db, sku: str) -> Decimal:
    async with db.read() as s:
        rows = await s.scalars(select(StockBalance.qty).join(Product, Product.id == StockBalance.product_id)
                               .join(Warehouse, Warehouse.id == StockBalance.warehouse_id)
                               .where(Product.sku == sku, Warehouse.code == "CW"))
        return sum(rows, Decimal(0))


def _card(rows: list[dict], user: str, number: str) -> dict:
    cards = [r for r in rows if r["to"] == user and r["kind"] == "card" and number in r["text"]]
    assert len(cards) == 1, rows
    return cards[0]


async def test_the_demo_has_a_count_waiting_for_three_signers_and_a_loss_waiting_for_the_manager(db, demo):
    numbers = await _numbers(db)
    assert set(numbers) == {"discrepancy", "loss"}
    async with db.read() as s:
        disc = await get_document(s, numbers["discrepancy"])
        assert {ln.discrepancy_type for ln in disc.lines} == {"客户借货未还", "损坏"}
        assert await s.scalar(select(Attachment.content_type).where(Attachment.document_id == disc.id)) == "image/png"
    for signer in ("李采购", "刘库管", "赵销售"):
        card = _card(await demo.send(signer, "待办"), signer, numbers["discrepancy"])
        assert [b["label"] for b in card["buttons"]] == ["同意", "驳回"]
    assert not [r for r in await demo.send("李采购", "待办") if r["kind"] == "card" and numbers["loss"] in r["text"]]
    card = _card(await demo.send("陈经理", "待办"), "陈经理", numbers["loss"])
    assert "低筋面粉" in card["text"]


async def test_a_newcomer_can_approve_both_in_the_console(db, demo):
    numbers = await _numbers(db)
    flour, boxes = await _on_hand(db, "RM-FLOUR-LOW"), await _on_hand(db, "PK-BOX8")
    card = _card(await demo.send("陈经理", "待办"), "陈经理", numbers["loss"])
    rows = await demo.send("陈经理", click=card["buttons"][0]["key"])
    assert "已过账" in reply(rows, "陈经理")["title"]
    assert await _on_hand(db, "RM-FLOUR-LOW") == flour - 5
    for signer in ("李采购", "刘库管", "赵销售"):
        card = _card(await demo.send(signer, "待办"), signer, numbers["discrepancy"])
        rows = await demo.send(signer, click=card["buttons"][0]["key"])
    assert "已过账" in reply(rows, "赵销售")["title"]
    assert await _on_hand(db, "PK-BOX8") == boxes - 20
    async with db.read() as s:
        assert (await get_document(s, numbers["discrepancy"])).status == "posted"
