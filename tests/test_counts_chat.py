"""盘点 in chat: open, add and correct lines (units converted with the whole-number rule), submit; the discrepancy
needs a type per line and a photo before the three-party sign-off; photos are checked and kept once."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.ledger.documents import get_document
from core.models import Approval, Attachment, Document, StockBalance, User
from tests.chat import PNG, Chat, reply
from tests.factories import line, post, seed

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


async def setup(db, settings) -> None:
    async def work(s) -> None:
        await seed(s)  # 张库管 (warehouse), products CREAM (kg) …, warehouses WH1 …
        s.add_all([User(name="李采购", roles="purchasing"), User(name="王销售", roles="sales"),
                   User(name="孙库管", roles="warehouse")])
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")

    await db.write(work)


@pytest.fixture
async def chat(db, settings):
    await setup(db, settings)
    c = Chat(db, settings)
    yield c
    await c.close()


async def on_hand(db) -> Decimal:
    async with db.read() as s:
        return (await s.execute(select(func.sum(StockBalance.qty)))).scalar_one()


async def the_discrepancy(db) -> Document:
    async with db.read() as s:
        number = (await s.scalars(select(Document.number).where(Document.type == "discrepancy"))).one()
        return await get_document(s, number)


async def count_status(db) -> str:
    async with db.read() as s:
        return (await s.scalars(select(Document.status).where(Document.type == "stock_count"))).one()


async def test_a_count_that_matches_creates_nothing(db, settings, chat):
    assert "已开始盘点" in reply(await chat.send("张库管", "盘点 开始 WH1"), "张库管")["text"]
    assert "你在这个仓库已有进行中的盘点" in reply(await chat.send("张库管", "盘点 开始 WH1"), "张库管")["text"]
    assert "已记录第 1 行" in reply(await chat.send("张库管", "盘点 CREAM 12kg"), "张库管")["text"]
    rows = await chat.send("张库管", "盘点 提交")
    assert "账实相符" in reply(rows, "张库管")["text"]
    async with db.read() as s:
        assert (await s.scalar(select(func.count()).select_from(Document).where(Document.type == "discrepancy"))) == 0
    assert await count_status(db) == "posted"  # nothing to settle: the count is closed (the health closure rate)


async def test_lines_are_corrected_not_doubled_and_bad_input_changes_nothing(db, settings, chat):
    await chat.send("张库管", "盘点 开始 WH1")
    await chat.send("张库管", "盘点 CREAM 5")
    body = reply(await chat.send("张库管", "盘点 CREAM 10kg"), "张库管")["text"]
    assert "已记录第 1 行" in body and "共 1 行" in body  # the same product again: corrected
    assert "看不懂数量" in reply(await chat.send("张库管", "盘点 CREAM 十公斤"), "张库管")["text"]
    assert "没有单位" in reply(await chat.send("张库管", "盘点 CREAM 3吨"), "张库管")["text"]
    assert "没有找到" in reply(await chat.send("张库管", "盘点 不存在的东西 3"), "张库管")["text"]
    shown = reply(await chat.send("张库管", "盘点"), "张库管")["text"]
    assert "10kg" in shown and "共 1 行" in shown


async def test_nobody_counts_without_an_open_count_or_the_role(db, settings, chat):
    assert "盘点 开始" in reply(await chat.send("张库管", "盘点 CREAM 3"), "张库管")["text"]
    assert "需要以下角色之一" in reply(await chat.send("王销售", "盘点 开始 WH1"), "王销售")["text"]
    assert "没有仓库「XX」" in reply(await chat.send("张库管", "盘点 开始 XX"), "张库管")["text"]


async def test_a_borrowed_difference_typed_photographed_signed_by_three_and_posted(db, settings, chat):
    """The seed's 账实不符 step 4: the customer borrowed 2 kg; three parties sign; the difference posts once."""
    await chat.send("张库管", "盘点 开始 WH1")
    await chat.send("张库管", "盘点 CREAM 10kg")
    rows = await chat.send("张库管", "盘点 提交")
    card = reply(rows, "张库管")
    assert card["kind"] == "card" and "账面 12 / 实盘 10 / 差异 -2kg" in card["text"]
    assert "送签前还需要" in card["text"] and len(card["buttons"]) == 5  # the five types of line 1
    doc = await the_discrepancy(db)
    # The picture first: without 凭证 it is not kept.
    assert "请先发送「凭证 <单号>」" in reply(await chat.send("张库管", image=PNG), "张库管")["text"]
    # A type by button: 客户借货未还 is the second.
    button = next(b for b in card["buttons"] if "客户借货未还" in b["label"])
    after = reply(await chat.send("张库管", click=button["key"]), "张库管")
    assert "客户借货未还" in after["text"] and "还没有凭证照片" in after["text"]
    async with db.read() as s:
        assert (await s.scalar(select(func.count()).select_from(Approval))) == 0  # not yet to sign-off
    assert "凭证照片" in reply(await chat.send("张库管", f"凭证 {doc.number}"), "张库管")["text"]
    rows = await chat.send("张库管", image=PNG)
    assert "已保存凭证照片" in reply(rows, "张库管")["text"]
    asked = {r["to"] for r in rows if r["kind"] == "card" and r.get("buttons")}
    assert {"李采购", "王销售", "孙库管"} <= asked  # each role's holders get the card with buttons
    shown = {r["to"]: r for r in rows if r["kind"] == "image"}  # and the evidence itself, not only its count
    assert {"李采购", "王销售", "孙库管"} <= shown.keys()
    assert base64.b64decode(shown["李采购"]["png"]) == PNG and f"{doc.number} 凭证照片 1/1" in shown["李采购"]["title"]
    for who in ("张库管", "李采购"):
        await chat.send(who, f"同意 {doc.number}")
    assert await on_hand(db) == Decimal(12)
    assert await count_status(db) == "submitted"  # open until its discrepancy posts
    rows = await chat.send("王销售", f"同意 {doc.number}")
    assert "全部签核通过，已过账" in reply(rows, "王销售")["title"]
    assert await on_hand(db) == Decimal(10)
    assert await count_status(db) == "posted"  # the discrepancy's posting closed the count
    detail = reply(await chat.send("张库管", f"单据 {doc.number}"), "张库管")["text"]
    assert "已过账" in detail and "凭证照片 1 张" in detail and "关联单据：盘点" in detail


async def test_a_photo_too_big_or_not_a_picture_is_refused_and_nothing_changes(db, settings, chat):
    await chat.send("张库管", "盘点 开始 WH1")
    await chat.send("张库管", "盘点 CREAM 10")
    await chat.send("张库管", "盘点 提交")
    doc = await the_discrepancy(db)
    await chat.send("张库管", f"凭证 {doc.number}")
    assert "不是 PNG 或 JPEG" in reply(await chat.send("张库管", image=b"GIF89a" + b"\x00" * 10), "张库管")["text"]
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024)
    assert "图片太大" in reply(await chat.send("张库管", image=big), "张库管")["text"]
    async with db.read() as s:
        assert (await s.scalar(select(func.count()).select_from(Attachment))) == 0
    await chat.send("张库管", image=JPEG)
    await chat.send("张库管", image=JPEG)  # the same photo again: kept once
    async with db.read() as s:
        kept = (await s.execute(select(Attachment.content_type, Attachment.size))).all()
    assert kept == [("image/jpeg", len(JPEG))]


async def test_the_card_warns_when_stock_moved_after_the_count(db, settings, chat):
    await chat.send("张库管", "盘点 开始 WH1")
    await chat.send("张库管", "盘点 CREAM 10")
    await chat.send("张库管", "盘点 提交")
    doc = await the_discrepancy(db)

    async def issue(s) -> None:
        await post(s, settings, "sales_issue", [line("CREAM", 1, "kg")], warehouse="WH1", customer="C2")

    await db.write(issue)
    body = reply(await chat.send("张库管", f"差异 {doc.number} 1 自然损耗"), "张库管")["text"]
    assert "盘点后库存有变动：账面现为 11kg（盘点时 12）" in body and "差异现为 -1kg" in body


async def test_edits_are_refused_while_signing(db, settings, chat):
    await chat.send("张库管", "盘点 开始 WH1")
    await chat.send("张库管", "盘点 CREAM 10")
    await chat.send("张库管", "盘点 提交")
    doc = await the_discrepancy(db)
    await chat.send("张库管", f"差异 {doc.number} 1 损坏")
    await chat.send("张库管", f"凭证 {doc.number}")
    await chat.send("张库管", image=PNG)
    assert "正在会签" in reply(await chat.send("张库管", f"差异 {doc.number} 1 其他"), "张库管")["text"]
    assert "找不到单据 X" in reply(await chat.send("张库管", "差异 X 1 损坏"), "张库管")["text"]
