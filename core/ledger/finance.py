"""Finance hooks: payables on receipts, receivables on sales issues/returns, sales-order reservations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.ledger.doctypes import (
    DOC_TYPES,
    FULFILS_ORDER,
    MARKS_RETURNED,
    PAYABLE,
    RECEIVABLE,
    REFUND_RECEIVABLE,
    RESERVES,
    doc_type,
)
from core.ledger.hooks import Hook, HookFn
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


def _booking(kind: str, sign: int) -> HookFn:
    """A posted hook that books one `kind` entry per line, with `sign`, in one executemany."""

    async def book(session: AsyncSession, _settings: Settings, doc: Document, now: datetime) -> None:
        await _add_entries(session, [_entry(kind, doc, ln, sign, now) for ln in doc.lines])

    return book


async def _fulfil_order(session: AsyncSession, _settings: Settings, doc: Document, now: datetime) -> None:
    """The referenced reserving order (a sales order) is fulfilled: its reservation ends."""
    ref = await session.get(Document, doc.ref_document_id) if doc.ref_document_id else None
    if ref is not None and RESERVES in doc_type(ref.type).hooks and ref.status == "submitted":
        ref.status, ref.posted_at = "posted", now


async def _reopen_order(session: AsyncSession, _settings: Settings, doc: Document, _now: datetime) -> None:
    """The fulfilling document was cancelled: the order it fulfilled is open (and reserving) again."""
    if doc.ref_document_id:
        ref = await session.get_one(Document, doc.ref_document_id)
        if RESERVES in doc_type(ref.type).hooks and ref.status == "posted":
            ref.status, ref.posted_at = "submitted", None


async def _mark_returned(session: AsyncSession, _settings: Settings, doc: Document, _now: datetime) -> None:
    ref = await session.get_one(Document, doc.ref_document_id)
    ref.returned = True  # 已退货


async def _unmark_returned(session: AsyncSession, _settings: Settings, doc: Document, _now: datetime) -> None:
    """The referenced document stays returned while another posted document of this type references it."""
    if doc.ref_document_id:
        ref = await session.get_one(Document, doc.ref_document_id)
        others = await session.scalar(
            select(Document.id).where(
                Document.ref_document_id == ref.id, Document.type == doc.type,
                Document.status == "posted", Document.id != doc.id,
            )
        )
        ref.returned = others is not None


async def reverse_entries(session: AsyncSession, doc: Document, now: datetime) -> None:
    """Book the opposite of every finance entry of a cancelled document."""
    entries = list(await session.scalars(select(FinanceEntry).where(FinanceEntry.document_id == doc.id)))
    await _add_entries(session, [
        {
            "kind": e.kind, "document_id": e.document_id, "line_id": e.line_id, "product_id": e.product_id,
            "warehouse_id": e.warehouse_id, "supplier_id": e.supplier_id, "customer_id": e.customer_id,
            "qty": -e.qty, "amount": -e.amount, "created_at": now,
        }
        for e in entries
    ])


async def reserve_sales_order(session: AsyncSession, settings: Settings, doc: Document) -> None:
    """A strategic customer's order reserves rate × its quantity until it is fulfilled or cancelled."""
    customer = await session.get(Customer, doc.customer_id) if doc.customer_id else None
    rate = settings.strategic_reserve_rate if customer is not None and customer.strategic else Decimal(0)
    for ln in doc.lines:
        ln.reserved_qty = q6(ln.stock_qty * rate)


async def _reserve(session: AsyncSession, settings: Settings, doc: Document, _now: datetime) -> None:
    await reserve_sales_order(session, settings, doc)


# The hooks this module implements (see DocType.hooks and core.ledger.documents).
HOOKS: dict[str, Hook] = {
    PAYABLE: Hook(posted=_booking("payable", 1), books="payable"),
    RECEIVABLE: Hook(posted=_booking("receivable", 1), books="receivable"),
    REFUND_RECEIVABLE: Hook(posted=_booking("receivable", -1), books="receivable"),
    FULFILS_ORDER: Hook(posted=_fulfil_order, cancelled=_reopen_order),
    MARKS_RETURNED: Hook(posted=_mark_returned, cancelled=_unmark_returned),
    RESERVES: Hook(before_submit=_reserve),
}


def booking_types(kind: str) -> tuple[str, ...]:
    """Codes of the document types whose posting books `kind` entries (payable, receivable), in table order."""
    return tuple(t.code for t in DOC_TYPES.values() if any(HOOKS[h].books == kind for h in t.hooks if h in HOOKS))


def document_amount(doc: Document) -> Decimal:
    """The document's amount before tax: Σ quantity × unit price over its lines (what approval levels compare)."""
    return sum((ln.qty * ln.unit_price for ln in doc.lines), Decimal(0))
