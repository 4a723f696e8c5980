"""Sales in chat: a sales order (the pre-order purchase warnings look at), its shipment as a sales issue whose lines
are confirmed by scan where the type requires it, and a return against a posted issue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import DomainError
from core.ledger.documents import LineInput, create_document, get_document, post_document, submit_document
from core.models import Batch, Customer, Document, DocumentLine, Product, StockMove, Warehouse
from core.types import fq


async def default_warehouse(session: AsyncSession, code: str | None) -> Warehouse:
    """The warehouse named, else the central one (the only warehouse when there is one); DomainError otherwise."""
    if code:
        wh = await session.scalar(select(Warehouse).where(Warehouse.code == code))
        if wh is None:
            raise DomainError("UNKNOWN_WAREHOUSE", f"没有仓库 {code}", "请写仓库编码，例如 CW")
        return wh
    central = list(await session.scalars(select(Warehouse).where(Warehouse.kind == "central").limit(2)))
    every = central or list(await session.scalars(select(Warehouse).limit(2)))
    if len(every) == 1:
        return every[0]
    raise DomainError("WHICH_WAREHOUSE", "请写明从哪个仓库发货", "在命令末尾加仓库编码，例如 … CW")


async def place_order(session: AsyncSession, settings: Settings, customer: Customer, product: Product, qty: Decimal,
                      unit: str, delivery: date, by: str, now: datetime, *, warehouse: str | None = None,
                      unit_price: Decimal = Decimal(0)) -> Document:
    """A submitted sales order (a strategic customer's reserves `[ledger] strategic_reserve_rate` of it)."""
    if delivery < now.astimezone(settings.timezone).date():
        raise DomainError("PAST_DELIVERY", f"交货日期 {delivery} 已经过去", "请写今天或以后的日期，例如 2026-12-20")
    wh = await default_warehouse(session, warehouse)
    doc = await create_document(session, settings, "sales_order", [LineInput(product.sku, qty, unit,
                                                                             unit_price=unit_price)],
                                warehouse=wh.code, customer=customer.code, created_by=by, delivery_date=delivery,
                                now=now)
    return await submit_document(session, settings, doc, now)


async def open_orders(session: AsyncSession, created_by_id: int | None = None) -> list[Document]:
    """Sales orders not yet shipped (submitted), by delivery date; one person's when `created_by_id` is given."""
    stmt = select(Document).where(Document.type == "sales_order", Document.status == "submitted")
    if created_by_id is not None:
        stmt = stmt.where(Document.created_by_id == created_by_id)
    numbers = list(await session.scalars(stmt.with_only_columns(Document.number)
                                         .order_by(Document.delivery_date, Document.id).limit(20)))
    return [await get_document(session, n) for n in numbers]


async def start_shipment(session: AsyncSession, settings: Settings, order_number: str, by: str,
                         now: datetime) -> Document:
    """The draft sales issue of an open order (made now with the order's lines, or the one already started)."""
    order = await get_document(session, order_number, lock=True)
    if order.type != "sales_order":
        raise DomainError("NOT_AN_ORDER", f"{order.number} 不是销售订单",
                          "请写销售订单号（XS 开头），发送「销售订单」查看")
    if order.status != "submitted":
        raise DomainError("ORDER_CLOSED", f"销售订单 {order.number} 已发货或已取消", f"发送「单据 {order.number}」查看")
    started = await session.scalar(select(Document.number).where(
        Document.type == "sales_issue", Document.ref_document_id == order.id, Document.status == "draft"))
    if started is not None:
        return await get_document(session, started)
    products = {p.id: p for p in await session.scalars(
        select(Product).where(Product.id.in_([ln.product_id for ln in order.lines])))}
    customer = await session.get_one(Customer, order.customer_id) if order.customer_id else None
    wh = await session.get_one(Warehouse, order.warehouse_id) if order.warehouse_id else None
    lines = [LineInput(products[ln.product_id].sku, ln.qty, ln.unit, unit_price=ln.unit_price) for ln in order.lines]
    return await create_document(session, settings, "sales_issue", lines, warehouse=wh.code if wh else None,
                                 customer=customer.code if customer else None, ref_number=order.number,
                                 created_by=by, now=now)


def pending_lines(doc: Document) -> list[DocumentLine]:
    """The shipment's lines not yet confirmed (by scan, or by exact barcode and batch where scans are impossible)."""
    return [ln for ln in doc.lines if not ln.entry]


async def confirm_line(session: AsyncSession, doc: Document, product: Product, batch: str, entry: str) -> DocumentLine:
    """Mark the shipment's first unconfirmed line of `product` confirmed (its batch when given: else FEFO picks
    at posting); DomainError when the product is not on the shipment or all its lines are confirmed."""
    line = next((ln for ln in doc.lines if ln.product_id == product.id and not ln.entry), None)
    if line is None:
        on = any(ln.product_id == product.id for ln in doc.lines)
        raise DomainError("NOT_ON_SHIPMENT", f"{product.name}（{product.sku}）" + ("已经扫过了" if on else
                                                                               f"不在发货单 {doc.number} 上"),
                          "请扫描发货单上还没扫的商品；发送「发货 " + doc.number + "」查看进度")
    if batch:
        found = await session.scalar(select(Batch.id).where(Batch.product_id == product.id, Batch.code == batch))
        if found is None:
            raise DomainError("UNKNOWN_BATCH", f"{product.name} 没有批次 {batch}", "请核对批次号，或重新扫描")
        line.batch_code = batch
    line.entry = entry
    await session.flush()
    return line


async def ship(session: AsyncSession, settings: Settings, doc: Document, now: datetime) -> Document:
    """Submit and post the shipment (stock out, receivable, the order fulfilled)."""
    await submit_document(session, settings, doc, now)
    return await post_document(session, settings, doc, now)


@dataclass(frozen=True)
class Returned:
    """A posted sales return and what it reversed."""

    document: Document
    qty: Decimal
    amount: Decimal


async def return_sale(session: AsyncSession, settings: Settings, issue_number: str, product: Product, qty: Decimal,
                      unit: str, by: str, now: datetime) -> Returned:
    """Post a return of `qty` of `product` against a posted sales issue: back into the batch it left from, the
    receivable reversed, the issue marked 已退货; more than was issued (less returns before) is refused."""
    issue = await get_document(session, issue_number, lock=True)
    if issue.type != "sales_issue" or issue.status != "posted":
        raise DomainError("RETURN_REF", f"{issue.number} 不是已过账的销售出库单", "请写销售出库单号（CK 开头）")
    line = next((ln for ln in issue.lines if ln.product_id == product.id), None)
    if line is None:
        raise DomainError("NOT_ON_ISSUE", f"销售出库单 {issue.number} 没有 {product.name}（{product.sku}）",
                          f"发送「单据 {issue.number}」查看出库明细")
    back = sum(await session.scalars(
        select(DocumentLine.stock_qty).join(Document, Document.id == DocumentLine.document_id)
        .where(Document.type == "sales_return", Document.status == "posted", Document.ref_document_id == issue.id,
               DocumentLine.product_id == product.id)), Decimal(0))
    batch = await session.scalar(select(Batch.code).join(StockMove, StockMove.batch_id == Batch.id)
                                 .where(StockMove.line_id == line.id).order_by(StockMove.id).limit(1))
    customer = await session.get_one(Customer, issue.customer_id) if issue.customer_id else None
    wh = await session.get_one(Warehouse, issue.warehouse_id)
    doc = await create_document(session, settings, "sales_return",
                                [LineInput(product.sku, qty, unit, batch=batch or "", unit_price=line.unit_price)],
                                warehouse=wh.code, customer=customer.code if customer else None,
                                ref_number=issue.number, created_by=by, now=now)
    left = abs(line.stock_qty) - abs(back)
    if abs(doc.lines[0].stock_qty) > left:
        raise DomainError("OVER_RETURN", f"{product.name} 最多还能退 {fq(left)}{product.stock_unit}（出库 "
                          f"{fq(abs(line.stock_qty))}，已退 {fq(abs(back))}）", "请按实际退回的数量填写")
    await submit_document(session, settings, doc, now)
    await post_document(session, settings, doc, now)
    return Returned(doc, doc.lines[0].stock_qty, doc.lines[0].qty * doc.lines[0].unit_price)
