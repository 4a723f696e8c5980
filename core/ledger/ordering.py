"""Purchase requests become orders: one open request per product (checked at every submit) and, when the request
is approved (posted), its purchase order for the request's supplier."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import DomainError
from core.ledger.doctypes import ONE_OPEN_REQUEST, PLACES_ORDER, STATUS_ZH, doc_type
from core.ledger.document_rows import insert_document
from core.ledger.hooks import Hook
from core.ledger.numbering import next_number
from core.models import Document, DocumentLine, Product, User

REQUEST = "purchase_request"
ORDER = "purchase_order"
OPEN_REQUEST_STATUSES = ("submitted",)  # waiting for sign-off; approved ones are orders, rejected ones closed


async def lock_products(session: AsyncSession, product_ids: Iterable[int]) -> None:
    """Lock the products' rows in id order (PostgreSQL FOR UPDATE; SQLite's write transaction holds the whole
    database), so two requests for one product submitted at once check one after the other."""
    ids = sorted(set(product_ids))
    if ids and session.get_bind().dialect.name == "postgresql":
        await session.execute(select(Product.id).where(Product.id.in_(ids)).order_by(Product.id).with_for_update())


async def open_requests(session: AsyncSession, product_ids: Iterable[int], *,
                        excluding: int | None = None) -> dict[int, Document]:
    """The open purchase request (submitted, waiting for sign-off) of each product that has one: product id →
    request. The 02:00 job and 采购申请 both ask this before making a request."""
    ids = sorted(set(product_ids))
    if not ids:
        return {}
    stmt = (select(DocumentLine.product_id, Document)
            .join(Document, Document.id == DocumentLine.document_id)
            .where(Document.type == REQUEST, Document.status.in_(OPEN_REQUEST_STATUSES),
                   DocumentLine.product_id.in_(ids))
            .order_by(Document.id))
    if excluding is not None:
        stmt = stmt.where(Document.id != excluding)
    out: dict[int, Document] = {}
    for pid, doc in (await session.execute(stmt)).all():
        out.setdefault(pid, doc)
    return out


async def refuse_if_open(session: AsyncSession, settings: Settings, product_ids: Iterable[int], *,
                         excluding: int | None = None) -> None:
    """DomainError REQUEST_OPEN naming the open request when one of the products already has one (the products'
    rows locked first, so the answer holds until this transaction ends)."""
    ids = sorted(set(product_ids))
    await lock_products(session, ids)
    found = await open_requests(session, ids, excluding=excluding)
    if not found:
        return
    pid, doc = next(iter(found.items()))
    product = await session.get_one(Product, pid)
    who = await session.get(User, doc.created_by_id) if doc.created_by_id else None
    when = f"{doc.submitted_at.astimezone(settings.timezone):%m-%d %H:%M} " if doc.submitted_at else ""
    raise DomainError(
        "REQUEST_OPEN",
        f"商品 {product.name}（{product.sku}）已有进行中的采购申请 {doc.number}"
        f"（{when}{who.name + ' ' if who else ''}提交，{STATUS_ZH[doc.status]}）",
        f"一个商品同时只能有一张进行中的采购申请：请等 {doc.number} 审批完成，或由提交人发送「撤回 {doc.number}」"
        f"后再申请；发送「单据 {doc.number}」查看进度",
        {"sku": product.sku, "number": doc.number},
    )


async def _one_open_request(session: AsyncSession, settings: Settings, doc: Document, _now: datetime) -> None:
    await refuse_if_open(session, settings, [ln.product_id for ln in doc.lines], excluding=doc.id)


async def order_of(session: AsyncSession, request_id: int) -> Document | None:
    """The purchase order made from a request (None before its approval)."""
    stmt = select(Document).where(Document.type == ORDER, Document.ref_document_id == request_id).order_by(Document.id)
    return (await session.scalars(stmt)).first()


async def purchaser_of(session: AsyncSession, request: Document) -> int | None:
    """Who places the order: the purchaser of the request's (first) product, else the requester."""
    first = min(request.lines, key=lambda ln: ln.line_no) if request.lines else None
    product = await session.get(Product, first.product_id) if first is not None else None
    if product is not None and product.purchaser_id is not None:
        return product.purchaser_id
    return request.created_by_id


async def place_order(session: AsyncSession, settings: Settings, request: Document, now: datetime) -> Document:
    """The approved request's purchase order (CG): the request's supplier, warehouse, lines, quantities and prices,
    referring to the request, placed by the purchaser. It has no stock effect and no approval of its own, so it is
    written placed (posted) at once; receipts that name it (采购入库) close it."""
    if request.supplier_id is None:
        raise DomainError("NO_SUPPLIER", f"采购申请 {request.number} 没有供应商，无法生成采购订单",
                          f"请驳回 {request.number}，再由提交人写明供应商重新申请，"
                          "例如：采购申请 <SKU> <数量> 供应商 <编码>")
    dt = doc_type(ORDER)
    tz: ZoneInfo = settings.timezone
    draft = Document(number=await next_number(session, dt.prefix, now, tz), type=ORDER, status="posted",
                     warehouse_id=request.warehouse_id, supplier_id=request.supplier_id, ref_document_id=request.id,
                     created_by_id=await purchaser_of(session, request),
                     validation_mode=dt.validation_mode(settings.validation), note=request.note, created_at=now,
                     submitted_at=now, posted_at=now)
    keys = ("line_no", "product_id", "warehouse_id", "qty", "unit", "factor", "stock_qty", "unit_price", "tax_rate")
    rows = [{**{k: getattr(ln, k) for k in keys}, "batch_code": "", "expiry": None, "counted_qty": None,
             "book_qty": None, "reserved_qty": Decimal(0), "discrepancy_type": ""} for ln in request.lines]
    return await insert_document(session, draft, rows)


async def _place_order(session: AsyncSession, settings: Settings, doc: Document, now: datetime) -> None:
    await place_order(session, settings, doc, now)


# The hooks this module implements (see DocType.hooks and core.ledger.documents).
HOOKS: dict[str, Hook] = {
    ONE_OPEN_REQUEST: Hook(before_submit=_one_open_request),
    PLACES_ORDER: Hook(posted=_place_order),
}
