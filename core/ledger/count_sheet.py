"""A count taken line by line in chat: open one per person and warehouse, add or correct lines, submit it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import DomainError
from core.ledger.doctypes import doc_type
from core.ledger.document_rows import insert_document
from core.ledger.documents import LineInput, get_document, line_row, submit_document
from core.ledger.numbering import next_number
from core.models import Document, DocumentLine, Product, Warehouse

COUNT = "stock_count"
QTY = re.compile(r"^(\d+(?:\.\d+)?)\s*([^\d\s.]*)$")
MAX_LINES = 500


@dataclass(frozen=True)
class CountLine:
    """One counted line as the counter reads it back."""

    line_no: int
    sku: str
    name: str
    batch: str
    counted: Decimal
    unit: str
    stock_qty: Decimal
    stock_unit: str


@dataclass(frozen=True)
class CountSheet:
    """An open count: its document, warehouse and lines so far."""

    doc: Document
    warehouse: str
    warehouse_name: str
    lines: list[CountLine]


def parse_quantity(text: str, product: Product) -> tuple[Decimal, str]:
    """"10", "10kg", "3箱" → (quantity, unit); no unit means the product's stock unit."""
    m = QTY.match(text.strip())
    if m is None:
        raise DomainError("BAD_QTY", f"看不懂数量「{text}」",
                          f"请写数字，可带单位，例如 10、10{product.stock_unit}"
                          + (f" 或 3{product.purchase_unit}" if product.purchase_unit else ""))
    try:
        qty = Decimal(m.group(1))
    except InvalidOperation:
        raise DomainError("BAD_QTY", f"看不懂数量「{text}」", "请写数字，例如 10") from None
    return qty, m.group(2) or product.stock_unit


async def _warehouse(session: AsyncSession, code: str) -> Warehouse:
    wh = (await session.scalars(select(Warehouse).where(Warehouse.code == code.strip()))).first()
    if wh is None:
        known = "、".join((await session.scalars(select(Warehouse.code).order_by(Warehouse.code))).all())
        raise DomainError("NO_WAREHOUSE", f"没有仓库「{code}」", f"请写仓库编码：{known}")
    return wh


async def open_counts(session: AsyncSession, user_id: int) -> list[Document]:
    """The person's counts not yet submitted, newest first."""
    stmt = (select(Document).where(Document.type == COUNT, Document.status == "draft",
                                   Document.created_by_id == user_id).order_by(Document.id.desc()))
    return list(await session.scalars(stmt))


async def open_count(session: AsyncSession, settings: Settings, user_id: int, warehouse: str,
                     now: datetime) -> tuple[Document, bool]:
    """The person's open count in the warehouse, opened now if there is none; (document, newly opened)."""
    wh = await _warehouse(session, warehouse)
    for doc in await open_counts(session, user_id):
        if doc.warehouse_id == wh.id:
            return doc, False
    dt = doc_type(COUNT)
    draft = Document(number=await next_number(session, dt.prefix, now, settings.timezone), type=COUNT,
                     status="draft", warehouse_id=wh.id, created_by_id=user_id,
                     validation_mode=dt.validation_mode(settings.validation), created_at=now)
    return await insert_document(session, draft, []), True


async def current_count(session: AsyncSession, user_id: int) -> Document:
    """The count the person is working on (the newest open one); DomainError telling how to open one."""
    found = await open_counts(session, user_id)
    if not found:
        raise DomainError("NO_COUNT", "你还没有进行中的盘点", "请先发送：盘点 开始 <仓库编码>，例如：盘点 开始 CW")
    return found[0]


async def set_line(session: AsyncSession, settings: Settings, doc: Document, product: Product, qty: Decimal,
                   unit: str, batch: str, now: datetime) -> DocumentLine:
    """Add the product's counted quantity to the count, or correct it (same product and batch: replaced)."""
    wh = await session.get_one(Warehouse, doc.warehouse_id)
    lines = list(await session.scalars(select(DocumentLine).where(DocumentLine.document_id == doc.id)))
    same = next((ln for ln in lines if ln.product_id == product.id and ln.batch_code == batch.strip()), None)
    line_no = same.line_no if same else max((ln.line_no for ln in lines), default=0) + 1
    if same is None and len(lines) >= MAX_LINES:
        raise DomainError("TOO_MANY_LINES", f"一张盘点单最多 {MAX_LINES} 行", "请先提交本单，再开一张新的盘点")
    row = line_row(doc_type(COUNT), line_no, LineInput(product.sku, 0, unit, batch=batch, counted_qty=qty),
                   product, wh, now.astimezone(settings.timezone).date())
    if same is not None:
        for key in ("qty", "unit", "factor", "stock_qty", "counted_qty"):
            setattr(same, key, row[key])
        await session.flush()
        return same
    line = DocumentLine(**row, document_id=doc.id)
    session.add(line)
    await session.flush()
    session.expire(doc, ["lines"])
    return line


async def sheet(session: AsyncSession, doc: Document) -> CountSheet:
    """The count with its lines, as the counter reads it back."""
    wh = await session.get_one(Warehouse, doc.warehouse_id)
    rows = (await session.execute(
        select(DocumentLine, Product).join(Product, Product.id == DocumentLine.product_id)
        .where(DocumentLine.document_id == doc.id).order_by(DocumentLine.line_no))).all()
    lines = [CountLine(ln.line_no, p.sku, p.name, ln.batch_code, ln.counted_qty or Decimal(0), ln.unit,
                       ln.stock_qty, p.stock_unit) for ln, p in rows]
    return CountSheet(doc, wh.code, wh.name, lines)


async def submit_count(session: AsyncSession, settings: Settings, doc: Document,
                       now: datetime) -> Document | None:
    """Close the count: book quantities recorded now, the discrepancy document created for the lines that
    differ (returned), None when everything matches."""
    count = await session.scalar(select(func.count()).select_from(DocumentLine)
                                 .where(DocumentLine.document_id == doc.id))
    if not count:
        raise DomainError("EMPTY_COUNT", f"盘点单 {doc.number} 还没有任何行",
                          "请先录入：盘点 <SKU或条码> <数量>，例如：盘点 RM-CREAM 10kg")
    session.expire(doc, ["lines"])  # lines were added one by one: read them afresh
    full = await get_document(session, doc.number)
    await submit_document(session, settings, full, now)
    number = await session.scalar(select(Document.number).where(Document.ref_document_id == full.id,
                                                               Document.type == "discrepancy"))
    return await get_document(session, number) if number else None
