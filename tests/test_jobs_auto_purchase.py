"""The 02:00 automatic purchase requests: a product with auto_replenish under its safety line gets one request,
assigned to its purchaser, through the same path as 采购申请; the approver gets the card; never a second one."""

from __future__ import annotations

import json

from sqlalchemy import select, update

from bot.job_wiring import notify_approvers
from cards.parts import split_message
from core.ledger.documents import get_document
from core.messaging.outbound import Outbound
from core.models import Document, OutboxMessage, Product, User
from core.replenish.suggest import suggest
from jobs.auto_purchase import below_safety
from jobs.registry import JOBS
from jobs.runner import Deps, run_job
from tests.factories import line
from tests.ledger_history import dated, local
from tests.test_purchase_chat import NOW, setup, today


async def test_a_product_under_its_safety_line_gets_one_request_and_the_approver_its_card(db, settings):
    await setup(db, settings)
    async def low(s) -> None:  # 60 kg left; 50 kg leave as an other issue (not demand): 10 kg, under the line
        await s.execute(update(Product).where(Product.sku == "SUGAR").values(auto_replenish=True))
        await dated(s, settings, "other_issue", [line("SUGAR", 50, "kg")], local(settings, today(settings)),
                    warehouse="WH1")

    await db.write(low)
    found = {s.sku: s for s in await suggest(db, today=today(settings), settings=settings)}
    sugar = found["SUGAR"].explanation
    assert sugar.projected < sugar.safety_stock and below_safety(found["SUGAR"])  # the case is what it claims
    deps = Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: NOW,
                extras={"notify_approvers": notify_approvers})
    period = f"{NOW.astimezone(settings.timezone):%Y-%m-%d}"
    done = await run_job(JOBS["auto_purchase"], period, deps)
    assert done.ok and done.result.startswith("自动申请 1 张：SQ"), done
    async with db.read() as s:
        requests = list(await s.scalars(select(Document.number).where(Document.type == "purchase_request")))
        doc = await get_document(s, requests[0])
        buyer = await s.scalar(select(User.id).where(User.name == "李采购"))
        queued = await s.scalars(select(OutboxMessage))
        rows = [(json.loads(r.target)["address"], json.loads(r.message)) for r in queued]
    assert len(requests) == 1 and doc.status == "submitted" and doc.created_by_id == buyer
    assert doc.lines[0].stock_qty == found["SUGAR"].qty  # the engine's quantity
    cards = [m for to, m in rows if to == "陈经理" and m["kind"] == "card"]
    assert cards and requests[0] in cards[0]["text"] and [b["label"] for b in cards[0]["buttons"]] == ["同意", "驳回"]
    told = [m["text"] for to, m in rows if to == "李采购"]
    assert told and "自动采购申请" in told[0] and "原因：" in told[0]
    # the next night: the open request counts as requested stock (projected back above the line) and a second
    # request would be refused anyway (REQUEST_OPEN, checked at submit): none is made
    later = Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: NOW,
                 extras={"notify_approvers": notify_approvers})
    again = await run_job(JOBS["auto_purchase"], "next-day", later)
    assert again.ok and again.result.startswith("自动申请 0 张"), again
    async with db.read() as s:
        assert len(list(await s.scalars(select(Document.id).where(Document.type == "purchase_request")))) == 1
