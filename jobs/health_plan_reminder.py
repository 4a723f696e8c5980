"""Weekly (Monday 09:23) reminder of the improvement plans still owed for the latest health report, to each
department's head (else the managers), once per plan and week."""

from __future__ import annotations

from cards.model import text
from core.messaging.recipients import Recipient, ToRole, ToUser
from core.reports.plans import latest_open
from jobs.context import JobContext
from jobs.registry import iso_week, job


@job("health_plan_reminder", title="改进计划催交（每周）", cron="23 9 * * 1", period=iso_week)
async def health_plan_reminder(ctx: JobContext) -> str:
    """One reminder per open plan of the latest report month."""
    async with ctx.db.read() as s:
        owed = await latest_open(s)
    for o in owed:
        to: Recipient = ToUser(o.head_id) if o.head_id else ToRole("manager")
        await ctx.send(to, text(f"【改进计划催交】{o.department} {o.period} 库存健康度诊断得 {o.score} 分，"
                                "改进计划还没有提交。请发送：改进计划 <内容>；发送「改进计划」查看待提交的计划。"),
                       f"plan:{o.id}")
    return f"催交 {len(owed)} 份改进计划" if owed else "没有待提交的改进计划"
