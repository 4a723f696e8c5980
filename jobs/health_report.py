"""The monthly stock-health diagnosis on the 5th at 09:03 (the seed's 库存健康度诊断) for the month that ended, to the
managers' channel: per department the four metrics, the weights and the score; a department under the threshold
owes an improvement plan (改进计划), asked of its head (else the managers)."""

from __future__ import annotations

from datetime import date

from cards.model import Message, text
from core.config import HEALTH_METRICS_ZH
from core.messaging.recipients import Recipient, ToRole, ToUser
from core.reports.health import DepartmentHealth, HealthReport, department_heads, health_report, pct, weights_zh
from core.reports.plans import open_plan
from jobs.context import JobContext
from jobs.registry import job, previous_month


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}h"


def _line(r: DepartmentHealth, threshold: int) -> str:
    head = f"**{r.department}：{r.score} 分**" if r.score is not None else f"**{r.department}：无数据**"
    if r.score is not None and r.score < threshold:
        head += f"（低于 {threshold}，需提交改进计划）"
    b = r.borrow
    borrow = f"{pct(b.rate)}（{b.slips} 张到期借条）" if b.lent else "—（无到期借条）"
    disc = (f"中位 {_hours(r.median_hours)} / P90 {_hours(r.p90_hours)}（{len(r.hours)} 张）" if r.hours else "—")
    if r.open_discrepancies:
        disc += f"，未闭环 {r.open_discrepancies} 张"
    return (f"{head}\n> {HEALTH_METRICS_ZH['closure']} {pct(r.closure_rate)}（{r.closed}/{r.documents}）"
            f"；{HEALTH_METRICS_ZH['scan']} {pct(r.scan_rate)}（{r.scanned}/{r.scan_lines} 行）"
            f"；{HEALTH_METRICS_ZH['discrepancy']} {disc}；{HEALTH_METRICS_ZH['borrow']} {borrow}")


def render(report: HealthReport, period: str) -> str:
    """The report text: each department's line, then how the score is made."""
    if not report.departments:
        return f"{period} 没有任何单据，无法评分。"
    lines = [_line(r, report.threshold) for r in report.departments]
    return "\n".join([
        f"按部门（单据创建人所在部门）统计 {period} 的账实一致性，共 {len(report.departments)} 个部门，"
        f"{len(report.below())} 个低于 {report.threshold} 分：", *lines,
        f"> 得分 = Σ 权重 × 指标 ÷ 有数据指标的权重和 × 100；权重：{weights_zh(report.weights)}（[health] weights）",
        f"> 差异闭环时长指标 = min(1, {report.target_hours}h ÷ P90)；单据闭环率 = 当月创建且已过账或作废的单据占比；"
        "扫码执行率 = 必扫类型已过账单据中扫码录入的行占比；借货归还率 = 到期前归还数量 ÷ 当月到期的借出数量"])


@job("health_report", title="月度库存健康度诊断", cron="3 9 5 * *", period=previous_month, channel="managers")
async def health_report_job(ctx: JobContext) -> str:
    """The report to the channel, then one plan task per department under the threshold to its head."""
    month = date.fromisoformat(f"{ctx.period}-01")
    async with ctx.db.read() as s:
        report = await health_report(s, ctx.settings, month, ctx.now)
        heads = await department_heads(s, [r.department for r in report.below()])
    await ctx.post(Message("markdown", title=f"库存健康度诊断 {ctx.period}", text=render(report, ctx.period)),
                   "report")
    for r in report.below():
        head = heads.get(r.department)
        await ctx.db.write(lambda s, r=r, head=head: open_plan(s, ctx.period, r.department, r.score, head, ctx.now))
        to: Recipient = ToUser(head) if head else ToRole("manager")
        await ctx.send(to, text(
            f"【改进计划待提交】{r.department} 在 {ctx.period} 库存健康度诊断中得 {r.score} 分，"
            f"低于 {report.threshold} 分。请针对得分低的指标提交改进计划，发送：改进计划 <内容>"
            "（例如：改进计划 出库一律扫码，差异单 48 小时内闭环）。提交前每周一会提醒一次。"), f"plan:{r.department}")
    below = "、".join(f"{r.department} {r.score}" for r in report.below()) or "无"
    return f"{len(report.departments)} 个部门，低于 {report.threshold} 分：{below}"
