"""Monday 09:13 purchase-suggestion hit-rate board (the seed's 采购建议命中率) for the week that ended, to the
purchasing channel: suggested vs consumed per product, the deviation rate, the products off by more than 25% two
weeks running with the seed's advice (MOQ and purchase unit), the full board as an .xlsx attachment."""

from __future__ import annotations

from datetime import date, timedelta

from cards.model import Message
from core.reports.files import download_url, store_file
from core.reports.health import pct
from core.reports.hit_rate import ADVICE_ZH, LIMIT, SOURCE_ZH, BoardRow, HitBoard, WeekFigures, hit_board
from core.reports.sheets import table_workbook
from core.types import fq
from jobs.charts import comparison_chart
from jobs.context import JobContext
from jobs.registry import iso_week, job

TOP_FLAGGED = 10
CHART_PRODUCTS = 8
TOP_OTHERS = 5
HEADER = ("SKU", "商品名称", "单位", "建议量", "实际消耗", "偏差率", "前一周建议量", "前一周实际消耗", "前一周偏差率",
          "连续2周>25%", "最小起订量", "包装规格", "采购单位", "采购单位换算")


def _dev(w: WeekFigures) -> str:
    return "无消耗" if w.deviation is None else pct(w.deviation)


def _master(r: BoardRow) -> str:
    unit = f"采购单位 {r.purchase_unit}" + (f"（1{r.purchase_unit}={r.purchase_factor}{r.unit}）"
                                          if r.purchase_factor != 1 else "")
    return f"最小起订量 {fq(r.moq)}{r.unit}，{unit}，包装 {fq(r.pack)}{r.unit}"


def _line(r: BoardRow, advice: bool) -> str:
    head = (f"- {r.name}（{r.sku}）建议 {fq(r.week.suggested)}{r.unit} / 实际 {fq(r.week.consumed)}{r.unit}，"
            f"偏差 {_dev(r.week)}（前一周 {_dev(r.before)}）")
    return head + (f" → {_master(r)}" if advice else "")


def render(board: HitBoard) -> str:
    """The message: the hit rate, the flagged products with their master data, the largest other deviations."""
    span = f"{board.monday} 至 {board.monday + timedelta(days=6)}"
    if not board.rows:
        return f"上周（{span}）没有建议采购也没有消耗的商品，无命中率可算。"
    flagged = board.flagged
    others = [r for r in board.rows if not r.flagged and r.week.off][:TOP_OTHERS]
    lines = [f"上周（{span}）{len(board.rows)} 个商品，命中率 **{pct(board.hit_rate)}**"
             f"（偏差 ≤{pct(LIMIT)} 的商品占比），连续2周偏差>{pct(LIMIT)} 的商品 **{len(flagged)}** 个"
             + ("：" if flagged else "。")]
    lines += [_line(r, True) for r in flagged[:TOP_FLAGGED]]
    if len(flagged) > TOP_FLAGGED:
        lines.append(f"另有 {len(flagged) - TOP_FLAGGED} 个连续偏差的商品，见附件。")
    if flagged:
        lines.append(f"**{ADVICE_ZH}**")
    if others:
        lines.append("上周偏差较大的其他商品：")
        lines += [_line(r, False) for r in others]
    lines.append(f"> 偏差率 = |建议量 − 实际消耗| ÷ 实际消耗；实际消耗 = 已过账销售出库减销售退货。{SOURCE_ZH}。"
                 "完整看板见附件。")
    return "\n".join(lines)


def _cells(r: BoardRow) -> list[object]:
    return [r.sku, r.name, r.unit, r.week.suggested, r.week.consumed, _dev(r.week), r.before.suggested,
            r.before.consumed, _dev(r.before), "是" if r.flagged else "", r.moq, r.pack, r.purchase_unit,
            r.purchase_factor]


@job("hit_rate", title="采购建议命中率看板（每周）", cron="13 9 * * 1", period=iso_week, channel="purchasing")
async def hit_rate(ctx: JobContext) -> str:
    """The board of the ISO week before the period's week, with the week before that for the two-week rule."""
    year, week = ctx.period.split("-W")
    monday = date.fromisocalendar(int(year), int(week), 1) - timedelta(days=7)
    board = await hit_board(ctx.db, ctx.settings, monday, ctx.heavy)
    title = f"采购建议命中率 {monday:%G-W%V}"
    text = render(board)
    if not board.rows:
        await ctx.post(Message("markdown", title=title, text=text), "board")
        return "无商品"
    data = await ctx.heavy(table_workbook, "采购建议命中率", HEADER, [_cells(r) for r in board.rows],
                           [("统计周", f"{monday} 至 {monday + timedelta(days=6)}（前一周用于判断连续 2 周）"),
                            ("偏差率", "|建议量 − 实际消耗| ÷ 实际消耗；实际消耗为 0 而有建议量时记为“无消耗”，"
                                       "算作偏差"),
                            ("建议量", SOURCE_ZH), ("建议", ADVICE_ZH)])
    name = f"采购建议命中率_{monday:%G-W%V}.xlsx"
    kept = await ctx.db.write(lambda s: store_file(s, ctx.key("xlsx"), name, data, ctx.now))
    await ctx.post(Message("file", title=title, text=text, data=data, filename=name,
                           url=download_url(ctx.settings, kept.token)), "board")
    shown = (board.flagged or [r for r in board.rows if r.week.off])[:CHART_PRODUCTS]
    if shown:  # the products to look at: suggested vs consumed, the week and the one before
        png = await ctx.heavy(comparison_chart, f"{title}：建议量 vs 实际消耗（偏差最大的商品）",
                              [r.name for r in shown], [float(r.week.suggested) for r in shown],
                              [float(r.week.consumed) for r in shown])
        await ctx.post(Message("image", title=f"{title} 建议量 vs 实际消耗", png=png), "chart")
    return f"{len(board.rows)} 个商品，命中率 {pct(board.hit_rate)}，连续偏差 {len(board.flagged)} 个"
