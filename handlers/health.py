"""改进计划: the improvement plan a department under the monthly health report's threshold owes; without content,
the plans the sender still has to submit."""

from __future__ import annotations

from cards.model import Message, text
from core.messaging.recipients import ToRole
from core.models import User
from core.reports.plans import owed_by, submit_plan
from handlers.registry import Context, command


@command("改进计划", "plan", summary="提交改进计划（月度库存健康度诊断低于阈值的部门）；不带内容列出待提交的计划",
         usage="改进计划 [部门] <内容>，例如：改进计划 出库必扫码；改进计划 仓储部 差异单 48 小时内闭环；改进计划",
         writes=True)
async def plan(ctx: Context, args: str) -> list[Message]:
    """Submit the sender's open plan (the department first when they owe several), or list what they owe."""
    if not args.strip():
        owed = await owed_by(ctx.unit, ctx.sender.id, ctx.sender.roles)
        if not owed:
            return [text("你目前没有待提交的改进计划。")]
        lines = [f"- {o.department}：{o.period} 库存健康度诊断 {o.score} 分" for o in owed]
        return [text("待提交的改进计划：\n" + "\n".join(lines) + "\n提交：改进计划 <内容>"
                     + ("（多份时在内容前写部门：改进计划 <部门> <内容>）" if len(owed) > 1 else ""))]
    user = await ctx.unit.get_one(User, ctx.sender.id)
    owed, body = await submit_plan(ctx.unit, user, args, ctx.now)
    ctx.tell(ToRole("manager"), text(f"【改进计划已提交】{user.name} 提交了 {owed.department} {owed.period}"
                                     f"（{owed.score} 分）的改进计划：{body}"))
    return [text(f"已提交 {owed.department} {owed.period} 的改进计划，主管会收到通知。")]
