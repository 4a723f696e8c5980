"""Stock queries: find products by SKU, barcode or name fragment; balances now or as of a time."""

# The stock command runs find_products then stock_levels in one read session. Each statement costs a
# worker-thread round trip plus SQLAlchemy's per-execution work, so each of the two issues one statement
# (stock_levels a second one only to tell an unknown warehouse from an empty result). The statements are
# built once at import time, so no per-call construction or cache-key generation, and select table
# columns, so the session runs them as plain Core with no ORM result processing.

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, case, exists, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.ledger.doctypes import RESERVES, codes_with_hook
from core.models import ON_HAND, Batch, Document, DocumentLine, Product, StockBalance, StockMove, Warehouse
from core.storage import Fast

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


@dataclass(frozen=True, slots=True)
class ProductMatch:
    """A product found by find_products: the columns a stock query needs, read without ORM loading."""

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


_products = Product.__table__
_balances = StockBalance.__table__
_batches = Batch.__table__
_warehouses = Warehouse.__table__
_lines = DocumentLine.__table__
_documents = Document.__table__
_moves = StockMove.__table__
(_RESERVING,) = codes_with_hook(RESERVES)  # the one type whose submitted documents reserve stock (sales orders)


# --- find_products -----------------------------------------------------------------------------------------------
#
# One statement: the exact SKU/barcode matches UNION ALL the fragment matches, whose LIMIT drops to 0
# when an exact match exists; SQLite then skips the fragment scan altogether, so an exact lookup stays
# two index probes. The fragment part sorts on `sku || ''`: on plain sku SQLite walks the whole SKU index
# in order with a table lookup per product, which is slower than scanning and sorting the few hits.

_EXACT = or_(_products.c.sku == bindparam("q"), _products.c.barcode == bindparam("q"))
_PRODUCT_COLUMNS = (_products.c.id, _products.c.sku, _products.c.name, _products.c.barcode, _products.c.stock_unit)


def _find_statement(fragment_match: Any) -> Any:
    fragment = (
        select(*_PRODUCT_COLUMNS, literal(1).label("rank"))
        .where(fragment_match)
        .order_by(_products.c.sku.concat(""))
        .limit(case((exists().where(_EXACT), 0), else_=bindparam("limit")))
    )
    return union_all(select(*_PRODUCT_COLUMNS, literal(0).label("rank")).where(_EXACT), select(fragment.subquery()))


# Any backend: the name contains the text or the SKU starts with it; LIKE with its wildcards escaped.
# (SQLite's LIKE ignores the case of ASCII letters, and only of those.)
_FIND_LIKE = _find_statement(
    or_(_products.c.name.like(bindparam("infix"), escape="\\"), _products.c.sku.like(bindparam("prefix"), escape="\\"))
)
# SQLite, text without ASCII letters: LIKE then means plain substring and prefix matching, so the same
# rows come from instr() over the name index (a cheaper per-row test than LIKE ... ESCAPE, on narrower
# pages) together with a range on the unique SKU index.
_FIND_PLAIN = _find_statement(
    _products.c.id.in_(union_all(
        select(_products.c.id).where(func.instr(_products.c.name, bindparam("q")) > 0),
        select(_products.c.id).where(_products.c.sku >= bindparam("q"), _products.c.sku < bindparam("q_end")),
    ))
)
_ASCII_LETTER = re.compile("[A-Za-z]")
_FIND = {False: _FIND_LIKE, True: _FIND_PLAIN}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefix_end(text: str) -> str | None:
    """The least string above every string that starts with text (code point order is UTF-8 byte order)."""
    last = ord(text[-1])
    if last == 0x10FFFF:
        return None
    return text[:-1] + chr(0xE000 if last + 1 == 0xD800 else last + 1)  # surrogates are never stored


def _is_sqlite(session: AsyncSession) -> bool:
    bind = session.bind
    return bind is not None and bind.dialect.name == "sqlite"


async def _autoflush(session: AsyncSession) -> None:
    """Flush pending changes as an ORM query would (plain Core statements do not autoflush)."""
    if session.autoflush and (session.new or session.dirty or session.deleted):
        await session.flush()


async def find_products(session: AsyncSession, query: str, limit: int = 20) -> list[ProductMatch]:
    """Exact SKU or barcode matches; if none, SKU prefix or name fragment matches (up to limit, by SKU)."""
    plain, params = _find_params(_is_sqlite(session), query, limit)
    await _autoflush(session)
    return [ProductMatch(*row[:5]) for row in (await session.execute(_FIND[plain], params)).all()]


def _find_params(sqlite: bool, query: str, limit: int) -> tuple[bool, dict[str, Any]]:
    """(use the plain-text statement, its parameters) for a query; DomainError when it is empty."""
    q = query.strip()
    if not q:
        raise DomainError("EMPTY_QUERY", "请输入要查询的商品", "例如：库存 奶油、库存 SKU001 或扫描条码")
    end = _prefix_end(q)
    if end is not None and not _ASCII_LETTER.search(q) and sqlite:
        return True, {"q": q, "q_end": end, "limit": limit}
    escaped = _escape_like(q)
    return False, {"q": q, "infix": f"%{escaped}%", "prefix": f"{escaped}%", "limit": limit}


# --- stock_levels ------------------------------------------------------------------------------------------------

# The first warehouse whose code or name is the given text.
HINT_WAREHOUSES = 20  # listed in the fix for an unknown warehouse
_WAREHOUSE_ID = (
    select(_warehouses.c.id)
    .where(or_(_warehouses.c.code == bindparam("warehouse"), _warehouses.c.name == bindparam("warehouse")))
    .limit(1)
)


def _reserved_by_key(product_ids: Any = None) -> Any:
    """Reserved by open (submitted) sales orders per product and warehouse, for the products asked about
    (product_ids: a select of ids, or by default the expanding parameter `pids`)."""
    if product_ids is None:
        product_ids = bindparam("pids", expanding=True)
    return (
        select(_lines.c.product_id, _lines.c.warehouse_id, func.sum(_lines.c.reserved_qty).label("qty"))
        .select_from(_lines.join(_documents, _documents.c.id == _lines.c.document_id))
        # "+ 0": start from the few open sales orders (type/status index), not every historical line
        # of the products (the product index), so the cost follows open orders, not history.
        .where(_documents.c.type == _RESERVING, _documents.c.status == "submitted",
               (_lines.c.product_id + 0).in_(product_ids))
        .group_by(_lines.c.product_id, _lines.c.warehouse_id)
        .subquery("reserved")
    )


def _now_statement() -> Any:
    """Current balances: one row per balance with batch, warehouse and the key's reserved quantity."""
    reserved = _reserved_by_key()
    return (
        select(_balances.c.product_id, _balances.c.warehouse_id, _balances.c.qty, _balances.c.on_loan,
               _batches.c.code, _batches.c.expiry, _warehouses.c.code, _warehouses.c.name, reserved.c.qty)
        .select_from(
            _balances.join(_batches, _batches.c.id == _balances.c.batch_id)
            .join(_warehouses, _warehouses.c.id == _balances.c.warehouse_id)
            .outerjoin(reserved, and_(reserved.c.product_id == _balances.c.product_id,
                                      reserved.c.warehouse_id == _balances.c.warehouse_id))
        )
        .where(_balances.c.product_id.in_(bindparam("pids", expanding=True)))
    )


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
        select(_moves.c.product_id, _moves.c.warehouse_id, _moves.c.batch_id, _moves.c.bucket,
               _moves.c.balance_after, _batches.c.code, _batches.c.expiry, _warehouses.c.code, _warehouses.c.name)
        .select_from(
            _moves.join(_batches, _batches.c.id == _moves.c.batch_id)
            .join(_warehouses, _warehouses.c.id == _moves.c.warehouse_id)
        )
        .where(_moves.c.id.in_(last.scalar_subquery()))
    )


_NOW = _now_statement()
_NOW_IN_WAREHOUSE = _NOW.where(_balances.c.warehouse_id == _WAREHOUSE_ID.scalar_subquery())
_AS_OF = _as_of_statement(in_warehouse=False)
_AS_OF_IN_WAREHOUSE = _as_of_statement(in_warehouse=True)
_RESERVED = select(_reserved_by_key())


async def reserved_quantities(session: AsyncSession, product_ids: list[int]) -> dict[tuple[int, int], Decimal]:
    """Stock reserved by open (submitted) sales orders, per (product, warehouse)."""
    rows = (await session.execute(_RESERVED, {"pids": product_ids})).all()
    return {(p, w): qty for p, w, qty in rows}


async def stock_levels(
    session: AsyncSession, products: Sequence[ProductRef], warehouse: str | None = None, at: datetime | None = None
) -> list[WarehouseStock]:
    """Per warehouse and batch: on hand, on loan, reserved, available (as of `at` when given).

    `warehouse` is a warehouse code or name; an unknown one raises DomainError NOT_FOUND. Rows come by
    SKU then warehouse code, batches by expiry then code; keys with nothing on hand, on loan or
    reserved are left out, as are empty batches. Reservations are not tracked over time: as of a time
    they are zero.
    """
    if not products:
        return []
    params: dict[str, Any] = {"pids": [p.id for p in products]}
    if warehouse is not None:
        params["warehouse"] = warehouse
    await _autoflush(session)
    # rows: (product_id, warehouse_id, on_hand, on_loan, batch code, expiry, warehouse code, name, reserved)
    rows: Sequence[Sequence[Any]]
    if at is None:
        rows = (await session.execute(_NOW if warehouse is None else _NOW_IN_WAREHOUSE, params)).all()
    else:
        params["at"] = at
        rows = _as_of_rows(await session.execute(_AS_OF if warehouse is None else _AS_OF_IN_WAREHOUSE, params))
    if not rows:
        await _check_warehouse(session, warehouse)
        return []
    return _levels(rows, products)


async def _check_warehouse(session: AsyncSession, warehouse: str | None) -> None:
    """DomainError NOT_FOUND when a warehouse code or name was given and no warehouse has it; its fix lists the
    warehouses there are (up to HINT_WAREHOUSES) and says that leaving the warehouse out shows all of them."""
    if warehouse is None or await session.scalar(_WAREHOUSE_ID, {"warehouse": warehouse}) is not None:
        return
    rows = (await session.execute(select(_warehouses.c.code, _warehouses.c.name).order_by(_warehouses.c.code))).all()
    known = "、".join(f"{code} {name}" for code, name in rows[:HINT_WAREHOUSES])
    more = f" 等 {len(rows)} 个" if len(rows) > HINT_WAREHOUSES else ""
    fix = (f"请核对仓库编码或名称，可用的仓库：{known}{more}；不写仓库则查看全部仓库" if rows
           else "还没有任何仓库，请先导入仓库档案；不写仓库则查看全部仓库")
    raise DomainError("NOT_FOUND", f"找不到仓库「{warehouse}」", fix, {"warehouse": warehouse})


def _levels(rows: Iterable[Sequence[Any]], products: Sequence[ProductRef]) -> list[WarehouseStock]:
    """Balance-shaped rows grouped per product and warehouse (see stock_levels for the rules)."""
    grouped: dict[tuple[int, int], list[Sequence[Any]]] = {}
    for r in rows:
        grouped.setdefault((r[0], r[1]), []).append(r)
    by_id = {p.id: p for p in products}
    out: list[WarehouseStock] = []
    for (pid, _), rs in grouped.items():
        on_hand = sum((r[2] for r in rs), ZERO)
        on_loan = sum((r[3] for r in rs), ZERO)
        first = rs[0]
        reserved = ZERO if first[8] is None else first[8]  # per key, repeated on each of its batch rows
        if on_hand == 0 and on_loan == 0 and reserved == 0:
            continue
        if len(rs) > 1:
            rs.sort(key=lambda r: (r[5] or date.max, r[4]))
        detail = tuple(BatchStock(r[4], r[5], r[2], r[3]) for r in rs if r[2] != 0 or r[3] != 0)
        p = by_id[pid]
        out.append(
            WarehouseStock(p.sku, p.name, p.stock_unit, first[6], first[7], on_hand, on_loan, reserved, detail)
        )
    out.sort(key=lambda s: (s.sku, s.warehouse))
    return out


def _lookup_statement(find: Any, in_warehouse: bool) -> Any:
    """find's matches (CTE m) LEFT JOIN their balances with batch, warehouse and reserved quantity."""
    m = find.cte("m")
    reserved = _reserved_by_key(select(m.c.id))
    on = _balances.c.product_id == m.c.id
    if in_warehouse:
        on = and_(on, _balances.c.warehouse_id == _WAREHOUSE_ID.scalar_subquery())
    # Flat LEFT JOINs (batch and warehouse always exist for a balance): a parenthesised inner join on the
    # right of a LEFT JOIN makes SQLite materialise all balances first.
    stock = (
        m.outerjoin(_balances, on)
        .outerjoin(_batches, _batches.c.id == _balances.c.batch_id)
        .outerjoin(_warehouses, _warehouses.c.id == _balances.c.warehouse_id)
    )
    return (
        select(*(m.c[c.name] for c in _PRODUCT_COLUMNS), _balances.c.warehouse_id, _balances.c.qty,
               _balances.c.on_loan, _batches.c.code, _batches.c.expiry, _warehouses.c.code, _warehouses.c.name,
               reserved.c.qty)
        .select_from(
            stock.outerjoin(reserved, and_(reserved.c.product_id == _balances.c.product_id,
                                           reserved.c.warehouse_id == _balances.c.warehouse_id))
        )
        .order_by(m.c.rank, m.c.sku)
    )


_LOOKUP = {(plain, in_wh): _lookup_statement(_FIND[plain], in_wh) for plain in (False, True) for in_wh in (False, True)}


async def stock_lookup(
    session: AsyncSession, query: str, warehouse: str | None = None, at: datetime | None = None, limit: int = 20
) -> tuple[list[ProductMatch], list[WarehouseStock]]:
    """find_products then stock_levels — for current stock in one statement (what the stock command runs).

    Current stock needs no snapshot across statements, so callers may use db.read(snapshot=False)."""
    if at is not None:
        products = await find_products(session, query, limit)
        return products, await stock_levels(session, products, warehouse, at) if products else []
    plain, params = _find_params(_is_sqlite(session), query, limit)
    if warehouse is not None:
        params["warehouse"] = warehouse
    await _autoflush(session)
    found, rows = _split_lookup((await session.execute(_LOOKUP[(plain, warehouse is not None)], params)).all())
    if found and not rows:
        await _check_warehouse(session, warehouse)
    return found, _levels(rows, found)


_LOOKUP_FAST = {key: Fast(stmt) for key, stmt in _LOOKUP.items()}


async def current_stock(db: Any, query: str, warehouse: str | None = None, limit: int = 20
                        ) -> tuple[list[ProductMatch], list[WarehouseStock]]:
    """stock_lookup for current stock as one read statement through db.fetch (no session: the chat path)."""
    plain, params = _find_params(db.is_sqlite, query, limit)
    if warehouse is not None:
        params["warehouse"] = warehouse
    found, rows = _split_lookup(await db.fetch(_LOOKUP_FAST[(plain, warehouse is not None)], params))
    if found and not rows and warehouse is not None:
        async with db.read(snapshot=False) as session:
            await _check_warehouse(session, warehouse)
    return found, _levels(rows, found)


def _split_lookup(result: Iterable[Sequence[Any]]) -> tuple[list[ProductMatch], list[tuple]]:
    """The lookup's rows as (products in order, balance-shaped rows)."""
    products: dict[int, ProductMatch] = {}
    rows = []
    for r in result:
        if r[0] not in products:
            products[r[0]] = ProductMatch(*r[:5])
        if r[5] is not None:  # (product, warehouse, on hand, on loan, batch, expiry, wh code, wh name, reserved)
            rows.append((r[0], *r[5:]))
    return list(products.values()), rows


def _as_of_rows(moves: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Last moves (one per bucket) folded into balance-shaped rows with on hand and on loan side by side."""
    acc: dict[tuple[int, int, int], list[Any]] = {}
    for p, w, b, bucket, after, batch_code, expiry, wh_code, wh_name in moves:
        row = acc.get((p, w, b))
        if row is None:
            row = acc[(p, w, b)] = [p, w, ZERO, ZERO, batch_code, expiry, wh_code, wh_name, None]
        row[2 if bucket == ON_HAND else 3] = after
    return list(acc.values())
