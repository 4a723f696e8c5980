"""销售订单 → 发货 (scanned, or exact barcode + batch on the console) → receivable; 退货 reverses it."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.ledger.documents import get_document
from core.models import Batch, Document, FinanceEntry, StockBalance, User
from tests.chat import Chat, reply
from tests.factories import line, post, seed

NOW = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)


@pytest.fixture
async def chat(db, settings):
    async def work(s) -> None:
        await seed(s)  # WH1 central, S01/S02 stores, C1 strategic, C2, 张库管 (warehouse)
        s.add(User(name="赵销售", roles="sales", department="销售部"))
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg", batch="CR1")], warehouse="WH1",
                   supplier="SUP1")

    await db.write(work)
    c = Chat(db, settings, NOW)
    yield c
    await c.close()


async def on_hand(db, batch: str = "CR1") -> Decimal:
    async with db.read() as s:
        return await s.scalar(select(func.sum(StockBalance.qty)).join(Batch, Batch.id == StockBalance.batch_id)
                              .where(Batch.code == batch))


async def receivable(db) -> Decimal:
    async with db.read() as s:
        rows = await s.scalars(select(FinanceEntry.amount).where(FinanceEntry.kind == "receivable"))
        return sum(rows, Decimal(0))


async def order(chat, customer: str = "C2", qty: str = "5", when: str = "明天", price: str = "45") -> str:
    text = reply(await chat.send("赵销售", f"销售订单 {customer} CREAM {qty} {when} {price}"), "赵销售")["text"]
    assert text.startswith("已登记销售订单 XS"), text
    return re.search(r"XS\d+", text)[0]


async def test_an_order_then_a_scanned_shipment_posts_the_issue_and_its_receivable(db, chat):
    number = await order(chat)
    started = reply(await chat.send("张库管", f"发货 {number}"), "张库管")["text"]
    assert "还有 1 行待扫码" in started and "待扫 淡奶油" in started
    refused = reply(await chat.send("张库管", f"发货 {number} CREAM CR1"), "张库管")["text"]  # a SKU, not scanned
    assert "必须扫码" in refused and await on_hand(db) == 12
    done = reply(await chat.send("张库管", scan="(01)06900000000011(10)CR1"), "张库管")["text"]
    assert "已发货：销售出库单 CK" in done and "应收 225 元" in done
    assert await on_hand(db) == 7 and await receivable(db) == Decimal(225)
    async with db.read() as s:
        assert (await get_document(s, number)).status == "posted"  # the order is fulfilled
        issue = await s.scalar(select(Document).where(Document.type == "sales_issue"))
        assert [ln.entry for ln in (await get_document(s, issue.number)).lines] == ["scan"]
    again = reply(await chat.send("张库管", f"发货 {number}"), "张库管")["text"]
    assert "已发货或已取消" in again and await on_hand(db) == 7


async def test_on_the_console_the_exact_barcode_and_batch_confirm_a_line(db, chat):
    number = await order(chat)
    await chat.send("张库管", f"发货 {number}")
    done = reply(await chat.send("张库管", f"发货 {number} 6900000000011 CR1"), "张库管")["text"]
    assert "已发货" in done and await on_hand(db) == 7
    async with db.read() as s:
        issue = await s.scalar(select(Document).where(Document.type == "sales_issue"))
        assert [ln.entry for ln in (await get_document(s, issue.number)).lines] == ["text"]


async def test_without_the_scan_rule_a_shipment_posts_at_once(db, settings, chat):
    chat.d.settings = replace(settings, scan_required=frozenset())
    number = await order(chat)
    done = reply(await chat.send("张库管", f"发货 {number}"), "张库管")["text"]
    assert "已发货" in done and await on_hand(db) == 7


async def test_a_strategic_customers_order_reserves_and_bad_input_changes_nothing(db, chat):
    text = reply(await chat.send("赵销售", "销售订单 C1 CREAM 10 明天"), "赵销售")["text"]
    assert "战略客户：已预留 1.5kg" in text
    for bad, says in (("销售订单 C9 CREAM 1 明天", "找不到客户「C9」"),
                      ("销售订单 C2 CREAM 1 2020-01-01", "已经过去"),
                      ("销售订单 C2 CREAM 1 某天", "看不懂交货日期"),
                      ("销售订单 C2 CREAM abc 明天", "看不懂数量"),
                      ("销售订单 C2 CREAM 1e30 明天", "数量"),
                      ("销售订单 C2", "需要客户、商品、数量和交货日期")):
        assert says in reply(await chat.send("赵销售", bad), "赵销售")["text"], bad
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Document).where(Document.type == "sales_order")) == 1
    listed = reply(await chat.send("赵销售", "销售订单"), "赵销售")["text"]
    assert "大客户甲" in listed and "预留 1.5kg" in listed
    assert "需要以下角色之一" in reply(await chat.send("张库管", "销售订单 C2 CREAM 1 明天"), "张库管")["text"]


async def test_a_return_goes_back_into_its_batch_and_reverses_the_receivable(db, settings, chat):
    chat.d.settings = replace(settings, scan_required=frozenset())
    number = await order(chat)
    await chat.send("张库管", f"发货 {number}")
    async with db.read() as s:
        issue = (await s.scalar(select(Document).where(Document.type == "sales_issue"))).number
    too_many = reply(await chat.send("赵销售", f"退货 {issue} CREAM 6"), "赵销售")["text"]
    assert "最多还能退 5kg" in too_many and await on_hand(db) == 7
    done = reply(await chat.send("赵销售", f"退货 {issue} CREAM 2"), "赵销售")["text"]
    assert "冲减应收 90 元" in done and "已标记为已退货" in done
    assert await on_hand(db) == 9 and await receivable(db) == Decimal(135)
    async with db.read() as s:
        assert (await get_document(s, issue)).returned
    left = reply(await chat.send("赵销售", f"退货 {issue} CREAM 4"), "赵销售")["text"]
    assert "最多还能退 3kg" in left
