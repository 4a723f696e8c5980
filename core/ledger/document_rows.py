"""Insert a new document and its lines as plain rows (shared by document creation and stock counts)."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.models import Document, DocumentLine
from core.storage import Fast, loaded, with_defaults

_DOC_COLUMNS = tuple(Document.__mapper__.column_attrs)
_DT, _LT = Document.__table__, DocumentLine.__table__
_INSERT_DOC = Fast(insert(_DT).returning(_DT.c.id))
# PostgreSQL: RETURNING makes SQLAlchemy send one multi-VALUES INSERT (asyncpg would run one per row).
_INSERT_LINES = Fast(insert(_LT), fallback=insert(_LT).returning(_LT.c.id))
_LINE_IDS = Fast(select(_LT.c.line_no, _LT.c.id).where(_LT.c.document_id == bindparam("doc_id")))


async def insert_document(session: AsyncSession, draft: Document, rows: list[dict]) -> Document:
    """Insert a new document and its lines (no unit-of-work flush); returns it, persistent, lines loaded."""
    values = with_defaults(_DT, {a.key: getattr(draft, a.key) for a in _DOC_COLUMNS if a.key != "id"})
    doc_id = (await _INSERT_DOC.all(session, values))[0][0]
    rows = [with_defaults(_LT, {**row, "document_id": doc_id}) for row in rows]
    await _INSERT_LINES.many(session, rows)
    ids = dict(await _LINE_IDS.all(session, {"doc_id": doc_id})) if rows else {}
    doc = loaded(session, Document, {**values, "id": doc_id})
    lines = [loaded(session, DocumentLine, {**r, "id": ids[r["line_no"]]})
             for r in sorted(rows, key=lambda r: r["line_no"])]
    set_committed_value(doc, "lines", lines)
    return doc
