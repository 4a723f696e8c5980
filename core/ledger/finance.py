"""Finance hooks: payables on receipts, receivables on sales issues/returns, sales-order reservations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.models import Customer, Document, FinanceEntry
from core.storage import Fast
from core.types import q6

ONE = Decimal(1)


def _entry(kind: str, doc: Document, line, sign: int, now: datetime) -> dict:
    amount = line.qty * line.unit_price
    if kind == "payable":
        amount = amount * (ONE + line.tax_rate)
    return {
        "kind": kind,
        "document_id": doc.id,
        "line_id": line.id,
        "product_id": line.product_id,
        "warehouse_id": line.warehouse_id,
        "supplier_id": doc.supplier_id,
        "customer_id": doc.customer_id,
        "qty": sign * line.stock_qty,
        "amount": q6(sign * amount),
        "created_at": now,
    }


# RETURNING lets SQLAlchemy send one multi-VALUES INSERT instead of a per-row executemany (asyncpg);
# SQLite takes a plain executemany.
_INSERT_ENTRIES = Fast(insert(FinanceEntry.__table__),
                       fallback=insert(FinanceEntry.__table__).returning(FinanceEntry.__table__.c.id))


async def _add_entries(session: AsyncSession, rows: list[dict]) -> None:
    """One executemany for all of a document's entries."""
    if rows:
        await _INSERT_ENTRIES.many(session, rows)


async def on_posted(session: AsyncSession, doc: Document, now: datetime) -> None:
    """Create the finance entries a posted document implies and update linked documents."""
    if doc.type == "purchase_receipt":
        await _add_entries(session, [_entry("payable", doc, ln, 1, now) for ln in doc.lines])
    elif doc.type == "sales_issue":
        await _add_entries(session, [_entry("receivable", doc, ln, 1, now) for ln in doc.lines])
        ref = await session.get(Document, doc.ref_document_id) if doc.ref_document_id else None
        if ref is not None and ref.type == "sales_order" and ref.status == "submitted":
            ref.status, ref.posted_at = "posted", now  # fulfilled: its reservation ends
    elif doc.type == "sales_return":
        await _add_entries(session, [_entry("receivable", doc, ln, -1, now) for ln in doc.lines])
        ref = await session.get_one(Document, doc.ref_document_id)
        ref.returned = True  # 已退货
    if session.new or session.dirty or session.deleted:  # a linked document changed (returns, fulfilled orders)
        await session.flush()


async def on_cancelled(session: AsyncSession, doc: Document, now: datetime) -> None:
    """Reverse the finance entries of a cancelled document and undo linked marks."""
    entries = list(await session.scalars(select(FinanceEntry).where(FinanceEntry.document_id == doc.id)))
    await _add_entries(session, [
        {
            "kind": e.kind, "document_id": e.document_id, "line_id": e.line_id, "product_id": e.product_id,
            "warehouse_id": e.warehouse_id, "supplier_id": e.supplier_id, "customer_id": e.customer_id,
            "qty": -e.qty, "amount": -e.amount, "created_at": now,
        }
        for e in entries
    ])
    if doc.type == "sales_return" and doc.ref_document_id:
        ref = await session.get_one(Document, doc.ref_document_id)
        others = await session.scalar(
            select(Document.id).where(
                Document.ref_document_id == ref.id, Document.type == "sales_return",
                Document.status == "posted", Document.id != doc.id,
            )
        )
        ref.returned = others is not None
    if doc.type == "sales_issue" and doc.ref_document_id:
        ref = await session.get_one(Document, doc.ref_document_id)
        if ref.type == "sales_order" and ref.status == "posted":
            ref.status, ref.posted_at = "submitted", None
    await session.flush()


async def reserve_sales_order(session: AsyncSession, settings: Settings, doc: Document) -> None:
    """A strategic customer's order reserves rate × its quantity until it is fulfilled or cancelled."""
    customer = await session.get(Customer, doc.customer_id) if doc.customer_id else None
    rate = settings.strategic_reserve_rate if customer is not None and customer.strategic else Decimal(0)
    for ln in doc.lines:
        ln.reserved_qty = q6(ln.stock_qty * rate)
