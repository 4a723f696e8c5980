"""Plain-text rendering of ledger results for the command line."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import tzinfo

from core.errors import DomainError
from core.ledger.diagnose import DocumentDiagnosis, PairDiagnosis
from core.ledger.overview import OverviewRow
from core.ledger.stock import WarehouseStock
from core.types import fq
from handlers import diagnosis_text


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


def error_text(err: DomainError) -> str:
    """A domain error for people: what went wrong and how to fix it."""
    return f"错误：{err.message_zh}\n处理办法：{err.fix_zh}"


def document_diagnosis(d: DocumentDiagnosis) -> str:
    """Every failing check of a document."""
    return "\n".join([diagnosis_text.document_head(d), *diagnosis_text.document_lines(d)])


def pair_diagnosis(d: PairDiagnosis, tz: tzinfo) -> str:
    """Three books side by side, conflicts marked, freeze log."""
    rows = [list(b) for b in diagnosis_text.books(d)]
    return "\n".join([diagnosis_text.pair_head(d), table(["账本", "数据"], rows), *diagnosis_text.pair_tail(d, tz)])


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
