"""Report lists as .xlsx workbooks (core.reports.xlsx: rows streamed as XML, memory flat for 100,000 rows)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from zoneinfo import ZoneInfo

from core.reports.risk import COST_ZH, FORMULA_ZH, REASON_ZH, RiskReport
from core.reports.xlsx import Book

RISK_HEADER = ("SKU", "商品名称", "分类", "单位", "预警原因", "期末在库", "近30天平均库存", "近30天出库量", "周转率",
               "最近出入库", "单位成本", "成本来源", "库存金额")


def _num(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def risk_workbook(report: RiskReport, tz: ZoneInfo) -> bytes:
    """The full risk list: one sheet of every item (most valuable first) and one explaining the figures."""
    wb = Book()
    ws = wb.sheet("高风险商品")
    ws.append(RISK_HEADER, bold=True)
    for i in report.items:
        ws.append([i.sku, i.name, i.category, i.unit, REASON_ZH[i.reason], _num(i.on_hand), _num(i.average),
                   _num(i.issued), _num(i.turnover),
                   i.last_move.astimezone(tz).strftime("%Y-%m-%d %H:%M") if i.last_move else "从未",
                   _num(i.unit_cost), COST_ZH[i.cost_source], _num(i.value)])
    notes = wb.sheet("说明")
    for row in (("统计区间", f"{report.start} 至 {report.end} 前一日（共 30 天）"),
                ("公式", FORMULA_ZH),
                ("期末在库", "统计区间最后一天日末的在库数量（所有仓库合计，不含借出）"),
                ("出库量", "销售出库 + 其他出库（已过账，扣除作废），不含调拨、借出、报损和盘点差异"),
                ("无出入库", "统计区间内没有任何出入库记录但期末在库 > 0"),
                ("单位成本", "最近一次采购入库的不含税单价（按库存单位折算）；没有采购入库时用期初单价"),
                ("库存金额", "期末在库 × 单位成本"),
                ("商品数", f"{len(report.items)} 个预警商品（有库存的商品 {report.products_with_stock} 个）")):
        notes.append(row)
    return wb.bytes()


def table_workbook(title: str, header: tuple[str, ...], rows: Iterable[Iterable[object]],
                   notes: Iterable[tuple[str, str]]) -> bytes:
    """A workbook of one table (bold header) and a 说明 sheet of (label, text) notes."""
    wb = Book()
    ws = wb.sheet(title)
    ws.append(header, bold=True)
    for row in rows:
        ws.append([float(v) if isinstance(v, Decimal) else v for v in row])
    sheet = wb.sheet("说明")
    for label, text in notes:
        sheet.append([label, text])
    return wb.bytes()
