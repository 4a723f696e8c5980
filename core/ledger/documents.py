"""Document lifecycle: create (draft) → submit → post → cancel, plus reject → draft."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.config import Settings
from core.errors import CheckResult, DomainError
from core.ledger import counts, finance, hooks, master_rows, ordering
from core.ledger.doctypes import COUNTED, DOC_TYPES, NONE, NONZERO, STATUS_ZH, TRANSFER, DocType, doc_type
from core.ledger.document_rows import insert_document
from core.ledger.numbering import next_number
from core.ledger.posting import now_or, plan_document, plan_reversal, prepare, write_moves
from core.ledger.units import to_stock_qty
from core.models import Customer, Document, DocumentLine, Product, Supplier, User, Warehouse
from core.storage import Fast

__all__ = [
    "LineInput",
    "PostResult",
    "cancel_document",
    "create_document",
    "get_document",
    "insert_document",
    "post_document",
    "reject_document",
    "reopen_document",
    "submit_document",
]

# Per lifecycle event and type code, the hook functions to run (built once; fails at import for a hook name
# that no module implements).
_HOOKS = hooks.by_event(DOC_TYPES.values(), hooks.merge(finance.HOOKS, counts.HOOKS, ordering.HOOKS))


@dataclass(frozen=True)
class LineInput:
    """One line as a user gives it: SKU, quantity in a unit, optional warehouse override and batch."""

    sku: str
    qty: Decimal | str | int
    unit: str | None
    warehouse: str | None = None
    batch: str = ""
    expiry: date | None = None
    unit_price: Decimal | str | int = 0
    tax_rate: Decimal | str | int = 0
    counted_qty: Decimal | str | int | None = None
    discrepancy_type: str = ""


@dataclass(frozen=True)
class PostResult:
    """What a posting did: moves written and warnings that flagged the document for review."""

    document: Document
    moves: int
    warnings: tuple[CheckResult, ...]


def _dec(value: Decimal | str | int, what: str) -> Decimal:
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise DomainError("BAD_NUMBER", f"{what}「{value}」不是数字", f"请把{what}改为数字，例如 12 或 1.5",
                          {"value": str(value)}) from None
    if not d.is_finite():
        raise DomainError("BAD_NUMBER", f"{what}「{value}」不是有限数字", f"请把{what}改为数字", {"value": str(value)})
    return d


_DT, _LT = Document.__table__, DocumentLine.__table__


async def _one(session: AsyncSession, model: type, field: str, code: str | None, label: str):
    if code is None:
        return None
    found = await master_rows.by_field(session, model, field, [code])
    if not found:
        raise DomainError("NOT_FOUND", f"找不到{label}「{code}」", f"请核对{label}编码，或先导入{label}档案",
                          {label: code})
    return found[0]


_DOC_BY_NUMBER = select(_DT).where(_DT.c.number == bindparam("number"))
_GET_DOC = Fast(_DOC_BY_NUMBER)
_GET_DOC_FOR_UPDATE = Fast(_DOC_BY_NUMBER.with_for_update())
_LINES_OF = Fast(select(_LT).where(_LT.c.document_id == bindparam("doc_id")).order_by(_LT.c.line_no))


async def get_document(session: AsyncSession, number: str, *, lock: bool = False) -> Document:
    """A document by number with its lines; DomainError when unknown."""
    pg_lock = lock and session.bind.dialect.name == "postgresql"
    found = await (_GET_DOC_FOR_UPDATE if pg_lock else _GET_DOC).objects(session, Document,
                                                                         {"number": number.strip()})
    if not found:
        raise DomainError("DOC_NOT_FOUND", f"找不到单据 {number}", "请核对单据号，格式如 RK20261125001",
                          {"number": number})
    doc = found[0]
    if "lines" not in doc.__dict__:
        set_committed_value(doc, "lines", await _LINES_OF.objects(session, DocumentLine, {"doc_id": doc.id}))
    return doc


async def create_document(
    session: AsyncSession,
    settings: Settings,
    doc_type_code: str,
    lines: list[LineInput],
    *,
    warehouse: str | None = None,
    to_warehouse: str | None = None,
    customer: str | None = None,
    supplier: str | None = None,
    ref_number: str | None = None,
    created_by: str | None = None,
    delivery_date: date | None = None,
    due_date: date | None = None,
    note: str = "",
    now: datetime | None = None,
) -> Document:
    """Create a draft document, validating units and references (nothing is written on error)."""
    dt = _known_type(doc_type_code)
    if not lines:
        raise DomainError("NO_LINES", f"{dt.name_zh}单没有明细行", "请至少填写一行商品与数量")
    now = now_or(now)
    wh = await _one(session, Warehouse, "code", warehouse, "仓库")
    to_wh = await _one(session, Warehouse, "code", to_warehouse, "仓库")
    if dt.effect == TRANSFER:
        _check_transfer(wh, to_wh)
    cust = await _one(session, Customer, "code", customer, "客户")
    supp = await _one(session, Supplier, "code", supplier, "供应商")
    user = await _one(session, User, "name", created_by, "用户")
    ref = await get_document(session, ref_number) if ref_number else None
    _check_ref(dt, ref)
    skus = {ln.sku.strip() for ln in lines}
    products = {p.sku: p for p in await master_rows.by_field(session, Product, "sku", skus)}
    doc = Document(
        number=await next_number(session, dt.prefix, now, settings.timezone),
        type=dt.code,
        status="draft",
        warehouse_id=wh.id if wh else None,
        to_warehouse_id=to_wh.id if to_wh else None,
        customer_id=cust.id if cust else None,
        supplier_id=supp.id if supp else None,
        ref_document_id=ref.id if ref else None,
        created_by_id=user.id if user else None,
        validation_mode=dt.validation_mode(settings.validation),
        delivery_date=delivery_date,
        due_date=due_date,
        note=note,
        created_at=now,
    )
    today = now.astimezone(settings.timezone).date()
    rows = await _line_rows(session, dt, lines, products, wh, today)
    return await insert_document(session, doc, rows)


def _known_type(code: str) -> DocType:
    """The DocType for a code; DomainError BAD_TYPE listing the known types."""
    if code not in DOC_TYPES:
        raise DomainError("BAD_TYPE", f"未知单据类型「{code}」",
                          "可用类型：" + "、".join(f"{t.code}（{t.name_zh}）" for t in DOC_TYPES.values()))
    return doc_type(code)


def _check_transfer(wh: Warehouse | None, to_wh: Warehouse | None) -> None:
    """A transfer goes between two different warehouses; one flagged 不可直发门店 sends nothing to a store (the
    seed's 中央仓 不可直发门店), and anywhere else as usual."""
    if wh is None or to_wh is None or wh.id == to_wh.id:
        raise DomainError("TRANSFER_TARGET", "调拨单需要不同的调出仓库和调入仓库", "请指定调出仓库和调入仓库")
    if not wh.ships_to_stores and to_wh.kind == "store":
        raise DomainError(
            "NO_DIRECT_SHIP", f"仓库 {wh.code} 设置为「不可直发门店」，不能直接调拨到门店 {to_wh.code}",
            f"请经配送仓中转，或由管理员在仓库档案中为 {wh.code} 开启「可直发门店」(ships_to_stores)",
            {"warehouse": wh.code, "to_warehouse": to_wh.code})


def _check_ref(dt: DocType, ref: Document | None) -> None:
    """A type that requires a reference (a sales return) references a posted document of the required type."""
    if dt.requires_ref is None:
        return
    if ref is None or ref.type != dt.requires_ref or ref.status != "posted":
        need = doc_type(dt.requires_ref)
        raise DomainError("RETURN_REF", f"{dt.name_zh}必须关联一张已过账的{need.name_zh}单",
                          f"请填写原{need.name_zh}单号（{need.prefix} 开头）")


async def _line_rows(session: AsyncSession, dt: DocType, lines: list[LineInput], products: dict[str, Product],
                     wh: Warehouse | None, today: date) -> list[dict]:
    """The validated line rows, numbered from 1; a line's own warehouse overrides the document's."""
    line_wh: dict[str, Warehouse] = {}
    rows: list[dict] = []
    for i, li in enumerate(lines, start=1):
        product = products.get(li.sku.strip())
        if product is None:
            raise DomainError("UNKNOWN_SKU", f"第 {i} 行：找不到商品「{li.sku}」", "请核对 SKU，或先导入商品档案",
                              {"line": i, "sku": li.sku})
        lw = wh
        if li.warehouse:
            lw = line_wh.get(li.warehouse)
            if lw is None:
                lw = line_wh[li.warehouse] = await _one(session, Warehouse, "code", li.warehouse, "仓库")
        if lw is None:
            raise DomainError("NO_WAREHOUSE", f"第 {i} 行没有仓库", "请为单据或该行指定仓库", {"line": i})
        rows.append(line_row(dt, i, li, product, lw, today))
    return rows


def _line_quantities(dt: DocType, i: int, li: LineInput) -> tuple[Decimal, Decimal | None]:
    """(quantity, counted quantity) of line i, checked against the type's quantity rule."""
    qty = _dec(li.qty, "数量")
    counted = _dec(li.counted_qty, "盘点数量") if li.counted_qty is not None else None
    if dt.line_qty == NONZERO:
        if qty == 0:
            raise DomainError("ZERO_QTY", f"第 {i} 行数量为 0", "调整数量不能为 0", {"line": i})
    elif dt.line_qty == COUNTED:
        if counted is None or counted < 0:
            raise DomainError("BAD_COUNT", f"第 {i} 行盘点数量缺失或为负", "请填写实盘数量（≥0）", {"line": i})
    elif qty <= 0:
        raise DomainError("BAD_QTY", f"第 {i} 行数量 {qty} 必须大于 0", "请填写正数；要冲回请作废原单据",
                          {"line": i, "qty": str(qty)})
    return qty, counted


def line_row(dt: DocType, i: int, li: LineInput, product: Product, lw: Warehouse, today: date) -> dict:
    """Line i as a row: quantities, unit conversion, batch and expiry checked by the type's rules."""
    qty, counted = _line_quantities(dt, i, li)
    is_count = dt.line_qty == COUNTED
    try:
        factor, stock_abs = to_stock_qty(product, li.unit, counted if is_count else abs(qty))
    except DomainError as e:
        raise DomainError(e.code, f"第 {i} 行：{e.message_zh}", e.fix_zh, {**e.fields, "line": i}) from None
    if product.batch_tracked and not li.batch and dt.batch_required:
        raise DomainError("BATCH_REQUIRED", f"第 {i} 行：商品 {product.sku} 按批次管理，缺少批次号",
                          "请填写批次号和到期日", {"line": i, "sku": product.sku})
    expiry = li.expiry
    if expiry is not None and expiry < today and dt.no_past_expiry:
        raise DomainError("EXPIRY_PAST", f"第 {i} 行：到期日 {expiry} 已过", "请核对到期日；过期商品请勿入库",
                          {"line": i, "expiry": str(expiry)})
    stock_qty = stock_abs if qty >= 0 else -stock_abs
    return {
        "line_no": i,
        "product_id": product.id,
        "warehouse_id": lw.id,
        "batch_code": li.batch.strip(),
        "expiry": expiry,
        "qty": counted if is_count else qty,
        "unit": li.unit.strip(),
        "factor": factor,
        "stock_qty": stock_abs if is_count else stock_qty,
        "unit_price": _dec(li.unit_price, "单价"),
        "tax_rate": _dec(li.tax_rate, "税率"),
        "counted_qty": counted,
        "book_qty": None,
        "reserved_qty": Decimal(0),
        "discrepancy_type": li.discrepancy_type,
    }


_STATUS_UPDATES: dict[tuple[str, ...], Fast] = {}


def _status_update(keys: tuple[str, ...]) -> Fast:
    """UPDATE documents SET status (and `keys`) WHERE id AND status — built once per set of keys."""
    stmt = _STATUS_UPDATES.get(keys)
    if stmt is None:
        t = Document.__table__
        stmt = _STATUS_UPDATES[keys] = Fast(
            update(t)
            .where(t.c.id == bindparam("t_id"), t.c.status == bindparam("t_old"))
            .values(status=bindparam("t_new"), **{k: bindparam(f"v_{k}") for k in keys})
        )
    return stmt


async def _transition(session: AsyncSession, doc: Document, expected: tuple[str, ...], new: str,
                      **values: object) -> None:
    """Compare-and-set the status so a double click or a retried call changes nothing twice."""
    if doc.status not in expected:
        raise DomainError(
            "BAD_STATUS",
            f"单据 {doc.number} 当前状态为「{STATUS_ZH[doc.status]}」，不能改为「{STATUS_ZH[new]}」",
            "请刷新后查看单据最新状态",
            {"number": doc.number, "status": doc.status},
        )
    params = {"t_id": doc.id, "t_old": doc.status, "t_new": new, **{f"v_{k}": v for k, v in values.items()}}
    if await _status_update(tuple(values)).rowcount(session, params) != 1:
        raise DomainError("CONCURRENT", f"单据 {doc.number} 已被他人处理", "请刷新后查看单据最新状态",
                          {"number": doc.number})
    # The row is already updated: record the values as loaded so the unit of work does not write them again.
    set_committed_value(doc, "status", new)
    for k, v in values.items():
        set_committed_value(doc, k, v)


async def _run_hooks(event: str, session: AsyncSession, settings: Settings, doc: Document, now: datetime) -> None:
    """Run the document type's hooks for a lifecycle event, in the order the type lists them."""
    for fn in _HOOKS[event][doc.type]:
        await fn(session, settings, doc, now)


async def submit_document(session: AsyncSession, settings: Settings, doc: Document,
                          now: datetime | None = None) -> Document:
    """draft → submitted with the type's submit hooks (a stock count records book quantities, then its discrepancy
    document; a strategic sales order reserves stock)."""
    now = now_or(now)
    await _run_hooks(hooks.BEFORE_SUBMIT, session, settings, doc, now)
    await _transition(session, doc, ("draft",), "submitted", submitted_at=now)
    await _run_hooks(hooks.AFTER_SUBMIT, session, settings, doc, now)
    return doc


async def post_document(session: AsyncSession, settings: Settings, doc: Document,
                        now: datetime | None = None) -> PostResult:
    """submitted → posted through the one posting path; a failed check raises and changes nothing."""
    now = now_or(now)
    if doc.status != "submitted":
        await _transition(session, doc, ("submitted",), "posted")  # raises the status error
    moves = 0
    warnings: tuple[CheckResult, ...] = ()
    if doc_type(doc.type).effect != NONE:
        plan = await plan_document(session, doc)
        results = await prepare(session, settings, plan, now)
        errors = [r for r in results if not r.warning]
        if errors:
            raise errors[0].to_error()
        warnings = tuple(results)
        moves = await write_moves(session, plan, now)
    values: dict[str, object] = {"posted_at": now}
    if warnings:
        values["needs_review"] = True
        values["review_notes"] = "\n".join(w.message_zh for w in warnings)
    await _transition(session, doc, ("submitted",), "posted", **values)
    await _run_hooks(hooks.POSTED, session, settings, doc, now)  # finance entries, linked documents
    if session.new or session.dirty or session.deleted:  # a linked document changed (returns, fulfilled orders)
        await session.flush()
    return PostResult(doc, moves, warnings)


async def cancel_document(session: AsyncSession, settings: Settings, doc: Document,
                          now: datetime | None = None) -> Document:
    """Cancel: a posted document gets mirror reversal moves; drafts/submitted just close."""
    now = now_or(now)
    if doc.status == "posted" and doc_type(doc.type).effect != NONE:
        plan = await plan_reversal(session, doc)
        results = await prepare(session, settings, plan, now)
        errors = [r for r in results if not r.warning]
        if errors:
            e = errors[0]
            raise DomainError(e.code, f"作废 {doc.number} 会导致：{e.message_zh}", e.fix_zh, e.fields)
        await write_moves(session, plan, now)
    was_posted = doc.status == "posted"
    await _transition(session, doc, ("draft", "submitted", "posted", "rejected"), "cancelled", cancelled_at=now)
    if was_posted:
        await finance.reverse_entries(session, doc, now)
        await _run_hooks(hooks.CANCELLED, session, settings, doc, now)  # undo linked marks
        await session.flush()
    return doc


async def reject_document(session: AsyncSession, doc: Document, reason: str) -> Document:
    """submitted → rejected with a reason; the author may reopen it as a draft."""
    if not reason.strip():
        raise DomainError("NO_REASON", "驳回必须填写原因", "请说明驳回原因，便于提交人修改")
    await _transition(session, doc, ("submitted",), "rejected", reject_reason=reason.strip())
    return doc


async def reopen_document(session: AsyncSession, doc: Document) -> Document:
    """rejected → draft."""
    await _transition(session, doc, ("rejected",), "draft")
    return doc
