"""Approvals in chat: a loss approved by the manager posts it; a count discrepancy needs three different people
holding warehouse, purchasing and sales; races, double clicks, reject → resubmit, withdraw, transfer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.dispatch import store_event
from bot.inbound import Inbound
from core.approvals.engine import Actor, open_round, submit_for_approval
from core.approvals.evidence import attach_photo
from core.approvals.policy import policy_for
from core.ledger.documents import create_document, get_document, submit_document
from core.ledger.freeze import freeze
from core.messaging.people import by_name
from core.models import (
    ApprovalEvent,
    ApprovalStep,
    Document,
    Product,
    StockBalance,
    StockMove,
    User,
    Warehouse,
)
from tests.chat import PNG, Chat, reply
from tests.factories import line, post, seed

# Decisions an hour from now: after the setup's postings (no back-dating), on a fixed minute for the texts.
NOW = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
AT = f"{NOW.astimezone(ZoneInfo('Asia/Shanghai')):%m-%d %H:%M}"

USERS = [("陈经理", "manager"), ("赵主管", "manager"), ("李采购", "purchasing"), ("王销售", "sales"),
         ("钱多面", "warehouse,purchasing"), ("孙库管", "warehouse")]


async def setup(db, settings) -> None:
    async def work(s) -> None:
        await seed(s)  # 张库管 (warehouse) and the masters
        s.add_all(User(name=n, roles=r, department="测试") for n, r in USERS)
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")

    await db.write(work)


async def submitted(db, settings, doc_type: str, lines, by: str = "张库管", **kw) -> str:
    """A document of `doc_type` created and submitted for approval by `by`; its number."""

    async def work(s) -> str:
        requester = await by_name(s, by)
        doc = await create_document(s, settings, doc_type, lines, created_by=by, **kw)
        await submit_for_approval(s, settings, doc, Actor(requester, "console", "setup"), NOW)
        return doc.number

    return await db.write(work)


async def discrepancy(db, settings) -> str:
    """A count of 10 kg cream in WH1 (book 12): its discrepancy document, submitted for the three signers."""

    async def work(s) -> str:
        requester = await by_name(s, "张库管")
        count = await create_document(s, settings, "stock_count", [line("CREAM", 0, "kg", counted_qty=10)],
                                      warehouse="WH1", created_by="张库管")
        await submit_document(s, settings, count, NOW)
        number = (await s.scalars(select(Document.number).where(Document.type == "discrepancy"))).one()
        doc = await get_document(s, number)
        for ln in doc.lines:
            ln.discrepancy_type = "客户借货未还"
        await attach_photo(s, doc, PNG, requester.id, "console", NOW)
        await open_round(s, doc, policy_for(settings, doc.type), Actor(requester, "console", "setup"), NOW)
        return doc.number

    return await db.write(work)


async def moves(db) -> int:
    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(StockMove))).scalar_one()


async def cream_on_hand(db) -> Decimal:
    async with db.read() as s:
        return (await s.execute(select(func.sum(StockBalance.qty)))).scalar_one()


@pytest.fixture
async def chat(db, settings):
    await setup(db, settings)
    c = Chat(db, settings, NOW)
    yield c
    await c.close()


async def test_a_loss_waits_for_the_manager_and_posts_on_approval(db, settings, chat):
    number = await submitted(db, settings, "loss", [line("CREAM", 2, "kg")], warehouse="WH1")
    todo = await chat.send("陈经理", "待办")
    card = [r for r in todo if r["kind"] == "card"]
    assert len(card) == 1 and number in card[0]["text"] and [b["label"] for b in card[0]["buttons"]] == ["同意", "驳回"]
    assert (await chat.send("张库管", "待办"))[0]["text"] == "你目前没有待签核的单据。"  # the requester: nothing
    before = await moves(db)
    rows = await chat.send("陈经理", click=card[0]["buttons"][0]["key"])
    assert "全部签核通过，已过账" in reply(rows, "陈经理")["title"]
    assert reply(rows, "张库管")["kind"] == "card"  # the requester hears it
    assert await moves(db) == before + 1 and await cream_on_hand(db) == Decimal(10)
    async with db.read() as s:
        assert (await get_document(s, number)).status == "posted"
    again = await chat.send("陈经理", click=card[0]["buttons"][0]["key"])  # a fourth click after completion
    assert "已审批通过并过账" in reply(again, "陈经理")["text"] and await moves(db) == before + 1


async def test_a_user_without_the_role_is_refused_with_the_role_named(db, settings, chat):
    number = await submitted(db, settings, "loss", [line("CREAM", 2, "kg")], warehouse="WH1")
    rows = await chat.send("李采购", f"同意 {number}")
    assert "主管" in reply(rows, "李采购")["text"]
    async with db.read() as s:
        assert (await get_document(s, number)).status == "submitted"


async def test_the_requester_cannot_approve_their_own_document(db, settings, chat):
    number = await submitted(db, settings, "loss", [line("CREAM", 2, "kg")], warehouse="WH1", by="陈经理")
    rows = await chat.send("陈经理", f"同意 {number}")
    assert "是你提交的，不能由你自己审批" in reply(rows, "陈经理")["text"]
    rows = await chat.send("赵主管", f"同意 {number}")
    assert "已过账" in reply(rows, "赵主管")["title"]


async def test_the_same_click_three_times_decides_once(db, settings, chat):
    number = await submitted(db, settings, "loss", [line("CREAM", 2, "kg")], warehouse="WH1")
    card = next(r for r in await chat.send("陈经理", "待办") if r["kind"] == "card")
    key = f"console:click-{number}"
    first = await chat.send("陈经理", click=card["buttons"][0]["key"], key=key)
    for _ in range(2):  # the platform retries the very same callback: stored once, handled once
        event = Inbound("console", "陈经理", key, NOW, action=card["buttons"][0]["key"])
        assert not await chat.db.write(lambda s, e=event: store_event(s, e))
        await chat.d.handle(event)
    assert await chat.queued(key) == first
    async with db.read() as s:
        events = (await s.execute(select(ApprovalEvent.action))).scalars().all()
    assert events.count("approve") == 1 and events.count("posted") == 1


async def test_three_party_sign_off_needs_three_different_people(db, settings, chat):
    number = await discrepancy(db, settings)
    assert await cream_on_hand(db) == Decimal(12)
    rows = await chat.send("钱多面", f"同意 {number}")  # warehouse and purchasing: signs as warehouse …
    assert "库管" in reply(rows, "钱多面")["title"]
    rows = await chat.send("钱多面", f"同意 {number}")  # … and cannot sign purchasing as well
    assert "必须由另一个人签核" in reply(rows, "钱多面")["text"] or "已于" in reply(rows, "钱多面")["text"]
    rows = await chat.send("张库管", f"同意 {number}")  # warehouse is taken: told who and when
    assert f"钱多面 已于 {AT} 通过" in reply(rows, "张库管")["text"]
    assert "已过账" not in reply(await chat.send("李采购", f"同意 {number}"), "李采购")["title"]
    assert await cream_on_hand(db) == Decimal(12)  # two of three: nothing posted
    rows = await chat.send("王销售", f"同意 {number}")
    assert "全部签核通过，已过账" in reply(rows, "王销售")["title"]
    assert await cream_on_hand(db) == Decimal(10)
    async with db.read() as s:
        signers = (await s.execute(select(ApprovalStep.role, User.name)
                                   .join(User, User.id == ApprovalStep.decided_by_id)
                                   .order_by(ApprovalStep.seq))).all()
    assert signers == [("warehouse", "钱多面"), ("purchasing", "李采购"), ("sales", "王销售")]


async def test_three_approvers_clicking_at_once_post_exactly_once(db, settings):
    await setup(db, settings)
    number = await discrepancy(db, settings)
    chats = [Chat(db, settings, NOW) for _ in range(3)]
    results = await asyncio.gather(*(c.send(u, f"同意 {number}") for c, u in zip(chats, ("张库管", "李采购", "王销售"),
                                                                                   strict=True)))
    titles = [r["title"] for rows in results for r in rows if r["to"] in ("张库管", "李采购", "王销售")
              and r["kind"] == "card" and r.get("title")]
    assert sum("全部签核通过，已过账" in t for t in titles) >= 1, results
    assert await cream_on_hand(db) == Decimal(10)  # posted once: -2 kg, not -4 or -6
    async with db.read() as s:
        assert (await get_document(s, number)).status == "posted"
        assert (await s.execute(select(func.count()).select_from(ApprovalEvent)
                                .where(ApprovalEvent.action == "posted"))).scalar_one() == 1
    for c in chats:
        await c.close()


async def test_reject_needs_a_reason_then_fix_and_resubmit_opens_a_new_round(db, settings, chat):
    number = await submitted(db, settings, "loss", [line("CREAM", 2, "kg")], warehouse="WH1")
    assert "必须填写原因" in reply(await chat.send("陈经理", f"驳回 {number}"), "陈经理")["text"]
    rows = await chat.send("陈经理", f"驳回 {number} 数量不对，请核实")
    assert "驳回" in reply(rows, "陈经理")["title"]
    assert any("数量不对，请核实" in r["text"] and r["to"] == "张库管" for r in rows)
    async with db.read() as s:
        assert (await get_document(s, number)).status == "rejected"
    rows = await chat.send("张库管", f"重新提交 {number}")
    assert "第 2 轮" in reply(rows, "张库管")["text"]
    assert any(r["to"] in ("陈经理", "赵主管") and r["kind"] == "card" for r in rows)  # the managers are asked again
    rows = await chat.send("赵主管", f"同意 {number}")
    assert "已过账" in reply(rows, "赵主管")["title"]
    detail = await chat.send("张库管", f"单据 {number}")
    body = reply(detail, "张库管")["text"]
    assert "第1轮 陈经理（主管） 驳回：数量不对，请核实" in body and "第2轮 赵主管（主管） 通过" in body


async def test_the_requester_withdraws_while_pending(db, settings, chat):
    number = await submitted(db, settings, "loss", [line("CREAM", 2, "kg")], warehouse="WH1")
    assert "只有提交人" in reply(await chat.send("陈经理", f"撤回 {number}"), "陈经理")["text"]
    rows = await chat.send("张库管", f"撤回 {number}")
    assert "已撤回" in reply(rows, "张库管")["text"]
    assert "已被提交人撤回" in reply(await chat.send("陈经理", f"同意 {number}"), "陈经理")["text"]
    async with db.read() as s:
        assert (await get_document(s, number)).status == "draft"


async def test_a_step_handed_on_is_decided_by_the_new_holder_only(db, settings, chat):
    number = await discrepancy(db, settings)
    rows = await chat.send("张库管", f"转交 {number} 孙库管")
    assert "转交给 孙库管" in reply(rows, "张库管")["text"]
    assert reply(rows, "孙库管")["kind"] == "card"
    assert "已转交给 孙库管" in reply(await chat.send("张库管", f"同意 {number}"), "张库管")["text"]
    assert "库管" in reply(await chat.send("孙库管", f"同意 {number}"), "孙库管")["title"]
    assert "孙库管 没有「采购」角色" in reply(await chat.send("李采购", f"转交 {number} 孙库管"), "李采购")["text"]


async def test_a_refused_posting_leaves_the_approval_open_and_says_why(db, settings, chat):
    number = await submitted(db, settings, "loss", [line("CREAM", 2, "kg")], warehouse="WH1")

    async def frozen(s) -> None:  # the pair is frozen (a magnitude guard tripped) before the manager approves
        p = (await s.scalars(select(Product).where(Product.sku == "CREAM"))).one()
        w = (await s.scalars(select(Warehouse).where(Warehouse.code == "WH1"))).one()
        await freeze(s, p.id, w.id, "测试冻结", NOW)

    await db.write(frozen)
    rows = await chat.send("陈经理", f"同意 {number}")
    text = reply(rows, "陈经理")["text"]
    assert "过账被拦截" in text and "处理办法" in text and f"诊断 {number}" in text
    assert any(r["to"] == "张库管" and "过账被拦截" in r["text"] for r in rows)  # the requester is told too
    async with db.read() as s:
        assert (await get_document(s, number)).status == "submitted"
        step = (await s.execute(select(ApprovalStep.status))).scalar_one()
    assert step == "pending"  # still open: approve again once the stock is back


async def test_a_stale_or_unknown_approval_button(db, settings, chat):
    rows = await chat.send("陈经理", click="approval:999:manager:approve")
    assert "不存在" in reply(rows, "陈经理")["text"]
    rows = await chat.send("陈经理", click="approval:x:y")
    assert "已失效或无法识别" in reply(rows, "陈经理")["text"]

