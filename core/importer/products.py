"""Product import: validate rows (units and factors, barcodes, purchasers, defaults) and write them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.importer.lookup import _fetch_by, _fetch_in
from core.importer.parsing import _ABSENT, _INVALID, _Bad, _bool, _decimal, _nonneg_dec, _nonneg_int
from core.importer.progress import Progress, _tick
from core.importer.reading import _Row, _Table
from core.importer.results import RowError
from core.importer.rowcheck import _Cells, _duplicates, _final_owner_conflict
from core.importer.writing import _write_simple
from core.models import DocumentLine, Product, User

_SCI = re.compile(r"[+-]?\d+(\.\d+)?[eE][+-]?\d+")


@dataclass(frozen=True)
class _ProductRefs:
    """What the rows of a product import are checked against, read once for the whole file."""

    existing: dict[str, Product]  # by SKU
    holders: dict[str, Product]  # current holder of each barcode in the file
    file_barcodes: dict[str, str | None]  # SKU → barcode the file gives it
    purchasers: dict[str, User]  # by name
    used: set[int]  # ids of existing products that documents refer to


# Optional columns: parser and the value a blank cell (or, for a new product, a missing column) takes.
_DEFAULTS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "shelf_life_days": (_nonneg_int, None),
    "batch_tracked": (_bool, False),
    "lead_time_days": (_nonneg_int, 0),
    "buffer_days": (_nonneg_int, 0),
    "moq": (_nonneg_dec, Decimal(0)),
    "pack_size": (_nonneg_dec, Decimal(1)),
    "auto_replenish": (_bool, False),
}


async def _check_products(session: AsyncSession, table: _Table, errors: list[RowError],
                          progress: Progress) -> list[tuple[Product | None, dict[str, Any]]]:
    rows = table.rows
    skus = [(r, r.values.get("sku", "")) for r in rows]
    _duplicates(skus, "sku", "SKU", errors, "每个 SKU 只能出现一次，请删除或合并重复的行")
    has_barcode = "barcode" in table.columns
    if has_barcode:
        _duplicates(((r, r.values["barcode"]) for r in rows), "barcode", "条码", errors,
                    "条码必须唯一，请核对这些行的条码")
    refs = await _product_refs(session, rows, [s for _, s in skus], has_barcode)
    plan: list[tuple[Product | None, dict[str, Any]]] = []
    for n, row in enumerate(rows, start=1):
        c = _Cells("products", row, errors)
        before = len(errors)
        current, attrs = _check_product_row(c, refs)
        if len(errors) == before:
            plan.append((current, attrs))
        _tick(progress, n, len(rows))
    return plan


async def _product_refs(session: AsyncSession, rows: list[_Row], skus: list[str], has_barcode: bool) -> _ProductRefs:
    existing = await _fetch_by(session, Product, "sku", skus)
    holders: dict[str, Product] = {}
    file_barcodes: dict[str, str | None] = {}
    if has_barcode:
        file_barcodes = {r.values.get("sku", ""): (r.values["barcode"] or None) for r in rows}
        holders = await _fetch_by(session, Product, "barcode", file_barcodes.values())
    purchasers = await _fetch_by(session, User, "name", (r.values.get("purchaser") for r in rows))
    used = set(await _fetch_in(
        session, lambda c: select(DocumentLine.product_id).where(DocumentLine.product_id.in_(c)).distinct(),
        (p.id for p in existing.values())))
    return _ProductRefs(existing, holders, file_barcodes, purchasers, used)


def _check_product_row(c: _Cells, refs: _ProductRefs) -> tuple[Product | None, dict[str, Any]]:
    """(the existing product or None, the attributes to write) for one row; problems are recorded on c."""
    sku, name, stock_unit = c.text("sku") or "", c.text("name") or "", c.text("stock_unit") or ""
    current = refs.existing.get(sku)
    attrs: dict[str, Any] = {"sku": sku, "name": name, "stock_unit": stock_unit}
    if current is not None and stock_unit and stock_unit != current.stock_unit and current.id in refs.used:
        c.error("stock_unit",
                f"商品 {sku} 已有单据记录，不能把库存单位从「{current.stock_unit}」改为「{stock_unit}」",
                f"改库存单位会改变历史数量的含义（如 g 与 kg）；请保持「{current.stock_unit}」，或新建一个 SKU")
    _check_barcode(c, refs, sku, attrs)
    category = c.text("category")
    if category is not None:
        attrs["category"] = category
    _purchase_unit(c, current, stock_unit, attrs)
    c.fill(attrs, ((key, fn, default) for key, (fn, default) in _DEFAULTS.items()), is_new=current is None)
    purchaser = c.text("purchaser")
    if purchaser is not None:
        user = refs.purchasers.get(purchaser) if purchaser else None
        if purchaser and user is None:
            c.error("purchaser", f"找不到采购负责人「{purchaser}」", "请填写已导入用户的姓名（先导入用户），或留空")
        attrs["purchaser_id"] = user.id if user else None
    return current, attrs


def _check_barcode(c: _Cells, refs: _ProductRefs, sku: str, attrs: dict[str, Any]) -> None:
    """The barcode (when the column is there): not mangled by Excel, and nobody else's after the import."""
    barcode = c.text("barcode")
    if barcode is None:
        return
    attrs["barcode"] = barcode or None
    if barcode and _SCI.fullmatch(barcode):
        c.error("barcode", f"条码「{barcode}」被 Excel 转成了科学计数法",
                "请把条码列设为「文本」格式后重新输入完整条码")
    holder = refs.holders.get(barcode) if barcode else None
    if holder is not None and _final_owner_conflict(holder.sku, sku, barcode, refs.file_barcodes):
        c.error("barcode", f"条码「{barcode}」已被商品 {holder.sku}「{holder.name}」使用",
                f"条码必须唯一：请核对条码，或在本文件中同时修改 {holder.sku} 的条码")


def _purchase_unit(c: _Cells, current: Product | None, stock_unit: str, attrs: dict[str, Any]) -> None:
    """Purchase unit and factor: never guess a factor for a different unit."""
    pu = c.text("purchase_unit")
    pf = c.parse("purchase_factor", _positive_factor)
    if pu is None and current is not None and pf is _ABSENT:
        return  # neither column present: keep the existing purchase unit and factor
    if pu is None and current is not None:
        pu = current.purchase_unit
    if not pu or pu == stock_unit:
        if pf not in (_ABSENT, None, _INVALID, 1):
            c.error("purchase_factor", f"采购单位与库存单位相同（{stock_unit}），换算系数只能为 1，而不是 {pf}",
                    "请把换算系数改为 1 或留空；如按箱采购，请在「采购单位」填写 箱")
        attrs["purchase_unit"], attrs["purchase_factor"] = stock_unit, 1
        return
    if pf in (_ABSENT, None):
        if pf is _ABSENT and current is not None and current.purchase_unit == pu:
            pf = current.purchase_factor
        else:
            c.error("purchase_factor",
                    f"采购单位「{pu}」与库存单位「{stock_unit}」不同，但没有填写换算系数",
                    f"请填写 1{pu} 等于多少{stock_unit}（正整数，如 24）；系统不会猜测换算系数")
    attrs["purchase_unit"], attrs["purchase_factor"] = pu, pf


def _positive_factor(text: str) -> int:
    d = _decimal(text)
    if d <= 0 or d != d.to_integral_value():
        raise _Bad(f"「{text}」不是正整数",
                   "换算系数必须是正整数，如 1箱=24瓶 填 24；若换算不是整数，请改用更小的库存单位")
    return int(d)


async def _write_products(session: AsyncSession, plan: list[tuple[Product | None, dict[str, Any]]]) -> tuple[int, int]:
    # Clear barcodes that move between products first, so a swap does not trip the unique index.
    moving = [p for p, a in plan if p is not None and "barcode" in a and a["barcode"] != p.barcode and p.barcode]
    for p in moving:
        p.barcode = None
    if moving:
        await session.flush()
    return await _write_simple(session, Product, plan)
