"""Stock queries: find products by SKU, barcode or name fragment; balances now or as of a time.

The stock command runs find_products then stock_levels in one read session. Every statement costs a
worker-thread round trip plus SQLAlchemy's per-execution work, so each function issues a single
statement, built once at import time (no per-call construction or cache-key generation). The balance
statements use table columns, so the session executes them as plain Core without ORM result handling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import bindparam, case, exists, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.models import ON_HAND, Batch, Document, DocumentLine, Product, StockBalance, StockMove, Warehouse

ZERO = Decimal(0)


@dataclass(frozen=True)
class BatchStock:
    """Quantities of one batch in one warehouse."""

    batch: str
    expiry: date | None
    on_hand: Decimal
    on_loan: Decimal


@dataclass(frozen=True)
class WarehouseStock:
    """One product in one warehouse: totals and per-batch detail."""

    sku: str
    name: str
    unit: str
    warehouse: str
    warehouse_name: str
    on_hand: Decimal
    on_loan: Decimal
    reserved: Decimal
    batches: tuple[BatchStock, ...] = field(default_factory=tuple)

    @property
    def available(self) -> Decimal:
        """On hand less reserved."""
        return self.on_hand - self.reserved


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- find_products -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductMatch:
    """A product found by find_products: the columns the stock query needs, without ORM loading."""

    id: int
    sku: str
    name: str
    barcode: str | None
    stock_unit: str


class ProductRef(Protocol):
    """What stock_levels needs of a product: a ProductMatch or an ORM Product."""

    @property
    def id(self) -> int: ...

    @property
    def sku(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def stock_unit(self) -> str: ...


_products = Product.__table__.c

# One statement: the exact SKU/barcode matches UNION ALL the fragment matches, whose LIMIT drops to 0
# when an exact match exists (SQLite then skips the fragment scan altogether, so an exact lookup stays
# two index probes). The fragment part sorts on `sku || ''`: sorting on plain sku makes SQLite walk the
# whole SKU index in order with a table lookup per product, slower than scanning and sorting the few hits.
_EXACT = or_(_products.sku == bindparam("q"), _products.barcode == bindparam("q"))
_COLUMNS = (_products.id, _products.sku, _products.name, _products.barcode, _products.stock_unit)


def _find_statement(fragment_match: Any) -> Any:
    fragment = (
        select(*_COLUMNS)
        .where(fragment_match)
        .order_by(_products.sku.concat(""))
        .limit(case((exists().where(_EXACT), 0), else_=bindparam("limit")))
    )
    return union_all(select(*_COLUMNS).where(_EXACT), select(fragment.subquery()))


# Any backend: name contains the text or SKU starts with it, LIKE with the wildcards escaped. On SQLite
# LIKE ignores the case of ASCII letters (and only of those).
_FIND_LIKE = _find_statement(
    or_(_products.name.like(bindparam("infix"), escape="\\"), _products.sku.like(bindparam("prefix"), escape="\\"))
)
# SQLite, text without ASCII letters: there LIKE is plain substring/prefix matching, so the same rows
# come from instr() over the name index (a cheaper per-row test than LIKE ... ESCAPE, on narrower pages)
# and a range on the unique SKU index.
_FIND_PLAIN = _find_statement(
    _products.id.in_(union_all(
        select(_products.id).where(func.instr(_products.name, bindparam("q")) > 0),
        select(_products.id).where(_products.sku >= bindparam("q"), _products.sku < bindparam("q_end")),
    ))
)
_ASCII_LETTER = re.compile("[A-Za-z]")


def _prefix_end(text: str) -> str | None:
    """The least string above every string starting with text (code point order = UTF-8 byte order)."""
    last = ord(text[-1])
    if last == 0x10FFFF:
        return None
    nxt = last + 1 if last + 1 != 0xD800 else 0xE000  # surrogates cannot be encoded
    return text[:-1] + chr(nxt)


async def find_products(session: AsyncSession, query: str, limit: int = 20) -> list[ProductMatch]:
    """Exact SKU or barcode first; otherwise SKU prefix or name fragment matches (up to limit, by SKU)."""
    q = query.strip()
    if not q:
        raise DomainError("EMPTY_QUERY", "请输入要查询的商品", "例如：库存 奶油、库存 SKU001 或扫描条码")
    end = _prefix_end(q)
    if end is not None and _is_sqlite(session) and not _ASCII_LETTER.search(q):
        stmt, params = _FIND_PLAIN, {"q": q, "q_end": end, "limit": limit}
    else:
        escaped = _escape_like(q)
        stmt, params = _FIND_LIKE, {"q": q, "infix": f"%{escaped}%", "prefix": f"{escaped}%", "limit": limit}
    return [ProductMatch(*row) for row in (await session.execute(stmt, params)).all()]


def _is_sqlite(session: AsyncSession) -> bool:
    bind = session.bind
    return bind is not None and bind.dialect.name == "sqlite"


# --- stock_levels ------------------------------------------------------------------------------------------------

_balances: Any = StockBalance.__table__
_batches: Any = Batch.__table__
_warehouses: Any = Warehouse.__table__
_lines: Any = DocumentLine.__table__
_documents: Any = Document.__table__
_moves: Any = StockMove.__table__

# The first warehouse whose code or name is the given text (as the former lookup statement took it).
_WAREHOUSE_ID = (
    select(_warehouses.c.id)
    .where(or_(_warehouses.c.code == bindparam("warehouse"), _warehouses.c.name == bindparam("warehouse")))
    .limit(1)
)

# Reserved by open (submitted) sales orders, for the product and warehouse of the outer balance row.
_RESERVED = (
    select(func.sum(_lines.c.reserved_qty))
    .select_from(_lines.join(_documents, _documents.c.id == _lines.c.document_id))
    .where(_lines.c.product_id == _balances.c.product_id, _lines.c.warehouse_id == _balances.c.warehouse_id,
           _documents.c.type == "sales_order", _documents.c.status == "submitted")
    .scalar_subquery()
)

# rows: (product_id, warehouse_id, on_hand, on_loan, batch code, expiry, warehouse code, warehouse name, reserved)
_NOW = (
    select(_balances.c.product_id, _balances.c.warehouse_id, _balances.c.qty, _balances.c.on_loan, _batches.c.code,
           _batches.c.expiry, _warehouses.c.code, _warehouses.c.name, _RESERVED)
    .select_from(
        _balances.join(_batches, _batches.c.id == _balances.c.batch_id)
        .join(_warehouses, _warehouses.c.id == _balances.c.warehouse_id)
    )
    .where(_balances.c.product_id.in_(bindparam("pids", expanding=True)))
)
_NOW_IN_WAREHOUSE = _NOW.where(_balances.c.warehouse_id == _WAREHOUSE_ID.scalar_subquery())


def _as_of_statement(in_warehouse: bool) -> Any:
    """Balances as of a time: the balance_after of the last move per key and bucket at or before it."""
    last = (
        select(func.max(_moves.c.id))
        .where(_moves.c.product_id.in_(bindparam("pids", expanding=True)), _moves.c.posted_at <= bindparam("at"))
        .group_by(_moves.c.product_id, _moves.c.warehouse_id, _moves.c.batch_id, _moves.c.bucket)
    )
    if in_warehouse:
        last = last.where(_moves.c.warehouse_id == _WAREHOUSE_ID.scalar_subquery())
    return (
        select(_moves.c.product_id, _moves.c.warehouse_id, _moves.c.batch_id, _moves.c.bucket, _moves.c.balance_after,
               _batches.c.code, _batches.c.expiry, _warehouses.c.code, _warehouses.c.name)
        .select_from(
            _moves.join(_batches, _batches.c.id == _moves.c.batch_id)
            .join(_warehouses, _warehouses.c.id == _moves.c.warehouse_id)
        )
        .where(_moves.c.id.in_(last.scalar_subquery()))
    )


_AS_OF = _as_of_statement(False)
_AS_OF_IN_WAREHOUSE = _as_of_statement(True)


async def reserved_quantities(session: AsyncSession, product_ids: list[int]) -> dict[tuple[int, int], Decimal]:
    """Stock reserved by open (submitted) sales orders, per (product, warehouse)."""
    stmt = (
        select(DocumentLine.product_id, DocumentLine.warehouse_id, func.sum(DocumentLine.reserved_qty))
        .join(Document, Document.id == DocumentLine.document_id)
        .where(Document.type == "sales_order", Document.status == "submitted",
               DocumentLine.product_id.in_(product_ids))
        .group_by(DocumentLine.product_id, DocumentLine.warehouse_id)
    )
    return {(p, w): s for p, w, s in (await session.execute(stmt)).all()}


async def stock_levels(
    session: AsyncSession, products: Sequence[ProductRef], warehouse: str | None = None, at: datetime | None = None
) -> list[WarehouseStock]:
    """Per warehouse and batch: on hand, on loan, reserved, available (as of `at` when given).

    `warehouse` is a warehouse code or name; an unknown one raises DomainError NOT_FOUND.
    """
    if not products:
        return []
    params: dict[str, Any] = {"pids": [p.id for p in products]}
    if warehouse is not None:
        params["warehouse"] = warehouse
    if at is None:
        rows: Sequence[Any] = (await session.execute(_NOW if warehouse is None else _NOW_IN_WAREHOUSE, params)).all()
    else:
        params["at"] = at
        rows = _as_of_rows(await session.execute(_AS_OF if warehouse is None else _AS_OF_IN_WAREHOUSE, params))
    if not rows:
        if warehouse is not None and await session.scalar(_WAREHOUSE_ID, {"warehouse": warehouse}) is None:
            raise DomainError("NOT_FOUND", f"找不到仓库「{warehouse}」", "请核对仓库编码或名称",
                              {"warehouse": warehouse})
        return []
    grouped: dict[tuple[int, int], list[Any]] = {}
    for r in rows:
        grouped.setdefault((r[0], r[1]), []).append(r)
    by_id = {p.id: p for p in products}
    out: list[WarehouseStock] = []
    for (pid, _), rs in grouped.items():
        on_hand = sum((r[2] for r in rs), ZERO)
        on_loan = sum((r[3] for r in rs), ZERO)
        first = rs[0]
        reserved = first[8] or ZERO  # the same for every batch row of the key
        if on_hand == 0 and on_loan == 0 and reserved == 0:
            continue
        if len(rs) > 1:
            rs.sort(key=lambda r: (r[5] or date.max, r[4]))
        detail = tuple(BatchStock(r[4], r[5], r[2], r[3]) for r in rs if r[2] != 0 or r[3] != 0)
        p = by_id[pid]
        out.append(WarehouseStock(p.sku, p.name, p.stock_unit, first[6], first[7], on_hand, on_loan, reserved,
                                  detail))
    out.sort(key=lambda s: (s.sku, s.warehouse))
    return out


def _as_of_rows(result: Any) -> list[list[Any]]:
    """Move rows (one per bucket) folded into balance-shaped rows, on hand and on loan side by side."""
    acc: dict[tuple[int, int, int], list[Any]] = {}
    for p, w, b, bucket, after, bcode, expiry, wcode, wname in result:
        row = acc.get((p, w, b))
        if row is None:
            row = acc[(p, w, b)] = [p, w, ZERO, ZERO, bcode, expiry, wcode, wname, None]
        row[2 if bucket == ON_HAND else 3] = after
    return list(acc.values())
