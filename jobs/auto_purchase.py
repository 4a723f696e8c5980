"""02:00 automatic purchase requests (the seed's 单据流自动化 #1): for each product with auto_replenish whose available
stock (projected: on hand + on order + requested − reserved) is below its safety line, one request through the same
path as 采购申请, assigned to the product's purchaser, with the engine's quantity and why; the approvers get their
card. Never a second request while one for the product is open."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import text
from core.approvals.engine import Actor
from core.errors import DomainError
from core.ledger.purchasing import request_purchase, suggestion_why
from core.messaging import people
from core.messaging.recipients import ToUser
from core.models import Product
from core.replenish.suggest import Suggestion, suggest
from core.types import fq
from jobs.context import JobContext
from jobs.registry import day, job

SKIPPED = ("REQUEST_OPEN", "NOTHING_TO_BUY", "NO_SUPPLIER", "NO_PURCHASER")


def below_safety(s: Suggestion) -> bool:
    """The job's trigger: something to buy, and the projected stock under the safety stock."""
    e = s.explanation
    return s.auto_replenish and s.qty > 0 and e.projected < e.safety_stock


@job("auto_purchase", title="自动采购申请（低于安全库存）", cron="7 2 * * *", period=day)
async def auto_purchase(ctx: JobContext) -> str:
    """One request per qualifying product, each in its own transaction (a refused one does not stop the rest)."""
    today = ctx.local.date()
    found = [s for s in await suggest(ctx.db, today=today, settings=ctx.settings, auto_only=True) if below_safety(s)]
    made, skipped = [], []
    for s in found:
        try:
            made.append(await ctx.db.write(lambda session, s=s: _request_one(ctx, session, s)))
        except DomainError as e:
            if e.code not in SKIPPED:
                raise
            skipped.append(s.sku)
    return f"自动申请 {len(made)} 张：{'、'.join(made) or '无'}" + (f"；跳过 {len(skipped)} 个" if skipped else "")


async def _request_one(ctx: JobContext, session: AsyncSession, s: Suggestion) -> str:
    """The request for one product, its approvers' cards and the purchaser's note, in one transaction."""
    product = await session.scalar(select(Product).where(Product.sku == s.sku))
    person = await people.by_id(session, product.purchaser_id) if product and product.purchaser_id else None
    if product is None or person is None:
        raise DomainError("NO_PURCHASER", f"{s.sku} 没有指定采购负责人", "在商品档案 purchaser 列填写采购负责人")
    req = await request_purchase(session, ctx.settings, Actor(person, "job", ctx.key(s.sku)), product,
                                 reason="低于安全库存，系统自动申请", now=ctx.now, suggestion=s)
    notify = ctx.extras.get("notify_approvers")  # the approval cards (wired by the server: jobs do not build them)
    notices = await notify(session, ctx.settings, req.doc.number) if notify else []
    why = suggestion_why(s, ctx.local.date())
    told = text(f"【自动采购申请】{product.name}（{product.sku}）低于安全库存，已按补货建议提交采购申请 "
                f"{req.doc.number}：{fq(req.qty)}{req.unit}，供应商 {req.supplier.name}，等待审批。\n原因：{why}")
    for i, (to, message) in enumerate([*notices, (ToUser(person.id), told)]):
        ctx.queued += await ctx.outbound.send(session, ctx.key(f"{s.sku}:{i}"), to, message, ctx.now)
    return req.doc.number
