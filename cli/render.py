"""Plain-text rendering of ledger results for the command line."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import tzinfo

from core.errors import CheckResult, DomainError
from core.ledger.diagnose import DocumentDiagnosis, PairDiagnosis
from core.ledger.doctypes import DOC_TYPES, STATUS_ZH
from core.ledger.overview import OverviewRow
from core.ledger.stock import WarehouseStock
from core.types import fq


def width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, cols: int) -> str:
    """Left-align text in cols display columns."""
    return text + " " * max(0, cols - width(text))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned text table."""
    cols = [max(width(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(pad(str(c), w) for c, w in zip(r, cols, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in cols))
    return "\n".join(lines)


def stock_report(levels: Sequence[WarehouseStock], title: str) -> str:
    """Per product: one row per warehouse, then one indented row per batch."""
    if not levels:
        return f"{title}：没有库存记录"
    out: list[str] = [title]
    by_product: dict[str, list[WarehouseStock]] = {}
    for lv in levels:
        by_product.setdefault(lv.sku, []).append(lv)
    for sku, rows in by_product.items():
        first = rows[0]
        out.append(f"\n{first.name}（{sku}，单位 {first.unit}）")
        body: list[list[str]] = []
        for r in rows:
            body.append([f"{r.warehouse} {r.warehouse_name}", "", "", fq(r.on_hand), fq(r.on_loan), fq(r.reserved),
                         fq(r.available)])
            for b in r.batches:
                if b.batch:
                    body.append(["", b.batch, str(b.expiry or "—"), fq(b.on_hand), fq(b.on_loan), "", ""])
        out.append(table(["仓库", "批次", "到期日", "在库", "借出", "预留", "可用"], body))
    return "\n".join(out)


def check_lines(results: Sequence[CheckResult]) -> list[str]:
    """One numbered line per failed check with its fix."""
    return [
        f"{i}. {'⚠ 警告' if r.warning else '✗'} {r.message_zh}\n   处理办法：{r.fix_zh}"
        for i, r in enumerate(results, start=1)
    ]


def error_text(err: DomainError) -> str:
    """A domain error for people: what went wrong and how to fix it."""
    return f"错误：{err.message_zh}\n处理办法：{err.fix_zh}"


def document_diagnosis(d: DocumentDiagnosis) -> str:
    """Every failing check of a document."""
    head = f"诊断 {d.number}（{DOC_TYPES[d.type].name_zh}，{STATUS_ZH[d.status]}）"
    if d.status not in ("draft", "submitted", "rejected"):
        return f"{head}\n该单据{STATUS_ZH[d.status]}，无需过账检查。"  # the status says 已…
    if not d.failures:
        return f"{head}\n全部检查通过，可以过账。"
    return "\n".join([head, f"共 {len(d.failures)} 项未通过：", *check_lines(d.failures)])


def pair_diagnosis(d: PairDiagnosis, tz: tzinfo) -> str:
    """Three books side by side, conflicts marked, freeze log."""
    u = d.unit
    count = "无盘点记录" if d.count_number is None else (
        f"{d.count_number} 实盘 {fq(d.counted_qty)}{u}（当时账面 {fq(d.count_book_qty)}{u}）"
    )
    rows = [
        ["库存账", f"在库 {fq(d.ledger_on_hand)}{u}，借出 {fq(d.ledger_on_loan)}{u}，"
                  f"采购入库 {fq(d.ledger_received)}{u}，销售净出库 {fq(d.ledger_sold)}{u}"],
        ["财务账", f"应付对应 {fq(d.payable_qty)}{u}，应收对应 {fq(d.receivable_qty)}{u}"],
        ["实物账", count],
    ]
    head = f"诊断 {d.name}（{d.sku}）@ {d.warehouse}" + ("  【已冻结】" if d.frozen else "")
    out = [head, table(["账本", "数据"], rows)]
    if d.conflicts:
        out.append("冲突：")
        out += [f"  ⚠ [{c.books}] {c.message_zh}" for c in d.conflicts]
    else:
        out.append("三账一致，未发现冲突。")
    if d.freeze_events:
        out.append("冻结事件日志：")
        names = {"freeze": "冻结", "trigger": "再次触发", "unfreeze": "解冻"}
        out += [
            f"  {at.astimezone(tz):%Y-%m-%d %H:%M:%S}  {names.get(ev, ev)}  {why}" for at, ev, why in d.freeze_events
        ]
    return "\n".join(out)


def overview(rows: Sequence[OverviewRow]) -> str:
    """The stock overview table."""
    if not rows:
        return "库存概览：暂无库存"
    body = [
        [r.sku, r.name, r.unit, fq(r.on_hand), fq(r.on_loan), fq(r.reserved), fq(r.available), str(r.warehouses),
         str(r.next_expiry or "—")]
        for r in rows
    ]
    return "库存概览\n" + table(["SKU", "名称", "单位", "在库", "借出", "预留", "可用", "仓库数", "最近到期"], body)
