"""08:35 daily risk-item report (the seed's 高风险商品预警表) to the supervisors' channel: the most valuable items in
the message, the full list as an .xlsx attachment (a download link where the platform takes no files)."""

from __future__ import annotations

from datetime import date, timedelta

from cards.model import Message
from core.reports.files import download_url, store_file
from core.reports.risk import COST_ZH, FORMULA_ZH, REASON_ZH, RiskItem, RiskReport, risk_items
from core.reports.sheets import risk_workbook
from core.types import fq
from jobs.context import JobContext
from jobs.registry import day, job

TOP = 10


def _money(value: object) -> str:
    return "单价未知" if value is None else f"¥{value:,.2f}"


def _line(n: int, i: RiskItem) -> str:
    why = REASON_ZH[i.reason] if i.turnover is None or i.reason == "idle" else f"周转率 {i.turnover:.2f}"
    return f"{n}. {i.name}（{i.sku}）在库 {fq(i.on_hand)}{i.unit}，{_money(i.value)}，{why}"


def summary(report: RiskReport) -> str:
    """The message: counts, the formula, the top items by stock value, where the full list is."""
    span = f"近30天（{report.start} 至 {report.end - timedelta(days=1)}）"
    if not report.items:
        return f"{span}没有高风险商品：有库存的 {report.products_with_stock} 个商品都有出入库且周转率不低于 0.3。"
    head = (f"{span}共 **{len(report.items)}** 个高风险商品：无出入库 {len(report.idle)} 个，"
            f"周转率<0.3 {len(report.slow)} 个，库存金额合计 {_money(report.total_value)}。")
    top = [_line(n, i) for n, i in enumerate(report.items[:TOP], start=1)]
    more = f"\n另有 {len(report.items) - TOP} 个，见附件完整清单。" if len(report.items) > TOP else "\n完整清单见附件。"
    return "\n".join([head, f"按库存金额排前 {min(TOP, len(report.items))}：", *top]) + more + (
        f"\n> {FORMULA_ZH}\n> 库存金额 = 期末在库 × 单位成本（{COST_ZH['receipt']}（不含税，按库存单位），"
        f"没有则用{COST_ZH['opening']}）")


@job("risk_report", title="每日高风险商品预警", cron="35 8 * * *", period=day, channel="supervisors")
async def risk_report(ctx: JobContext) -> str:
    """The report of the day before the period's day; the workbook built off the event loop."""
    today = date.fromisoformat(ctx.period)
    async with ctx.db.read() as s:
        report = await risk_items(s, today, ctx.settings.timezone)
    title = f"高风险商品预警 {ctx.period}"
    if not report.items:
        await ctx.post(Message("markdown", title=title, text=summary(report)), "report")
        return "无高风险商品"
    data = await ctx.heavy(risk_workbook, report, ctx.settings.timezone)
    name = f"高风险商品预警_{ctx.period}.xlsx"
    kept = await ctx.db.write(lambda s: store_file(s, ctx.key("xlsx"), name, data, ctx.now))
    await ctx.post(Message("file", title=title, text=summary(report), data=data, filename=name,
                           url=download_url(ctx.settings, kept.token)), "report")
    return f"高风险商品 {len(report.items)} 个（无出入库 {len(report.idle)}，周转率低 {len(report.slow)}）"
