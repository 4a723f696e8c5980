"""Borrow slips in chat on the demo data: 借货 lines (typed barcode + batch on the console, or scanned), the
customer's signature (签字 then a photo), the manager's approval (on hand → on loan), 归还 in parts (on loan → on
hand, the same batch), 借条 with what is out and overdue, 借货统计; bad input answered in Chinese, nothing changed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from core.errors import DomainError
from core.importer import load_demo
from core.ledger.documents import get_document
from core.ledger.scan import Scanned
from core.models import (
    Approval,
    Attachment,
    Batch,
    Document,
    DocumentLine,
    Product,
    StockBalance,
    User,
    Warehouse,
)
from handlers.borrow import lend, scan_line
from handlers.registry import Context, Sender
from tests.chat import PNG, Chat, reply

CREAM = "6930180079197"  # RM-CREAM 淡奶油, kg (桶 = 10 kg), batch-tracked; opening batch CR20261101 in CW
BOX8 = "6921581187857"  # PK-BOX8 8寸蛋糕盒, 个 (箱 = 50), not batch-tracked
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64


async def load(db, settings) -> None:
    async def work(s) -> None:
        await load_demo(s, settings)
        await s.execute(update(Warehouse).where(Warehouse.code == "CW").values(kind="central"))

    await db.write(work)


@pytest.fixture
async def chat(db, settings):
    await load(db, settings)
    c = Chat(db, settings)
    yield c
    await c.close()


async def balance(db, sku: str, batch: str | None = None, wh: str = "CW") -> tuple[Decimal, Decimal]:
    """(on hand, on loan) of the product in the warehouse (one batch, or all)."""
    async with db.read() as s:
        stmt = (select(func.coalesce(func.sum(StockBalance.qty), 0), func.coalesce(func.sum(StockBalance.on_loan), 0))
                .join(Product, Product.id == StockBalance.product_id)
                .join(Warehouse, Warehouse.id == StockBalance.warehouse_id)
                .join(Batch, Batch.id == StockBalance.batch_id)
                .where(Product.sku == sku, Warehouse.code == wh))
        if batch is not None:
            stmt = stmt.where(Batch.code == batch)
        qty, loan = (await s.execute(stmt)).one()
        return Decimal(qty), Decimal(loan)


async def slips_of(db, who: str, status: str | None = None) -> list[Document]:
    async with db.read() as s:
        uid = await s.scalar(select(User.id).where(User.name == who))
        stmt = select(Document).where(Document.type == "borrow", Document.created_by_id == uid)
        if status:
            stmt = stmt.where(Document.status == status)
        return list(await s.scalars(stmt.order_by(Document.id)))


async def lines_of(db, number: str) -> list[tuple[str, Decimal, str, str, str]]:
    async with db.read() as s:
        doc = await get_document(s, number)
        skus = dict((await s.execute(select(Product.id, Product.sku))).tuples().all())
        return [(skus[ln.product_id], ln.qty, ln.unit, ln.batch_code, ln.entry) for ln in doc.lines]


def text_of(rows: list[dict], user: str) -> str:
    return "\n".join(r["text"] for r in rows if r["to"] == user)


async def signed_slip(chat: Chat, db, who: str = "赵销售") -> str:
    """赵销售's slip for C002: 2 kg cream of CR20261101 and 20 cake boxes, signed by the customer."""
    await chat.send(who, f"借货 C002 {CREAM} 2kg CR20261101")
    await chat.send(who, f"借货 C002 {BOX8} 20")
    number = (await slips_of(db, who, "draft"))[-1].number
    await chat.send(who, f"签字 {number}")
    assert "已保存客户签字" in text_of(await chat.send(who, image=PNG), who)
    return number


async def test_lend_sign_approve_then_return_in_parts(db, settings, chat):
    """The whole flow: draft → signature → manager approval (on hand → on loan, the batch named) → a partial
    return and the rest (on loan → on hand, the same batch); the slip shows as fully returned."""
    before_cream, before_box = await balance(db, "RM-CREAM", "CR20261101"), await balance(db, "PK-BOX8")
    body = text_of(await chat.send("赵销售", f"借货 C002 {CREAM} 2kg CR20261101"), "赵销售")
    assert "已开借条 JH" in body and "已记录第 1 行：淡奶油 2kg 批次 CR20261101" in body
    assert "客户 C002 平江路咖啡馆 · 从 CW 借出" in body
    today = datetime.now(UTC).astimezone(settings.timezone).date()
    assert f"归还日期 {today + timedelta(days=settings.borrow_default_days)}" in body  # [borrow] default_days
    await chat.send("赵销售", f"借货 C002 {BOX8} 20")
    [slip] = await slips_of(db, "赵销售", "draft")
    assert await lines_of(db, slip.number) == [("RM-CREAM", Decimal(2), "kg", "CR20261101", "text"),
                                               ("PK-BOX8", Decimal(20), "个", "", "text")]
    refused = text_of(await chat.send("赵销售", "借货 提交"), "赵销售")
    assert "还没有客户签字，不能提交" in refused and f"签字 {slip.number}" in refused
    assert "请在 15 分钟内发送客户在借条" in text_of(await chat.send("赵销售", f"签字 {slip.number}"), "赵销售")
    assert "已保存客户签字" in text_of(await chat.send("赵销售", image=PNG), "赵销售")
    async with db.read() as s:
        kinds = (await s.scalars(select(Attachment.kind).where(Attachment.document_id == slip.id))).all()
    assert kinds == ["signature"]
    rows = await chat.send("赵销售", "借货 提交")
    assert "已提交，等待主管审批" in reply(rows, "赵销售")["title"] + reply(rows, "赵销售")["text"]
    card = reply(rows, "陈经理")
    assert [b["label"] for b in card["buttons"]] == ["同意", "驳回"] and "借给 C002 平江路咖啡馆" in card["text"]
    assert "淡奶油（RM-CREAM）CW 批次 CR20261101：2kg" in card["text"]
    assert await balance(db, "RM-CREAM", "CR20261101") == before_cream  # nothing moves before approval
    assert "全部签核通过，已过账" in reply(await chat.send("陈经理", f"同意 {slip.number}"), "陈经理")["title"]
    assert await balance(db, "RM-CREAM", "CR20261101") == (before_cream[0] - 2, before_cream[1] + 2)
    assert await balance(db, "PK-BOX8") == (before_box[0] - 20, before_box[1] + 20)

    mine = text_of(await chat.send("赵销售", "借条"), "赵销售")
    assert f"**{slip.number}** C002 平江路咖啡馆" in mine and "淡奶油 批次 CR20261101 未还 2kg" in mine
    assert "8寸蛋糕盒 未还 20个" in mine and "逾期" not in mine

    body = text_of(await chat.send("赵销售", f"归还 {slip.number} {CREAM} 1.5kg"), "赵销售")
    assert "已登记归还 GH" in body and "淡奶油 批次 CR20261101 1.5kg" in body and "未还 0.5kg" in body
    assert await balance(db, "RM-CREAM", "CR20261101") == (before_cream[0] - Decimal("0.5"),
                                                            before_cream[1] + Decimal("0.5"))
    over = text_of(await chat.send("赵销售", f"归还 {slip.number} {CREAM} 1kg"), "赵销售")
    assert "只剩 0.5kg 未还" in over and "不能超过未还数量" in over
    assert await balance(db, "RM-CREAM", "CR20261101") == (before_cream[0] - Decimal("0.5"),
                                                            before_cream[1] + Decimal("0.5"))
    body = text_of(await chat.send("王库管", f"归还 {slip.number}"), "王库管")  # the rest, by the warehouse
    assert f"借条 {slip.number} 已全部归还" in body
    assert await balance(db, "RM-CREAM", "CR20261101") == before_cream
    assert await balance(db, "PK-BOX8") == before_box
    async with db.read() as s:
        returns = (await s.execute(select(Document.number, Document.status, Document.ref_document_id)
                                   .where(Document.type == "borrow_return").order_by(Document.id))).all()
        assert [(st, ref) for _, st, ref in returns] == [("posted", slip.id), ("posted", slip.id)]
        assert (await get_document(s, slip.number)).returned
    assert slip.number not in text_of(await chat.send("赵销售", "借条"), "赵销售")
    assert "已全部归还" in text_of(await chat.send("赵销售", f"借条 {slip.number}"), "赵销售")
    assert "已全部归还" in text_of(await chat.send("赵销售", f"归还 {slip.number}"), "赵销售")


async def test_fefo_when_no_batch_is_named_and_expired_batches_are_refused(db, settings):
    """Scanning not required here: a line without a batch lends first-to-expire first, skipping an expired batch;
    a named expired batch is refused when typed."""
    loose = replace(settings, scan_required=frozenset())
    await load(db, loose)

    async def old_batch(s) -> None:  # RM-STRAW gets a second batch that expires in 3 days
        from core.ledger.documents import LineInput, create_document, post_document, submit_document
        when = datetime.now(UTC)
        doc = await create_document(s, loose, "purchase_receipt", [LineInput(
            "RM-STRAW", Decimal(5), "kg", batch="SB-OLD", expiry=when.date() + timedelta(days=3))],
            warehouse="CW", supplier="SUP01", now=when)
        await submit_document(s, loose, doc, when)
        await post_document(s, loose, doc, when)

    await db.write(old_batch)
    chat = Chat(db, loose, at=datetime.now(UTC) + timedelta(days=5))  # SB-OLD is past its expiry now
    try:
        body = text_of(await chat.send("赵销售", "借货 C004 RM-STRAW 1kg SB-OLD"), "赵销售")
        assert "批次 SB-OLD 已于" in body and "过期批次不能借出" in body and "在库批次：SB20261001" in body
        assert not await slips_of(db, "赵销售")
        await chat.send("赵销售", "借货 C004 冷冻草莓 3kg")  # a name is fine when scanning is not required
        [slip] = await slips_of(db, "赵销售", "draft")
        await chat.send("赵销售", f"签字 {slip.number}")
        await chat.send("赵销售", image=JPEG)
        await chat.send("赵销售", "借货 提交 C004")
        await chat.send("陈经理", f"同意 {slip.number}")
        assert await balance(db, "RM-STRAW", "SB-OLD") == (Decimal(5), Decimal(0))
        assert (await balance(db, "RM-STRAW", "SB20261001"))[1] == Decimal(3)
        out = text_of(await chat.send("赵销售", f"借条 {slip.number}"), "赵销售")
        assert "冷冻草莓（RM-STRAW）批次 SB20261001：借 3kg" in out
    finally:
        await chat.close()


async def test_the_console_needs_the_exact_barcode_and_batch(db, settings, chat):
    """[scan] required lists borrow (the default): a typed line names the exact barcode and, for a batch-tracked
    product, the batch; a name or a SKU is refused with the fix."""
    for line in ("借货 C002 RM-CREAM 2kg CR20261101", f"借货 C002 {CREAM} 2kg", "借货 C002 淡奶油 2kg CR20261101"):
        body = text_of(await chat.send("赵销售", line), "赵销售")
        assert "必须扫码" in body and "请用「扫码」扫描商品条码和批次" in body, (line, body)
    assert not await slips_of(db, "赵销售")
    assert "已记录第 1 行：8寸蛋糕盒 20个" in text_of(await chat.send("赵销售", f"借货 C002 {BOX8} 20"), "赵销售")


async def test_several_pairs_in_one_message_a_warehouse_and_a_return_date(db, settings, chat):
    today = datetime.now(UTC).astimezone(settings.timezone).date()
    due = today + timedelta(days=7)
    body = text_of(await chat.send("赵销售", f"借货 C003 CW {BOX8} 1箱 {CREAM} 3kg CR20261101 7天"), "赵销售")
    assert "第 1 行：8寸蛋糕盒 1箱" in body and "第 2 行：淡奶油 3kg 批次 CR20261101" in body
    assert f"归还日期：{due}" in body and "= 50个" in body
    [slip] = await slips_of(db, "赵销售", "draft")
    assert slip.due_date == due
    await chat.send("赵销售", f"借货 C003 {BOX8} 10")  # the same product again: one line with the sum
    assert (await lines_of(db, slip.number))[0][:3] == ("PK-BOX8", Decimal(60), "个")
    assert "已把第 2 行改为 1kg" in text_of(await chat.send("赵销售", "借货 改 2 1"), "赵销售")
    assert "已删除第 1 行" in text_of(await chat.send("赵销售", "借货 删 1"), "赵销售")
    assert await lines_of(db, slip.number) == [("RM-CREAM", Decimal(1), "kg", "CR20261101", "text")]
    shown = text_of(await chat.send("赵销售", "借货"), "赵销售")
    assert slip.number in shown and "1. 淡奶油（RM-CREAM）批次 CR20261101：1kg" in shown


async def test_bad_input_names_the_rule_and_the_fix_and_changes_nothing(db, settings, chat):
    await chat.send("赵销售", f"借货 C002 {BOX8} 20")
    [slip] = await slips_of(db, "赵销售", "draft")
    box8, _ = await balance(db, "PK-BOX8")
    cases = {
        f"借货 王记 {BOX8} 2": ("找不到客户「王记」", "已有客户：C001 园区科技（下午茶团餐）"),
        "借货 C002 6921581187858 2": ("条码 6921581187858 的校验位不对", "请核对条码数字"),
        f"借货 C002 {CREAM} 1kg XX999": ("批次 XX999 在 CW 没有库存", "在库批次：CR20261101"),
        f"借货 C002 {BOX8} 2 2020-01-01": ("归还日期 2020-01-01 已经过了", "不能早于今天"),
        f"借货 C002 {BOX8} 1e30": ("看不懂数量「1e30」", "不能用科学计数法"),
        f"借货 C002 {BOX8} 3.5箱": ("数量 3.5箱 不是整数", "「箱」必须是整数"),
        f"借货 C002 {BOX8} 100000000000": ("过大（一行最多 1000000000个）", "请核对数量和单位"),
        f"借货 C002 {BOX8} 100000": (f"未过期库存只有 {int(box8)}个，本借条要借 100020个", "请减少数量"),
        f"借货 C002 {BOX8} 2吨": ("没有单位「吨」", "请改用库存单位「个」"),
        f"借货 C002 {BOX8}": (f"「{BOX8}」后面缺少数量", "每个商品后面写数量"),
        "归还 JH1 6921581187857 1": ("找不到单据 JH1", "请核对单据号"),
        f"归还 {slip.number}": ("状态为「草稿」，没有借出", f"单据 {slip.number}"),
        "借货统计 13月": ("看不懂月份", "借货统计 2026-11"),
    }
    for message, (rule, fix) in cases.items():
        body = text_of(await chat.send("赵销售", message), "赵销售")
        assert rule in body and fix in body, (message, body)
    assert await lines_of(db, slip.number) == [("PK-BOX8", Decimal(20), "个", "", "text")]
    assert [d.number for d in await slips_of(db, "赵销售")] == [slip.number]
    assert (await get_document_of(db, slip.number)).due_date == slip.due_date
    assert "需要以下角色之一" in text_of(await chat.send("李采购", f"借货 C002 {BOX8} 2"), "李采购")


async def get_document_of(db, number: str) -> Document:
    async with db.read() as s:
        return await get_document(s, number)


async def test_a_change_after_the_signature_needs_a_new_one(db, settings, chat):
    number = await signed_slip(chat, db)
    body = text_of(await chat.send("赵销售", f"借货 C002 {BOX8} 5"), "赵销售")
    assert "之前的客户签字已失效，请重新签字" in body
    assert "还没有客户签字" in text_of(await chat.send("赵销售", "借货 提交"), "赵销售")
    await chat.send("赵销售", f"签字 {number}")
    assert "改动之前的签字" in text_of(await chat.send("赵销售", image=PNG), "赵销售")  # the old photo again
    assert "已保存客户签字" in text_of(await chat.send("赵销售", image=JPEG), "赵销售")
    assert "等待主管审批" in text_of(await chat.send("赵销售", "借货 提交"), "赵销售")


async def test_scanned_lines_add_one_each_and_take_the_batch(db, settings, chat):
    """A scan goes to the sender's draft slip (借货 <客户> opens an empty one): product and batch from the code,
    one stock unit per scan; an expired GS1 batch is refused."""
    assert "还没有商品" in text_of(await chat.send("赵销售", "借货 C001"), "赵销售")
    [slip] = await slips_of(db, "赵销售", "draft")
    gs1 = f"(01)0{CREAM}(10)CR20261101"
    assert "扫码记录第 1 行：淡奶油 批次 CR20261101，现为 1kg" in text_of(await chat.send("赵销售", scan=gs1),
                                                                      "赵销售")
    assert "现为 2kg" in text_of(await chat.send("赵销售", scan=gs1), "赵销售")
    await chat.send("赵销售", "借货 改 1 5kg")
    assert await lines_of(db, slip.number) == [("RM-CREAM", Decimal(5), "kg", "CR20261101", "scan")]
    expired = text_of(await chat.send("赵销售", scan=f"(01)0{CREAM}(10)CR20261101(17)200101"), "赵销售")
    assert "已于 2020-01-01 过期" in expired
    assert "校验位不对" in text_of(await chat.send("赵销售", scan="6930180079198"), "赵销售")
    assert len(await lines_of(db, slip.number)) == 1


async def test_on_wecom_a_typed_line_is_refused_and_a_scan_is_taken(db, settings):
    """The scan target called directly with a Context and a Scanned, as the scan dispatcher calls it."""
    await load(db, settings)

    async def work(s):
        user = (await s.scalars(select(User).where(User.name == "赵销售"))).one()
        ctx = Context(Sender(user.id, user.name, frozenset({"sales"})), "wecom", datetime.now(UTC), db, settings,
                      event_key="t1", session=s)
        with pytest.raises(DomainError) as typed:
            await lend(ctx, f"C002 {BOX8} 2")
        assert typed.value.code == "SCAN_REQUIRED" and "必须扫码录入" in typed.value.message_zh
        assert not (await s.scalars(select(Document).where(Document.status == "draft",
                                                           Document.type == "borrow"))).all()  # none opened
        await lend(ctx, "C002")  # an empty draft, to scan into
        draft = (await s.scalars(select(Document).where(Document.type == "borrow", Document.status == "draft"))).one()
        said = await scan_line(ctx, draft, Scanned(BOX8))
        line = (await s.scalars(select(DocumentLine).where(DocumentLine.document_id == draft.id))).one()
        return said, (line.qty, line.unit, line.entry)

    said, line = await db.write(work)
    assert "扫码记录第 1 行：8寸蛋糕盒" in said[0].text and line == (Decimal(1), "个", "scan")


async def test_open_slips_show_overdue_days_and_a_customers_slips(db, settings, chat):
    number = await signed_slip(chat, db)
    async with db.read() as s:
        due = (await get_document(s, number)).due_date
    await chat.send("赵销售", "借货 提交")
    await chat.send("陈经理", f"同意 {number}")
    chat.at = datetime.now(UTC) + timedelta(days=settings.borrow_default_days + 3)
    mine = text_of(await chat.send("赵销售", "借条"), "赵销售")
    assert f"**{number}**" in mine and "**逾期 3 天**" in mine and f"归还日期 {due}" in mine
    assert "其中逾期 1 张" in mine
    # The demo's slip: 孙销售 lent C003 60 cake boxes and 30 candles, due two days before the demo was loaded.
    theirs = text_of(await chat.send("孙销售", "借条"), "孙销售")
    assert f"**逾期 {settings.borrow_default_days + 5} 天**" in theirs and "8寸蛋糕盒 未还 60个" in theirs
    customer = text_of(await chat.send("赵销售", "借条 C002"), "赵销售")
    assert "C002 平江路咖啡馆 的借条" in customer and number in customer and "赵销售" in customer
    assert "没有未还的借条" in text_of(await chat.send("赵销售", "借条 C001"), "赵销售")


async def test_borrow_stats_in_chat(db, settings, chat):
    """Lent 2 kg + 20 boxes (22 in stock units), 1.5 kg back before the due date, 0.5 kg after: 1.5 / 22."""
    number = await signed_slip(chat, db)
    await chat.send("赵销售", "借货 提交")
    await chat.send("陈经理", f"同意 {number}")
    async with db.read() as s:
        due = (await get_document(s, number)).due_date
    await chat.send("赵销售", f"归还 {number} {CREAM} 1.5kg")
    chat.at = datetime.now(UTC) + timedelta(days=settings.borrow_default_days + 2)
    await chat.send("赵销售", f"归还 {number} {CREAM} 0.5")
    body = text_of(await chat.send("赵销售", f"借货统计 {due:%Y-%m}"), "赵销售")
    assert f"借货归还率 {due:%Y年%m月}" in body
    assert "- C002 平江路咖啡馆：6.8%（1.5 / 22，1 张，未还清：" + number in body


async def test_a_rejected_slip_is_fixed_signed_again_and_resubmitted(db, settings, chat):
    number = await signed_slip(chat, db)
    await chat.send("赵销售", "借货 提交")
    waiting = text_of(await chat.send("赵销售", f"借货 改 2 1 {number}"), "赵销售")
    assert f"借条 {number} 待审核，不能再修改" in waiting and f"撤回 {number}" in waiting
    assert "被驳回" in text_of(await chat.send("陈经理", f"驳回 {number} 蛋糕盒只借10个"), "赵销售")
    body = text_of(await chat.send("赵销售", f"借货 改 2 10 {number}"), "赵销售")
    assert "已把第 2 行改为 10个" in body and "之前的客户签字已失效" in body and "驳回原因：蛋糕盒只借10个" in body
    await chat.send("赵销售", f"签字 {number}")
    await chat.send("赵销售", image=JPEG)
    rows = await chat.send("赵销售", "借货 提交")
    assert "等待主管审批" in text_of(rows, "赵销售") and reply(rows, "陈经理")["buttons"]
    async with db.read() as s:
        doc = await get_document(s, number)
        rounds = (await s.scalars(select(Approval.round).where(Approval.document_id == doc.id)
                                  .order_by(Approval.round))).all()
    assert doc.status == "submitted" and rounds == [1, 2]
    await chat.send("陈经理", f"同意 {number}")
    assert (await balance(db, "PK-BOX8"))[1] == Decimal(70)  # the demo's 60 lent to C003 and these 10


async def test_resubmitting_a_changed_slip_without_a_new_signature_is_refused(db, settings, chat):
    number = await signed_slip(chat, db)
    await chat.send("赵销售", "借货 提交")
    await chat.send("陈经理", f"驳回 {number} 蛋糕盒只借10个")
    await chat.send("赵销售", f"借货 改 2 10 {number}")  # the change voids the signature
    refused = text_of(await chat.send("赵销售", f"重新提交 {number}"), "赵销售")
    assert "还没有有效的客户签字" in refused and f"签字 {number}" in refused
    async with db.read() as s:
        assert (await get_document(s, number)).status == "draft"
