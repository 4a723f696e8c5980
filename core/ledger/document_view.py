"""One document as people read it (`jxcbot doc`, and the chat command 单据 next): header, lines with their
product and warehouse."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.ledger.documents import get_document
from core.models import Document, Product, Warehouse


@dataclass(frozen=True)
class LineView:
    """A document line with the names a person needs."""

    line_no: int
    sku: str
    name: str
    warehouse: str
    batch: str
    qty: Decimal
    unit: str
    stock_qty: Decimal
    stock_unit: str


@dataclass(frozen=True)
class DocumentView:
    """A document and its lines, read in one snapshot."""

    doc: Document
    lines: list[LineView]


async def document_view(session: AsyncSession, number: str) -> DocumentView:
    """The document numbered `number` with its lines; DomainError DOC_NOT_FOUND when there is none."""
    doc = await get_document(session, number)
    pids = {ln.product_id for ln in doc.lines}
    products = {p.id: p for p in await session.scalars(select(Product).where(Product.id.in_(pids)))}
    codes = dict((await session.execute(select(Warehouse.id, Warehouse.code))).tuples().all())
    lines = [LineView(ln.line_no, products[ln.product_id].sku, products[ln.product_id].name, codes[ln.warehouse_id],
                      ln.batch_code or "", ln.qty, ln.unit, ln.stock_qty, products[ln.product_id].stock_unit)
             for ln in doc.lines]
    return DocumentView(doc, lines)
