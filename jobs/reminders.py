"""Daily reminders (the seed's 催办): overdue borrow slips to the salesperson who wrote them, and sign-offs pending
longer than `[approvals] remind_after_hours` to the people who must sign — once per slip or step and day."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import text
from core.ledger.borrow import SlipState, open_slips
from core.messaging.recipients import ToRole, ToUser
from core.models import Approval, ApprovalStep, Document
from core.models.masters import ROLE_ZH
from core.types import fq
from jobs.context import JobContext
from jobs.registry import day, job


async def _overdue(s: AsyncSession, ctx: JobContext) -> list[SlipState]:
    return [slip for slip in await open_slips(s, ctx.local.date()) if slip.overdue_days > 0]


async def _stale_steps(s: AsyncSession, ctx: JobContext) -> list[tuple[int, str, str, int | None, float]]:
    """(approval id, document number, role, assignee, hours pending) of steps waiting longer than the setting."""
    cutoff = ctx.now - timedelta(hours=ctx.settings.approval_remind_hours)
    rows = await s.execute(
        select(Approval.id, Document.number, ApprovalStep.role, ApprovalStep.assignee_id, Approval.created_at,
               Approval.sequential, ApprovalStep.seq)
        .join(Document, Document.id == Approval.document_id).join(ApprovalStep, ApprovalStep.approval_id == Approval.id)
        .where(Approval.status == "pending", ApprovalStep.status == "pending", Approval.created_at < cutoff)
        .order_by(Approval.id, ApprovalStep.seq))
    out, first_pending = [], {}
    for aid, number, role, assignee, created, sequential, seq in rows.all():
        first_pending.setdefault(aid, seq)
        if sequential and seq != first_pending[aid]:
            continue  # not this role's turn yet
        out.append((aid, number, role, assignee, (ctx.now - created).total_seconds() / 3600))
    return out


@job("reminders", title="每日催办：逾期借条与超时未签的单据", cron="47 9 * * *", period=day)
async def reminders(ctx: JobContext) -> str:
    """One reminder per overdue slip to its author, one per stale step to its holders (or the one it was handed to)."""
    async with ctx.db.read() as s:
        overdue = await _overdue(s, ctx)
        stale = await _stale_steps(s, ctx)
    for slip in overdue:
        if slip.doc.created_by_id is None:
            continue
        items = "、".join(f"{i.name} {fq(i.out)}{i.unit}" for i in slip.items if i.out > 0)
        message = text(f"【借条逾期提醒】{slip.customer_name} 的借条 {slip.doc.number} 已逾期 {slip.overdue_days} 天"
                       f"（应还日期 {slip.doc.due_date}），还有：{items}。\n收回后发送：归还 {slip.doc.number}")
        await ctx.send(ToUser(slip.doc.created_by_id), message, f"slip:{slip.doc.id}")
    for aid, number, role, assignee, hours in stale:
        to = ToUser(assignee) if assignee else ToRole(role)
        await ctx.send(to, text(f"【签核提醒】单据 {number} 等待「{ROLE_ZH.get(role, role)}」签核已 {hours:.0f} 小时。"
                                f"发送「待办」查看并处理，或「转交 {number} <姓名>」交给同事。"), f"step:{aid}:{role}")
    return f"逾期借条 {len(overdue)} 张，超时签核 {len(stale)} 步"
