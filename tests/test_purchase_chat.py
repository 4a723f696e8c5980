"""采购申请 → 采购订单 → 收货 → 应付 in chat: the engine's suggestion and its why, the manager's sign-off placing the
order and telling the purchaser, partial receipts with exact stock and payable, the over-receipt rule, bad input
changing nothing, two receipts of one order at once, and the demo's waiting request and open order."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

import pytest
from sqlalchemy import func, select, update

from core.importer import load_demo
from core.ledger import purchasing
from core.ledger.doctypes import MANAGER
from core.ledger.documents import get_document
from core.models import Document, DocumentLine, FinanceEntry, Product, StockBalance, StockMove, User
from core.replenish.suggest import suggest
from core.storage import Database
from core.types import fq
from tests.chat import Chat, reply
from tests.conftest import test_database_url
from tests.factories import line, seed
from tests.ledger_history import daily_sales, dated, local

# An hour from now on a fixed minute: after the setup's postings (no back-dating).
NOW = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)


def today(settings):
    return NOW.astimezone(settings.timezone).date()


async def setup(db, settings) -> None:
    """seed() (张库管, WH1, CREAM/MILK/SUGAR, SUP1) with 李采购 as sugar's purchaser, 陈经理, 王销售 and a finance
    holder; sugar (kg, 袋 of 25, MOQ 50, pack 25) received 30 days ago at 150/袋 + 9% tax and sold 5 kg a day since."""

    async def work(s) -> None:
        await seed(s)
        s.add_all([User(name="李采购", roles="purchasing", department="采购部"),
                   User(name="陈经理", roles="manager", department="管理部"),
                   User(name="王销售", roles="sales", department="销售部"),
                   User(name="钱财务", roles="finance", department="财务部")])
        await s.flush()
        buyer = await s.scalar(select(User.id).where(User.name == "李采购"))
        await s.execute(update(Product).where(Product.sku == "SUGAR").values(
            moq=Decimal(50), pack_size=Decimal(25), lead_time_days=5, buffer_days=2, purchaser_id=buyer))
        t = today(settings)
        await dated(s, settings, "purchase_receipt", [line("SUGAR", 8, "袋", unit_price="150", tax_rate="0.09")],
                    local(settings, t - timedelta(days=30)), warehouse="WH1", supplier="SUP1")
        await dated(s, settings, "purchase_receipt", [line("MILK", 2, "箱", batch="M1", expiry=t + timedelta(days=50),
                                                           unit_price="96", tax_rate="0.13")],
                    local(settings, t - timedelta(days=30), 11), warehouse="WH1", supplier="SUP1")
        await daily_sales(s, settings, "SUGAR", "kg", t - timedelta(days=28), t - timedelta(days=1), 5)

    await db.write(work)


@pytest.fixture
async def chat(db, settings):
    await setup(db, settings)
    c = Chat(db, settings, NOW)
    yield c
    await c.close()


def said(rows: list[dict], user: str) -> str:
    return "\n".join(r["text"] for r in rows if r["to"] == user)


async def counts(db) -> tuple[int, int, int, int]:
    """Documents, document lines, stock moves and finance entries: what bad input must leave unchanged."""
    async with db.read() as s:
        return tuple([await s.scalar(select(func.count()).select_from(m))  # type: ignore[return-value]
                      for m in (Document, DocumentLine, StockMove, FinanceEntry)])


async def on_hand(db, sku: str) -> Decimal:
    async with db.read() as s:
        rows = await s.scalars(select(StockBalance.qty).join(Product, Product.id == StockBalance.product_id)
                               .where(Product.sku == sku))
        return sum(rows, Decimal(0))


async def numbers(db, doc_type: str) -> list[str]:
    async with db.read() as s:
        return list(await s.scalars(select(Document.number).where(Document.type == doc_type).order_by(Document.id)))


async def payables(db, number: str) -> Decimal:
    async with db.read() as s:
        doc = await get_document(s, number)
        return await s.scalar(select(func.sum(FinanceEntry.amount)).where(FinanceEntry.document_id == doc.id,
                                                                          FinanceEntry.kind == "payable"))


async def approved_order(chat: Chat, db, text: str = "采购申请 SUGAR 4袋 月度备货") -> str:
    """李采购's request approved by 陈经理: the order's number."""
    await chat.send("李采购", text)
    request = (await numbers(db, "purchase_request"))[-1]
    await chat.send("陈经理", f"同意 {request}")
    return (await numbers(db, "purchase_order"))[-1]


async def test_a_request_without_quantity_is_the_engines_suggestion_with_its_why(db, settings, chat):
    expected = {x.sku: x for x in await suggest(db, today=today(settings), settings=settings, everything=True)}
    sugar = expected["SUGAR"]
    assert sugar.qty > 0 and sugar.qty % 25 == 0  # the engine rounds to the pack: a whole number of 袋
    rows = await chat.send("李采购", "采购申请 白砂糖")
    body = reply(rows, "李采购")["text"]
    number = (await numbers(db, "purchase_request"))[0]
    bags = sugar.qty / 25
    assert f"采购申请 {number} 已提交" in body and "等待 主管" in body
    assert f"申请 {fq(bags)}袋（{fq(sugar.qty)}kg），即补货引擎的建议量" in body, body
    # the why: forecast, lead time, buffer, reservations, rounding to MOQ and pack — as the engine gives it
    for part in ("预测需求", "提前期 5 天", "缓冲 2 天", "安全库存", "战略客户预留", "按起订量 50、包装 25 取整"):
        assert part in body, (part, body)
    assert "供应商：乳品供应商（SUP1）" in body and "单价 150/袋" in body and "税率 9%" in body
    card = [r for r in rows if r["to"] == "陈经理" and r["kind"] == "card"]
    assert len(card) == 1 and number in card[0]["text"] and "预测需求" in card[0]["text"]
    assert [b["label"] for b in card[0]["buttons"]] == ["同意", "驳回"]
    async with db.read() as s:
        doc = await get_document(s, number)
        assert doc.status == "submitted" and doc.supplier_id is not None
        (ln,) = doc.lines
        assert (ln.qty, ln.unit, ln.stock_qty, ln.unit_price, ln.tax_rate) == (
            bags, "袋", sugar.qty, Decimal(150), Decimal("0.09"))
    todo = await chat.send("陈经理", "待办")
    assert any(r["kind"] == "card" and number in r["text"] for r in todo)


async def test_a_request_with_a_quantity_keeps_the_suggestion_beside_it_and_one_open_request_per_product(
        db, settings, chat):
    body = reply(await chat.send("李采购", "采购申请 SUGAR 30kg 试做新品"), "李采购")["text"]
    assert "申请 30kg" in body and "补货引擎建议：" in body and "建议原因：" in body
    assert "原因：试做新品" in body and "低于起订量 50kg" in body and "不是包装量 25kg 的整数倍" in body
    first = (await numbers(db, "purchase_request"))[0]
    before = await counts(db)
    again = reply(await chat.send("张库管", "采购申请 SUGAR 2袋"), "张库管")["text"]
    assert f"已有进行中的采购申请 {first}" in again and f"撤回 {first}" in again
    assert await counts(db) == before
    # withdrawn, it no longer blocks; resubmitting it while another is open is refused by the same rule
    await chat.send("李采购", f"撤回 {first}")
    assert "已提交" in reply(await chat.send("张库管", "采购申请 SUGAR 2袋"), "张库管")["text"]
    refused = reply(await chat.send("李采购", f"重新提交 {first}"), "李采购")["text"]
    assert "已有进行中的采购申请" in refused
    async with db.read() as s:
        assert (await get_document(s, first)).status == "draft"


async def test_approve_order_two_partial_receipts_stock_and_payable_exact(db, settings, chat):
    stock0 = await on_hand(db, "SUGAR")
    await chat.send("李采购", "采购申请 SUGAR 4袋 月度备货")
    request = (await numbers(db, "purchase_request"))[0]
    rows = await chat.send("陈经理", f"同意 {request}")
    (order,) = await numbers(db, "purchase_order")
    assert f"已生成采购订单 {order}" in said(rows, "陈经理") and "已通知采购 李采购" in said(rows, "陈经理")
    told = said(rows, "李采购")
    assert f"采购申请 {request} 已批准，已生成采购订单 {order}" in told and f"收货 {order}" in told
    async with db.read() as s:
        req, po = await get_document(s, request), await get_document(s, order)
        assert req.status == "posted" and po.status == "posted" and po.ref_document_id == req.id
        assert po.supplier_id == req.supplier_id and po.created_by_id == req.created_by_id
        assert [(ln.qty, ln.unit, ln.stock_qty, ln.unit_price) for ln in po.lines] == [
            (Decimal(4), "袋", Decimal(100), Decimal(150))]
    listed = reply(await chat.send("张库管", "采购单"), "张库管")["text"]
    assert order in listed and "订购 4袋（100kg），已收 0kg，未收 4袋（100kg）" in listed

    first = reply(await chat.send("张库管", f"收货 {order} SUGAR 40kg"), "张库管")["text"]
    assert "累计已收 40kg，未收 60kg" in first and "应付 261.60 = 金额 240.00 ×（1 + 税率 9%）" in first, first
    assert "还有未收的商品" in first
    listed = reply(await chat.send("李采购", "采购单"), "李采购")["text"]
    assert "已收 40kg，未收 60kg" in listed
    rows = await chat.send("张库管", f"收货 {order}")  # the rest: 60 kg
    second = reply(rows, "张库管")["text"]
    assert "累计已收 4袋（100kg），已收齐" in second and "应付 392.40 = 金额 360.00" in second, second
    assert f"采购单 {order} 已全部收齐，已关闭" in second
    assert "张库管 已收货" in said(rows, "李采购")  # the purchaser hears of it
    receipts = [n for n in await numbers(db, "purchase_receipt") if n not in await _setup_receipts(db)]
    assert len(receipts) == 2
    assert await on_hand(db, "SUGAR") == stock0 + 100
    assert [await payables(db, n) for n in receipts] == [Decimal("261.6"), Decimal("392.4")]
    async with db.read() as s:
        po = await get_document(s, order)
        for n in receipts:
            r = await get_document(s, n)
            assert r.ref_document_id == po.id and r.supplier_id == po.supplier_id and r.status == "posted"
    assert "没有未收齐的采购单" in reply(await chat.send("张库管", "采购单"), "张库管")["text"]
    before = await counts(db)
    closed = reply(await chat.send("张库管", f"收货 {order} SUGAR 1kg"), "张库管")["text"]
    assert "已全部收齐（已关闭），不能再收货" in closed and "处理办法" in closed
    assert await counts(db) == before


async def _setup_receipts(db) -> list[str]:
    async with db.read() as s:
        return list(await s.scalars(select(Document.number).where(Document.type == "purchase_receipt",
                                                                  Document.ref_document_id.is_(None))))


async def test_over_receipt_is_refused_unless_within_the_configured_rate(db, settings, chat):
    order = await approved_order(chat, db)
    before, stock0 = await counts(db), await on_hand(db, "SUGAR")
    over = reply(await chat.send("张库管", f"收货 {order} SUGAR 101kg"), "张库管")["text"]
    assert "超收" in over and "订购 100kg，已收 0kg，本次 101kg" in over and "不允许超收" in over
    assert "最多还能收 100kg" in over and "over_receipt_rate" in over
    assert await counts(db) == before and await on_hand(db, "SUGAR") == stock0
    chat.d.settings = replace(settings, over_receipt_rate=Decimal("0.05"))
    assert "累计已收 60kg" in reply(await chat.send("张库管", f"收货 {order} SUGAR 60kg"), "张库管")["text"]
    over = reply(await chat.send("张库管", f"收货 {order} SUGAR 46kg"), "张库管")["text"]
    assert "允许超收 5%，最多 105kg" in over and "最多还能收 45kg" in over
    body = reply(await chat.send("张库管", f"收货 {order} SUGAR 45kg"), "张库管")["text"]
    assert "累计已收 105kg，已收齐" in body and "已全部收齐，已关闭" in body
    assert await on_hand(db, "SUGAR") == stock0 + 105


async def test_bad_input_is_answered_with_the_rule_and_its_fix_and_changes_nothing(db, settings, chat):
    order = await approved_order(chat, db)
    milk_order = await approved_order(chat, db, "采购申请 MILK 3箱")
    before = await counts(db)
    t = today(settings)
    cases = {
        ("李采购", "采购申请 不存在的东西 3"): "没有找到与「不存在的东西」匹配的商品",
        ("李采购", "采购申请 CREAM 1e30"): "不能用科学计数法",
        ("李采购", "采购申请 CREAM 99999999999"): "过大",
        ("李采购", "采购申请 MILK 3.5箱"): "不是整数",
        ("李采购", "采购申请 CREAM 0"): "必须大于 0",
        ("李采购", "采购申请 CREAM 5kg 单价 很贵"): "看不懂单价",
        ("李采购", "采购申请 SUGAR 5kg 供应商 无此公司"): "没有找到供应商「无此公司」",
        ("张库管", f"收货 {order} CREAM 5kg"): f"商品「CREAM」不在采购单 {order} 上",
        ("张库管", f"收货 {order} SUGAR 1e30"): "不能用科学计数法",
        ("张库管", f"收货 {milk_order} MILK 3.5箱 M2 {t + timedelta(days=60)}"): "不是整数",
        ("张库管", f"收货 {milk_order} MILK 1箱 M2 {t - timedelta(days=1)}"): "已过",
        ("张库管", f"收货 {milk_order} MILK 1箱 M2 2027-02-30"): "不存在",
        ("张库管", f"收货 {milk_order} MILK 1箱"): "缺少批次号",
        ("张库管", f"收货 {milk_order} MILK 1箱 M9"): "缺少到期日",
        ("张库管", f"收货 {milk_order}"): "按批次管理，收货要写批次和到期日",
        ("张库管", "收货 CG19990101001"): "找不到单据",
        ("张库管", f"收货 {(await numbers(db, 'purchase_request'))[0]}"): "不是采购订单",
        ("王销售", f"收货 {order}"): "需要以下角色之一",
        ("王销售", "采购申请 SUGAR 2袋"): "需要以下角色之一",
    }
    for (user, message), expected in cases.items():
        answer = reply(await chat.send(user, message), user)["text"]
        assert expected in answer, (message, answer)
        assert "处理办法" in answer or "需要以下角色" in answer, (message, answer)
    assert await counts(db) == before
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Document).where(
            Document.type == "purchase_request", Document.status == "submitted")) == 0
    # a new product without any receipt: no supplier known until one is named
    no_supplier = reply(await chat.send("李采购", "采购申请 CREAM 5kg"), "李采购")["text"]
    assert "不知道向哪家供应商采购" in no_supplier
    body = reply(await chat.send("李采购", "采购申请 CREAM 5kg 新品 供应商 SUP1 单价 45"), "李采购")["text"]
    assert "已提交" in body and "单价 45/kg" in body and "金额 225.00" in body


async def test_a_request_above_the_second_level_needs_finance_before_the_order_is_placed(db, settings, chat):
    chat.d.settings = replace(settings, approvals=MappingProxyType(
        {"purchase_request": replace(MANAGER, second_above=Decimal(500))}))
    rows = await chat.send("李采购", "采购申请 SUGAR 4袋")  # 4 × 150 = 600 > 500
    assert "等待 主管、财务 依次审批" in reply(rows, "李采购")["text"]
    request = (await numbers(db, "purchase_request"))[0]
    rows = await chat.send("陈经理", f"同意 {request}")
    assert any(r["to"] == "钱财务" and r["kind"] == "card" for r in rows) and not await numbers(db, "purchase_order")
    rows = await chat.send("钱财务", f"同意 {request}")
    (order,) = await numbers(db, "purchase_order")
    assert f"已生成采购订单 {order}" in said(rows, "李采购")


def meet_at_the_order_lock(monkeypatch, db: Database, parties: int = 2) -> None:
    """On PostgreSQL, hold each receipt inside its transaction until all `parties` have started theirs, so they
    really race for the order's row lock (on SQLite one write transaction holds the database lock anyway)."""
    if db.is_sqlite:
        return
    real, arrived, met = purchasing.get_document, [], asyncio.Event()

    async def meeting(session, number, *args, **kw):
        if kw.get("lock"):
            await session.execute(select(1))
            arrived.append(1)
            if len(arrived) == parties:
                met.set()
            await asyncio.wait_for(met.wait(), 10)
        return await real(session, number, *args, **kw)

    monkeypatch.setattr(purchasing, "get_document", meeting)


async def test_two_receipts_of_one_order_at_once_never_over_receive(db, settings, chat, tmp_path, monkeypatch):
    order = await approved_order(chat, db)
    stock0 = await on_hand(db, "SUGAR")
    await db.write(lambda s: _add_user(s, "孙库管", "warehouse"))
    other = Database(test_database_url(tmp_path))
    first, second = Chat(db, settings, NOW), Chat(other, settings, NOW)
    try:
        meet_at_the_order_lock(monkeypatch, db)
        a, b = await asyncio.gather(first.send("张库管", f"收货 {order} SUGAR 60kg"),
                                    second.send("孙库管", f"收货 {order} SUGAR 60kg"))
    finally:
        await first.close()
        await second.close()
        await other.dispose()
    answers = [reply(a, "张库管")["text"], reply(b, "孙库管")["text"]]
    assert sum("已收货" in x for x in answers) == 1, answers
    assert sum("超收" in x and "已收 60kg，本次 60kg" in x for x in answers) == 1, answers
    assert await on_hand(db, "SUGAR") == stock0 + 60
    async with db.read() as s:
        po = await get_document(s, order)
        received = await s.scalar(select(func.sum(DocumentLine.stock_qty)).join(
            Document, Document.id == DocumentLine.document_id).where(Document.ref_document_id == po.id,
                                                                     Document.type == "purchase_receipt"))
    assert received == 60


async def _add_user(s, name: str, roles: str) -> None:
    s.add(User(name=name, roles=roles, department="仓储部"))


async def test_the_demo_has_a_request_waiting_for_the_manager_and_an_open_order(db, settings):
    await db.write(lambda s: load_demo(s, settings))
    c = Chat(db, settings)
    try:
        async with db.read() as s:
            (request,) = await s.scalars(select(Document.number).where(Document.type == "purchase_request",
                                                                       Document.status == "submitted"))
        todo = await c.send("陈经理", "待办")
        cards = [r for r in todo if r["kind"] == "card" and request in r["text"]]
        assert len(cards) == 1 and "淡奶油（RM-CREAM）CW：6桶 × 单价 450 = 金额 2700" in cards[0]["text"]
        assert "原因：中秋蛋糕预订增加" in cards[0]["text"] and cards[0]["buttons"]
        listed = reply(await c.send("李采购", "采购单"), "李采购")["text"]
        assert "未收齐的采购单：1 张" in listed and "已收 8袋（200kg），未收 12袋（300kg）" in listed, listed
        # the demo's order is received in chat like any other
        (order,) = [n for n in await numbers(db, "purchase_order") if n in listed]  # the history's are received
        body = reply(await c.send("王库管", f"收货 {order}"), "王库管")["text"]
        assert "已全部收齐，已关闭" in body
    finally:
        await c.close()
