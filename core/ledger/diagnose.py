"""诊断: every failing check of a document with its fix; three books of a product+warehouse side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import CheckResult, DomainError
from core.ledger.counts import DISCREPANCY
from core.ledger.doctypes import BOOK_SNAPSHOT, NONE, codes_with_hook, doc_type
from core.ledger.documents import get_document
from core.ledger.finance import booking_types
from core.ledger.posting import plan_document, prepare
from core.models import (
    Document,
    DocumentLine,
    FinanceEntry,
    Freeze,
    FreezeEvent,
    Product,
    StockBalance,
    StockMove,
    Warehouse,
    utcnow,
)

ZERO = Decimal(0)
HINT_CODES = 30  # warehouse codes listed when one is not found
_PAYABLE_TYPES = booking_types("payable")  # purchase receipts
_RECEIVABLE_TYPES = booking_types("receivable")  # sales issues and returns
_COUNT_TYPES = codes_with_hook(BOOK_SNAPSHOT)  # stock counts: the ones with a book quantity per line


@dataclass(frozen=True)
class DocumentDiagnosis:
    """A document and every check that fails for it right now."""

    number: str
    type: str
    status: str
    failures: tuple[CheckResult, ...]


async def diagnose_document(session: AsyncSession, settings: Settings, number: str,
                            now: datetime | None = None) -> DocumentDiagnosis:
    """Re-run every posting check for a document without writing anything (the caller rolls back)."""
    doc = await get_document(session, number)
    failures: list[CheckResult] = []
    if doc.status in ("draft", "submitted", "rejected") and doc_type(doc.type).effect != NONE:
        try:
            plan = await plan_document(session, doc)
            failures = await prepare(session, settings, plan, now or utcnow())
        except DomainError as e:
            failures = [CheckResult(e.code, e.message_zh, e.fix_zh, e.fields)]
    return DocumentDiagnosis(doc.number, doc.type, doc.status, tuple(failures))


@dataclass(frozen=True)
class Conflict:
    """Two books disagree."""

    books: str
    message_zh: str


@dataclass(frozen=True)
class PairDiagnosis:
    """Stock ledger, finance books and last physical count for one product in one warehouse."""

    sku: str
    name: str
    warehouse: str
    unit: str
    ledger_on_hand: Decimal
    ledger_on_loan: Decimal
    ledger_received: Decimal
    ledger_sold: Decimal
    payable_qty: Decimal
    receivable_qty: Decimal
    count_number: str | None
    count_at: datetime | None
    counted_qty: Decimal | None
    count_book_qty: Decimal | None
    conflicts: tuple[Conflict, ...]
    freeze_events: tuple[tuple[datetime, str, str, str], ...] = field(default_factory=tuple)  # at, event, why, who
    frozen: bool = False


async def _ledger_by_type(session: AsyncSession, pid: int, wid: int) -> dict[str, Decimal]:
    stmt = (
        select(Document.type, func.sum(StockMove.qty))
        .join(Document, Document.id == StockMove.document_id)
        .where(StockMove.product_id == pid, StockMove.warehouse_id == wid, StockMove.bucket == "stock")
        .group_by(Document.type)
    )
    return {t: s for t, s in (await session.execute(stmt)).all()}


def _moved(by_type: dict[str, Decimal], codes: tuple[str, ...]) -> Decimal:
    """Σ on-hand stock moved by documents of these types."""
    total: Decimal | None = None
    for code in codes:
        q = by_type.get(code, ZERO)
        total = q if total is None else total + q
    return ZERO if total is None else total


async def _not_found(session: AsyncSession, sku: str, warehouse: str, no_product: bool,
                     no_warehouse: bool) -> DomainError:
    """Which of the two is unknown, with its fix (the warehouse codes there are, for an unknown warehouse)."""
    missing = [f"商品「{sku}」"] * no_product + [f"仓库「{warehouse}」"] * no_warehouse
    fixes = ["请核对 SKU（用 jxcbot stock 加商品名称或条码可查到 SKU）"] * no_product
    if no_warehouse:
        codes = (await session.scalars(select(Warehouse.code).order_by(Warehouse.code))).all()
        more = f" 等 {len(codes)} 个" if len(codes) > HINT_CODES else ""
        fixes.append(f"请核对仓库编码，已有的仓库编码：{'、'.join(codes[:HINT_CODES])}{more}" if codes
                     else "还没有任何仓库，请先导入仓库档案")
    return DomainError("NOT_FOUND", "找不到" + "和".join(missing), "；".join(fixes),
                       {"sku": sku, "warehouse": warehouse})


async def diagnose_pair(session: AsyncSession, sku: str, warehouse: str) -> PairDiagnosis:
    """Compare the three books and mark the conflicts; include the freeze event log."""
    product = await session.scalar(select(Product).where(Product.sku == sku))
    wh = await session.scalar(select(Warehouse).where(Warehouse.code == warehouse))
    if product is None or wh is None:
        raise await _not_found(session, sku, warehouse, product is None, wh is None)
    pid, wid = product.id, wh.id
    on_hand, on_loan = (await session.execute(
        select(func.coalesce(func.sum(StockBalance.qty), 0), func.coalesce(func.sum(StockBalance.on_loan), 0))
        .where(StockBalance.product_id == pid, StockBalance.warehouse_id == wid)
    )).one()
    on_hand, on_loan = Decimal(on_hand), Decimal(on_loan)
    by_type = await _ledger_by_type(session, pid, wid)
    received = _moved(by_type, _PAYABLE_TYPES)
    sold = -_moved(by_type, _RECEIVABLE_TYPES)
    fin = dict((await session.execute(
        select(FinanceEntry.kind, func.sum(FinanceEntry.qty))
        .where(FinanceEntry.product_id == pid, FinanceEntry.warehouse_id == wid)
        .group_by(FinanceEntry.kind)
    )).all())
    payable, receivable = fin.get("payable", ZERO), fin.get("receivable", ZERO)
    count = (await session.execute(
        select(Document.number, Document.submitted_at, DocumentLine.counted_qty, DocumentLine.book_qty)
        .join(DocumentLine, DocumentLine.document_id == Document.id)
        .where(Document.type.in_(_COUNT_TYPES), Document.status.in_(("submitted", "posted")),
               DocumentLine.product_id == pid, DocumentLine.warehouse_id == wid)
        .order_by(Document.submitted_at.desc(), Document.id.desc())
        .limit(1)
    )).first()
    conflicts: list[Conflict] = []
    u = product.stock_unit
    if received != payable:
        conflicts.append(Conflict("库存账↔财务账", f"采购入库 {received}{u}，应付账款对应 {payable}{u}，相差 "
                                  f"{received - payable}{u}"))
    if sold != receivable:
        conflicts.append(Conflict("库存账↔财务账", f"销售净出库 {sold}{u}，应收账款对应 {receivable}{u}，相差 "
                                  f"{sold - receivable}{u}"))
    if count is not None and count[2] is not None and count[2] != count[3]:
        diff_doc = await session.scalar(
            select(Document.number).join(Document.lines).where(
                Document.type == DISCREPANCY, Document.status == "posted", DocumentLine.product_id == pid,
                DocumentLine.warehouse_id == wid, Document.posted_at >= count[1],
            )
        )
        if diff_doc is None:
            conflicts.append(Conflict("库存账↔实物账", f"盘点 {count[0]} 实盘 {count[2]}{u}，账面 {count[3]}{u}，"
                                      f"差异 {count[2] - count[3]}{u} 尚未审批入账"))
    if on_hand < 0 and not wh.allow_negative:
        conflicts.append(Conflict("库存账", f"不允许负库存的仓库出现负数 {on_hand}{u}"))
    events = (await session.execute(
        select(FreezeEvent.at, FreezeEvent.event, FreezeEvent.reason, FreezeEvent.actor)
        .join(Freeze, Freeze.id == FreezeEvent.freeze_id)
        .where(Freeze.product_id == pid, Freeze.warehouse_id == wid)
        .order_by(FreezeEvent.at, FreezeEvent.id)
    )).all()
    frozen = await session.scalar(
        select(func.count()).select_from(Freeze)
        .where(Freeze.product_id == pid, Freeze.warehouse_id == wid, Freeze.active.is_(True))
    )
    return PairDiagnosis(
        product.sku, product.name, wh.code, u, on_hand, on_loan, received, sold, payable, receivable,
        count[0] if count else None, count[1] if count else None, count[2] if count else None,
        count[3] if count else None, tuple(conflicts), tuple((a, e, r, who) for a, e, r, who in events), bool(frozen),
    )
