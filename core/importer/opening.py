"""Opening-stock import: validate rows, then create one opening document per warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import DomainError
from core.importer.lookup import _CHUNK, _fetch_by
from core.importer.parsing import _INVALID, _date, _decimal, _nonneg_dec
from core.importer.progress import Progress, _tick
from core.importer.reading import _Row, _Table
from core.importer.results import ImportFailed, RowError
from core.importer.rowcheck import _Cells, _duplicates
from core.ledger.documents import LineInput, create_document, post_document, submit_document
from core.ledger.units import to_stock_qty
from core.models import Batch, Document, DocumentLine, Product, Warehouse


@dataclass(frozen=True)
class _OpeningLine:
    row: int
    warehouse: str
    line: LineInput


def _unit_column(code: str) -> str:
    return "qty" if code == "UNIT_NOT_WHOLE" else "unit"


@dataclass
class _OpeningRefs:
    """What the rows of an opening import are checked against, read once for the whole file."""

    products: dict[str, Product]
    by_code: dict[str, Warehouse]
    by_name: dict[str, Warehouse | None]  # None: several warehouses have the name
    batches: dict[tuple[int, str], Batch]
    openings: dict[tuple[int, int], str]  # (product, warehouse) → number of its opening document
    file_expiry: dict[tuple[str, str], tuple[int, date | None]] = field(default_factory=dict)  # first row per batch


async def _opening_refs(session: AsyncSession, rows: list[_Row]) -> _OpeningRefs:
    products = await _fetch_by(session, Product, "sku", (r.values.get("sku") for r in rows))
    all_wh = list(await session.scalars(select(Warehouse)))
    by_code = {w.code: w for w in all_wh}
    by_name: dict[str, Warehouse | None] = {}
    for w in all_wh:
        by_name[w.name] = None if w.name in by_name else w  # ambiguous names do not resolve
    pairs = sorted({(products[r.values["sku"]].id, r.values.get("batch", ""))
                    for r in rows if r.values.get("sku") in products and r.values.get("batch")})
    batches: dict[tuple[int, str], Batch] = {}
    for i in range(0, len(pairs), _CHUNK):
        stmt = select(Batch).where(tuple_(Batch.product_id, Batch.code).in_(pairs[i : i + _CHUNK]))
        batches.update({(b.product_id, b.code): b for b in await session.scalars(stmt)})
    return _OpeningRefs(products, by_code, by_name, batches, await _existing_openings(session, products))


async def _existing_openings(session: AsyncSession, products: dict[str, Product]) -> dict[tuple[int, int], str]:
    """The first not-cancelled opening document per (product, warehouse) of these products."""
    openings: dict[tuple[int, int], str] = {}
    pids = sorted({p.id for p in products.values()})
    for i in range(0, len(pids), _CHUNK):
        stmt = (
            select(DocumentLine.product_id, DocumentLine.warehouse_id, Document.number)
            .join(Document, Document.id == DocumentLine.document_id)
            .where(Document.type == "opening", Document.status != "cancelled",
                   DocumentLine.product_id.in_(pids[i : i + _CHUNK]))
        )
        for pid, wid, number in (await session.execute(stmt)).all():
            openings.setdefault((pid, wid), number)
    return openings


async def _check_opening(session: AsyncSession, table: _Table, errors: list[RowError], today: date,
                         progress: Progress) -> list[_OpeningLine]:
    rows = table.rows
    refs = await _opening_refs(session, rows)
    keys: list[tuple[_Row, str]] = []
    plan: list[_OpeningLine] = []
    for n, row in enumerate(rows, start=1):
        line = _check_opening_row(_Cells("opening", row, errors), refs, today, keys)
        if line is not None:
            plan.append(line)
        _tick(progress, n, len(rows))
    _duplicates(keys, "sku", "期初行", errors, "同一商品在同一仓库的同一批次只能填一行，请合并数量")
    return plan


def _check_opening_row(c: _Cells, refs: _OpeningRefs, today: date,
                       keys: list[tuple[_Row, str]]) -> _OpeningLine | None:
    """Check one row, recording its problems as RowErrors; the line it becomes, or None when it has problems."""
    row, before = c.row, len(c.errors)
    sku, wh_text = c.text("sku") or "", c.text("warehouse") or ""
    product = refs.products.get(sku)
    if sku and product is None:
        c.error("sku", f"找不到商品「{sku}」", "请核对 SKU，或先导入商品档案（jxcbot import products …）")
    wh = refs.by_code.get(wh_text) or refs.by_name.get(wh_text)
    if wh_text and wh is None:
        c.error("warehouse", f"找不到仓库「{wh_text}」",
                "请核对仓库编码，可用：" + "、".join(sorted(refs.by_code)[:20]) if refs.by_code else "请先导入仓库档案")
    qty = _check_opening_qty(c)
    unit = row.values.get("unit", "")
    _check_opening_unit(c, product, sku, unit, qty)
    batch = c.text("batch") or ""
    if product is not None and product.batch_tracked and not batch:
        c.error("batch", f"商品 {sku}「{product.name}」按批次管理，缺少批次号",
                "请填写批次号（如生产日期 20261120）和到期日")
    expiry = _check_opening_expiry(c, batch, today)
    if product is not None and batch and expiry is not _INVALID:
        _check_batch_expiry(c, refs, product, sku, batch, expiry if isinstance(expiry, date) else None)
    cost = c.parse("unit_cost", _nonneg_dec)
    if product is not None and wh is not None:
        keys.append((row, f"{sku} @ {wh.code} 批次 {batch or '（无）'}"))
        number = refs.openings.get((product.id, wh.id))
        if number:
            c.error("sku", f"商品 {sku} 在仓库 {wh.code} 已有期初单 {number}",
                    f"期初只能导入一次：如需修改，请先作废 {number}（或用手工调整单），再重新导入")
    if len(c.errors) != before:
        return None
    return _OpeningLine(row.row, wh.code, LineInput(
        sku=sku, qty=qty, unit=unit, batch=batch, expiry=expiry if isinstance(expiry, date) else None,
        unit_price=cost if isinstance(cost, Decimal) else Decimal(0)))


def _check_opening_qty(c: _Cells) -> object:
    """The parsed quantity (or a parse marker); it must be above 0."""
    qty = c.parse("qty", _decimal)
    if isinstance(qty, Decimal):
        if qty < 0:
            c.error("qty", f"期初数量不能为负（{qty}）", "期初库存只能填正数；盘亏请在导入后用盘点或手工调整处理")
        elif qty == 0:
            c.error("qty", "期初数量为 0", "数量为 0 的行无需导入，请删除该行或填写实际数量")
    return qty


def _check_opening_unit(c: _Cells, product: Product | None, sku: str, unit: str, qty: object) -> None:
    """The unit is given (never defaulted) and is one of the product's, whole where it must be."""
    if product is None:
        c.text("unit")  # reports a blank unit as a missing required value
    elif not unit:  # never default to a unit: this is the g-vs-kg mistake
        c.error("unit", f"商品 {sku}「{product.name}」的单位为空",
                f"请填写单位：库存单位「{product.stock_unit}」或采购单位「{product.purchase_unit}」"
                "（按数量实际对应的单位），系统不会默认为最小单位")
    else:
        try:
            to_stock_qty(product, unit, qty if isinstance(qty, Decimal) and qty > 0 else Decimal(1))
        except DomainError as e:
            c.error(_unit_column(e.code), e.message_zh, e.fix_zh)


def _check_opening_expiry(c: _Cells, batch: str, today: date) -> object:
    """The parsed expiry date (or a parse marker): not past, and only with a batch."""
    expiry = c.parse("expiry", _date)
    if isinstance(expiry, date):
        if expiry < today:
            c.error("expiry", f"到期日 {expiry} 已过（今天是 {today}）",
                    "过期商品不能作为期初库存入库：请核对到期日，过期品请在导入后走报损流程")
        if not batch:
            c.error("expiry", "填写了到期日但没有批次号",
                    "到期日属于批次：请同时填写批次号（如 20270501），或清空到期日")
    return expiry


def _check_batch_expiry(c: _Cells, refs: _OpeningRefs, product: Product, sku: str, batch: str,
                        exp: date | None) -> None:
    """A batch has one expiry date: the same as the stored batch's, and the same on every row of the file."""
    known = refs.batches.get((product.id, batch))
    if known is not None and exp is not None and known.expiry != exp:
        c.error("expiry", f"批次 {batch} 已存在，到期日为 {known.expiry or '未记录'}，与本行 {exp} 不一致",
                f"同一批次只能有一个到期日：请改为 {known.expiry} 或使用新的批次号" if known.expiry
                else "该批次已存在且未记录到期日，请使用新的批次号")
    first = refs.file_expiry.setdefault((sku, batch), (c.row.row, exp))
    if first[0] != c.row.row and first[1] != exp:
        c.error("expiry", f"批次 {batch} 在第 {first[0]} 行的到期日为 {first[1] or '空'}，本行为 {exp or '空'}",
                "同一批次只能有一个到期日，请统一")


def _row_of(e: DomainError, lines: list[_OpeningLine]) -> tuple[int, str]:
    """Map an error from create/post back to a spreadsheet row and column."""
    column = {"UNIT_MISSING": "unit", "UNIT_UNKNOWN": "unit", "UNIT_NOT_WHOLE": "qty", "BATCH_REQUIRED": "batch",
              "EXPIRY_PAST": "expiry", "BATCH_EXPIRED": "expiry"}.get(e.code, "sku")
    line = e.fields.get("line")
    if isinstance(line, int) and 1 <= line <= len(lines):
        return lines[line - 1].row, column
    for ol in lines:
        if ol.line.sku == e.fields.get("sku") and e.fields.get("warehouse") in (None, ol.warehouse):
            return ol.row, column
    return (lines[0].row if lines else 0), column


async def _write_opening(session: AsyncSession, settings: Settings, plan: list[_OpeningLine], *, post: bool,
                         now: datetime | None, progress: Progress) -> tuple[str, ...]:
    groups: dict[str, list[_OpeningLine]] = {}
    for ol in plan:
        groups.setdefault(ol.warehouse, []).append(ol)
    numbers: list[str] = []
    done = 0
    for code, lines in groups.items():
        try:
            doc = await create_document(session, settings, "opening", [ol.line for ol in lines], warehouse=code,
                                        note="Excel 导入期初库存", now=now)
            await submit_document(session, settings, doc, now=now)
            if post:
                await post_document(session, settings, doc, now=now)
        except DomainError as e:
            row, column = _row_of(e, lines)
            raise ImportFailed([RowError(row, column, e.message_zh, e.fix_zh)]) from None
        numbers.append(doc.number)
        done += len(lines)
        if progress is not None:
            progress(done, len(plan))
    return tuple(numbers)
