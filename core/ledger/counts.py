"""Stock counts: book quantities at count time, the discrepancy document they lead to, and closing the count."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.config import Settings
from core.ledger.batches import pair_filter
from core.ledger.doctypes import BOOK_SNAPSHOT, CLOSES_COUNT, COUNT_DISCREPANCY, doc_type
from core.ledger.document_rows import insert_document
from core.ledger.hooks import Hook
from core.ledger.numbering import next_number
from core.models import Document, StockBalance

ZERO = Decimal(0)
DISCREPANCY = "discrepancy"  # the type of the document a count's differences become
COUNT_TYPE = "stock_count"


async def book_quantities(session: AsyncSession, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], Decimal]:
    """On-hand quantity per (product, warehouse) from the balance rows."""
    if not pairs:
        return {}
    stmt = (
        select(StockBalance.product_id, StockBalance.warehouse_id, func.sum(StockBalance.qty))
        .where(*pair_filter(StockBalance.product_id, StockBalance.warehouse_id, pairs))
        .group_by(StockBalance.product_id, StockBalance.warehouse_id)
    )
    found = {(p, w): s for p, w, s in (await session.execute(stmt)).all()}
    return defaultdict(lambda: ZERO, found)


async def record_book_quantities(session: AsyncSession, doc: Document) -> None:
    """Store each count line's book quantity as of now (the count's snapshot)."""
    book = await book_quantities(session, sorted({(ln.product_id, ln.warehouse_id) for ln in doc.lines}))
    for ln in doc.lines:
        ln.book_qty = book[(ln.product_id, ln.warehouse_id)]


async def create_discrepancy(session: AsyncSession, settings: Settings, count: Document,
                             now: datetime) -> Document | None:
    """A submitted discrepancy document (counted − book) for the count's differing lines, or None."""
    diff_lines = [ln for ln in count.lines if ln.counted_qty is not None and ln.stock_qty != ln.book_qty]
    if not diff_lines:  # the shelves match the books: the count is done
        await close_count(session, count.id, now)
        return None
    dt = doc_type(DISCREPANCY)
    doc = Document(
        number=await next_number(session, dt.prefix, now, settings.timezone),
        type=dt.code, status="submitted", warehouse_id=count.warehouse_id, ref_document_id=count.id,
        created_by_id=count.created_by_id, validation_mode=dt.validation_mode(settings.validation),
        created_at=now, submitted_at=now,
    )
    rows = []
    for i, ln in enumerate(diff_lines, start=1):
        delta = ln.stock_qty - (ln.book_qty or ZERO)
        rows.append(
            {
                "line_no": i, "product_id": ln.product_id, "warehouse_id": ln.warehouse_id,
                "batch_code": ln.batch_code, "expiry": None, "qty": delta / ln.factor, "unit": ln.unit,
                "factor": ln.factor, "stock_qty": delta, "unit_price": ZERO, "tax_rate": ZERO,
                "counted_qty": ln.stock_qty, "book_qty": ln.book_qty, "reserved_qty": ZERO,
                "discrepancy_type": ln.discrepancy_type,
            }
        )
    return await insert_document(session, doc, rows)


async def close_count(session: AsyncSession, count_id: int | None, now: datetime) -> bool:
    """A submitted count → posted (it moves no stock: posting it only closes it). False when it was not open."""
    if count_id is None:
        return False
    done = await session.execute(update(Document).where(Document.id == count_id, Document.type == COUNT_TYPE,
                                                        Document.status == "submitted")
                                 .values(status="posted", posted_at=now).execution_options(synchronize_session=False))
    count = session.identity_map.get(session.identity_key(Document, count_id)) if done.rowcount else None
    if count is not None:
        set_committed_value(count, "status", "posted")
        set_committed_value(count, "posted_at", now)
    return bool(done.rowcount)


async def _close_counted(session: AsyncSession, _settings: Settings, doc: Document, now: datetime) -> None:
    await close_count(session, doc.ref_document_id, now)


async def _snapshot_book(session: AsyncSession, _settings: Settings, doc: Document, _now: datetime) -> None:
    await record_book_quantities(session, doc)


# The hooks this module implements (see DocType.hooks and core.ledger.documents).
HOOKS: dict[str, Hook] = {
    BOOK_SNAPSHOT: Hook(before_submit=_snapshot_book),
    COUNT_DISCREPANCY: Hook(after_submit=create_discrepancy),
    CLOSES_COUNT: Hook(posted=_close_counted),
}
