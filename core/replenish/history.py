"""Ledger → engine arrays: daily demand, stock-out days, supplier lead times and the current position."""

# Rules:
#
# * Demand is the stock quantity of POSTED sales issues (销售出库), on the local calendar day of posting.
#   A posted sales return (销售退货) takes its quantity off the day of the sales issue it refers to (the
#   customer did not keep the goods), floored at zero. Borrow slips, borrow returns, transfers, losses,
#   adjustments, other issues and count differences are not demand; neither are drafts, submitted or
#   cancelled sales issues.
# * A day is a stock-out (censored) day when the product's on-hand total over the relevant warehouses
#   (the one asked about, else all) was ≤ 0 at any moment of it: at its start, after any posting in it,
#   or at its end (so days before the first receipt are censored too). The total is
#   followed posting by posting (the moves of one posting are netted first, so a transfer between two
#   counted warehouses never looks like a dip); on-loan stock is not on hand.
# * Lead time of a supplier is learned from posted purchase receipts that refer to a purchase order:
#   receipt posting day − order day (its approval, else submission, else creation), in local days. A
#   product's supplier is the supplier of its latest posted receipt. With fewer than LT_MIN_OBSERVATIONS
#   such receipts the product's own lead_time_days is used, with a spread of LT_PRIOR_CV × that.
# * Position: on hand from the balances; on order = open purchase orders (submitted or approved) less
#   the posted receipts that refer to them, per order and product, never below zero (a receipt must name
#   its order to close it); requested = open purchase requests (submitted or approved) that no open
#   purchase order refers to yet (once one does, the order carries the quantity); reserved = what
#   open (submitted) sales orders reserve — only strategic customers' orders reserve (the ledger's
#   strategic_reserve_rate), which is the allocation the engine subtracts.

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, Float, and_, case, cast, exists, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.errors import DomainError
from core.models import ON_HAND, Document, DocumentLine, Product, StockBalance, StockMove, Warehouse
from core.types import SCALE

DEFAULT_HISTORY_DAYS = 364
LT_LOOKBACK_DAYS = 365
LT_MIN_OBSERVATIONS = 3
MAX_HISTORY_DAYS = 3650  # ten years: more is a typo (and an unbounded read)
MIN_YEAR, MAX_YEAR = 2000, 2100  # dates a user types for months, promotions and anchors
LT_PRIOR_CV = 0.3  # lead-time spread assumed when a supplier has too few receipts (research notes, section 4)
OPEN_ORDER_STATUSES = ("submitted", "posted")
_UNIX_EPOCH_JULIAN_DAY = 2440587.5

_L = DocumentLine.__table__
_D = Document.__table__
_M = StockMove.__table__
_B = StockBalance.__table__


@dataclass(frozen=True)
class ProductIndex:
    """The products the arrays are aligned on (row i of every array is product ids[i])."""

    ids: np.ndarray  # int64
    skus: tuple[str, ...]
    names: tuple[str, ...]
    units: tuple[str, ...]
    categories: tuple[str, ...]
    lead_time_days: np.ndarray  # float64, the product master's lead time
    buffer_days: np.ndarray  # float64
    moq: np.ndarray  # float64, stock units
    pack: np.ndarray  # float64, stock units
    auto_replenish: np.ndarray  # bool
    subset: bool = False  # only some products: the ledger reads are filtered to them

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> dict[int, int]:
        """Product id → row."""
        return {int(pid): i for i, pid in enumerate(self.ids)}

    def category_ids(self) -> np.ndarray:
        """int[n]: each product's category as an index into the sorted distinct categories (equal ids = same one)."""
        if not self.categories:
            return np.zeros(0, int)
        return np.unique(np.array(self.categories, dtype=str), return_inverse=True)[1]


@dataclass(frozen=True)
class Window:
    """Whole local days [start, start + days) in a timezone."""

    start: date
    days: int
    tz: tzinfo

    @classmethod
    def ending_yesterday(cls, today: date, days: int, tz: tzinfo) -> Window:
        """The `days` days before `today` (today itself is not over yet)."""
        if not 1 <= days <= MAX_HISTORY_DAYS:
            raise DomainError("BAD_DAYS", f"历史天数 {days} 必须在 1 到 {MAX_HISTORY_DAYS} 之间",
                              "请给出正整数天数，例如 364")
        return cls(today - timedelta(days=days), days, tz)

    @property
    def end(self) -> date:
        """The first day after the window."""
        return self.start + timedelta(days=self.days)

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """[start, end) as timezone-aware datetimes."""
        return (datetime.combine(self.start, time(0), self.tz), datetime.combine(self.end, time(0), self.tz))

    def day_of(self, at: datetime) -> int:
        """Index of the local day of a timezone-aware time (may fall outside the window)."""
        return (at.astimezone(self.tz).date() - self.start).days

    def days_of(self, unix_seconds: np.ndarray) -> np.ndarray:
        """day_of for Unix times, vectorised: -1 before the window, `days` from its end on (exact across DST)."""
        midnights = np.array([datetime.combine(self.start + timedelta(days=k), time(0), self.tz).timestamp()
                              for k in range(self.days + 1)])
        # Rounded to the millisecond: SQLite's julianday arithmetic is off by microseconds.
        return np.searchsorted(midnights, np.round(np.asarray(unix_seconds, dtype=np.float64), 3), side="right") - 1


@dataclass(frozen=True)
class LeadTimes:
    """Lead time per product (days): mean, spread and whether learned from its supplier's receipts."""

    mean: np.ndarray
    std: np.ndarray
    learned: np.ndarray  # bool


@dataclass(frozen=True)
class Position:
    """Current position per product in stock units."""

    on_hand: np.ndarray
    on_order: np.ndarray
    requested: np.ndarray
    reserved: np.ndarray


@dataclass(frozen=True)
class History:
    """Everything the ledger tells the engine, aligned on one product index."""

    index: ProductIndex
    window: Window
    demand: np.ndarray  # float64 [n, days]
    stockout: np.ndarray  # bool [n, days]
    lead: LeadTimes
    position: Position
    warehouse_id: int | None

    def sliced(self, first: int, days: int, lead: LeadTimes | None = None) -> History:
        """The days [first, first + days) of this history as a history of its own (a day's demand and stock-out do
        not depend on the window around it), with other lead times if given; position unchanged."""
        if first < 0 or days < 1 or first + days > self.window.days:
            raise ValueError(f"days [{first}, {first + days}) outside a {self.window.days}-day history")
        window = Window(self.window.start + timedelta(days=first), days, self.window.tz)
        return replace(self, window=window, demand=self.demand[:, first:first + days],
                       stockout=self.stockout[:, first:first + days], lead=lead or self.lead)


def _f(value: Decimal | int | float | None) -> float:
    return 0.0 if value is None else float(value)


async def warehouse_id(session: AsyncSession, warehouse: str | None) -> int | None:
    """The id of a warehouse given by code or name; None for none given; DomainError NOT_FOUND if unknown."""
    if warehouse is None:
        return None
    wid = await session.scalar(
        select(Warehouse.id).where((Warehouse.code == warehouse) | (Warehouse.name == warehouse)).limit(1)
    )
    if wid is None:
        raise DomainError("NOT_FOUND", f"找不到仓库「{warehouse}」", "请核对仓库编码或名称", {"warehouse": warehouse})
    return wid


async def load_products(session: AsyncSession, product_ids: Iterable[int] | None = None) -> ProductIndex:
    """Every product (or the given ones), ordered by SKU."""
    stmt = select(Product.id, Product.sku, Product.name, Product.stock_unit, Product.category,
                  Product.lead_time_days, Product.buffer_days, Product.moq, Product.pack_size,
                  Product.auto_replenish).order_by(Product.sku)
    if product_ids is not None:
        stmt = stmt.where(Product.id.in_(list(product_ids)))
    rows = (await session.execute(stmt)).all()
    return ProductIndex(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        skus=tuple(r[1] for r in rows),
        names=tuple(r[2] for r in rows),
        units=tuple(r[3] for r in rows),
        categories=tuple(r[4] or "" for r in rows),
        lead_time_days=np.array([_f(r[5]) for r in rows], dtype=np.float64),
        buffer_days=np.array([_f(r[6]) for r in rows], dtype=np.float64),
        moq=np.array([_f(r[7]) for r in rows], dtype=np.float64),
        pack=np.array([_f(r[8]) or 1.0 for r in rows], dtype=np.float64),
        auto_replenish=np.array([bool(r[9]) for r in rows], dtype=bool),
        subset=product_ids is not None,
    )


def _line_filter(stmt: Any, wid: int | None) -> Any:
    return stmt if wid is None else stmt.where(_L.c.warehouse_id == wid)


def _dialect(session: AsyncSession) -> str:
    bind = session.bind
    return "sqlite" if bind is None else bind.dialect.name


def _epoch(dialect: str, col: Any) -> Any:
    """SQL for a UTC timestamp column as Unix seconds (a float), skipping per-row datetime objects."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", col), Float)
    return (func.julianday(col) - _UNIX_EPOCH_JULIAN_DAY) * 86400.0  # SQLite keeps naive UTC text


def _raw_qty(dialect: str, col: Any) -> tuple[Any, float]:
    """SQL for a Dec quantity (or a sum of one) as a plain number, and the divisor back to units."""
    if dialect == "postgresql":
        return cast(col, Float), 1.0
    return type_coerce(col, BigInteger), float(10**SCALE)  # Dec is a scaled integer there


async def _arrays(session: AsyncSession, stmt: Any, divisor: float, columns: int = 3) -> np.ndarray:
    """Rows of (product id, unix seconds, raw quantity[, …]) as float64[k, columns], quantities in units."""
    rows = (await session.execute(stmt)).all()
    if not rows:
        return np.zeros((0, columns))
    # A year of a large ledger is millions of rows: seconds of conversion, off the event loop.
    return await asyncio.to_thread(_to_array, rows, divisor)


def _to_array(rows: Sequence[Any], divisor: float) -> np.ndarray:
    # Column by column: numpy converting Row objects one by one is ~20× slower.
    out = np.column_stack([np.array(col, dtype=np.float64) for col in zip(*rows, strict=True)])
    out[:, 2] /= divisor
    return out


def _positions(index: ProductIndex, window: Window, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, day, mask inside the window and the index) for fetched (product id, unix seconds, …) rows."""
    lookup = np.full(int(index.ids.max(initial=0)) + 2, -1, dtype=np.int64)
    lookup[index.ids] = np.arange(len(index))
    pid = data[:, 0].astype(np.int64)
    rows = np.where((pid >= 0) & (pid < len(lookup)), lookup[np.clip(pid, 0, len(lookup) - 1)], -1)
    days = window.days_of(data[:, 1])
    return rows, days, (rows >= 0) & (days >= 0) & (days < window.days)


async def daily_demand(session: AsyncSession, index: ProductIndex, window: Window,
                       wid: int | None = None) -> np.ndarray:
    """Demand [n, days]: posted sales issues, less posted returns on the original sale's day, floored at 0."""
    start, end = window.utc_bounds()
    dialect = _dialect(session)
    qty, divisor = _raw_qty(dialect, _L.c.stock_qty)
    sales = _line_filter(
        select(_L.c.product_id, _epoch(dialect, _D.c.posted_at), qty)
        .select_from(_L.join(_D, _D.c.id == _L.c.document_id))
        .where(_D.c.type == "sales_issue", _D.c.status == "posted", _D.c.posted_at >= start, _D.c.posted_at < end),
        wid,
    )
    ret, orig = _D.alias("ret"), _D.alias("orig")
    returns = _line_filter(
        select(_L.c.product_id, _epoch(dialect, orig.c.posted_at), qty)
        .select_from(_L.join(ret, ret.c.id == _L.c.document_id).join(orig, orig.c.id == ret.c.ref_document_id))
        .where(ret.c.type == "sales_return", ret.c.status == "posted", orig.c.type == "sales_issue",
               orig.c.status == "posted", orig.c.posted_at >= start, orig.c.posted_at < end),
        wid,
    )
    if index.subset:
        sales, returns = (stmt.where(_L.c.product_id.in_(index.ids.tolist())) for stmt in (sales, returns))
    demand = np.zeros((len(index), window.days), dtype=np.float64)
    for stmt, sign in ((sales, 1.0), (returns, -1.0)):
        data = await _arrays(session, stmt, divisor)
        rows, days, ok = _positions(index, window, data)
        np.add.at(demand, (rows[ok], days[ok]), sign * data[ok, 2])
    return np.maximum(np.round(demand, 6), 0.0)


def _forward_fill(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Fill NaNs along axis 1 with the last value to their left; leading NaNs take first[row]."""
    filled = np.concatenate([first[:, None], values], axis=1)
    mask = ~np.isnan(filled)
    idx = np.where(mask, np.arange(filled.shape[1]), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    return filled[np.arange(filled.shape[0])[:, None], idx][:, 1:]


STOCKOUT_CHUNK = 10_000  # products per stock-out query: bounds the rows one query can return


def _near_zero(dialect: str, window: Window, wid: int | None, ids: list[int] | None, low: int, high: int) -> Any:
    """The postings in the window at or next to an on-hand level ≤ 0, for products low..high (or `ids` among them).

    The database keeps the running on-hand total per product, move by move in time order (ROWS frame, from the first
    move ever), so no move outside the answer is sent to Python. A row comes back when the total after it is ≤ 0 or
    was ≤ 0 just before it: every posting that ends at or below zero, and every posting that follows one (the
    recovery). Rows inside a multi-move posting (a transfer between two counted warehouses) may show a level the
    posting as a whole never had: the caller keeps only each posting's last row that came back."""
    running = func.sum(_M.c.qty).over(partition_by=_M.c.product_id, order_by=(_M.c.posted_at, _M.c.id),
                                      rows=(None, 0))
    start, end = window.utc_bounds()
    inner = (select(_M.c.id, _M.c.product_id, _M.c.document_id, _M.c.posted_at, _M.c.qty.label("q"),
                    running.label("r"))
             .where(_M.c.bucket == ON_HAND, _M.c.posted_at < end, _M.c.product_id.between(low, high)))
    if wid is not None:
        inner = inner.where(_M.c.warehouse_id == wid)
    if ids is not None:
        inner = inner.where(_M.c.product_id.in_(ids))
    sub = inner.subquery()
    r, _divisor = _raw_qty(dialect, sub.c.r)
    return (select(sub.c.product_id, _epoch(dialect, sub.c.posted_at), r, sub.c.document_id)
            .where(sub.c.posted_at >= start, (sub.c.r <= 0) | (sub.c.r - sub.c.q <= 0))
            .order_by(sub.c.product_id, sub.c.posted_at, sub.c.id))


async def _may_reach_zero(session: AsyncSession, index: ProductIndex, end: datetime, wid: int | None) -> set[int]:
    """Products whose on-hand level may have been ≤ 0 after their first move (before `end`): one of their keys
    (warehouse, batch) had a move leaving it at or below zero, or a key's history was entered out of time order
    (its balance_after does not follow time). The level of any other product is the sum of keys that are all
    above zero from their first move on: above zero from the product's first move on."""
    b = _B.c
    at_zero = select(_M.c.product_id).where(_M.c.bucket == ON_HAND, _M.c.posted_at < end, _M.c.balance_after <= 0)
    unordered = select(b.product_id).where(b.unordered.is_(True))
    if wid is not None:
        at_zero, unordered = at_zero.where(_M.c.warehouse_id == wid), unordered.where(b.warehouse_id == wid)
    found = set((await session.scalars(at_zero.distinct())).all())
    found |= set((await session.scalars(unordered.distinct())).all())
    return found & set(index.ids.tolist())


async def stockout_days(session: AsyncSession, index: ProductIndex, window: Window,
                        wid: int | None = None) -> np.ndarray:
    """Stock-out days [n, days]: on hand (relevant warehouses) ≤ 0 at the day's start, any posting in it, or its end.

    A product that may have reached zero (_may_reach_zero) has the postings at or next to a level ≤ 0 read
    (_near_zero), a chunk of products at a time; between them the level is above zero, which is all the rule needs.
    Any other product is out exactly up to the day of its first move (level 0 until then) — every day if it never
    moved."""
    n = len(index)
    start, end = window.utc_bounds()
    dialect = _dialect(session)
    raw, divisor = _raw_qty(dialect, func.sum(case((_M.c.posted_at < start, _M.c.qty), else_=0)))
    first_stmt = (select(_M.c.product_id, raw, _epoch(dialect, func.min(_M.c.posted_at)))
                  .where(_M.c.bucket == ON_HAND, _M.c.posted_at < end).group_by(_M.c.product_id))
    if wid is not None:
        first_stmt = first_stmt.where(_M.c.warehouse_id == wid)
    if index.subset:
        first_stmt = first_stmt.where(_M.c.product_id.in_(index.ids.tolist()))
    rows_of = index.rows()
    opening = np.zeros(n, dtype=np.float64)
    first_day = np.full(n, window.days - 1, dtype=np.int64)  # never moved: out every day
    moved = [(rows_of[pid], float(qty or 0) / divisor, first)
             for pid, qty, first in (await session.execute(first_stmt)).all() if pid in rows_of]
    if moved:
        at = np.array([m[0] for m in moved], dtype=np.int64)
        opening[at] = [m[1] for m in moved]
        first_day[at] = window.days_of(np.array([m[2] for m in moved], dtype=np.float64))
    opening = np.round(opening, 6)
    out = np.arange(window.days)[None, :] <= first_day[:, None]
    candidates = np.array(sorted(await _may_reach_zero(session, index, end, wid)), dtype=np.int64)
    if not len(candidates):
        return out
    rows = np.array([rows_of[int(pid)] for pid in candidates])
    out[rows] = False
    end_of_day = np.full((len(rows), window.days), np.nan)
    low = np.full((len(rows), window.days), np.inf)
    sub_index = replace(index, ids=candidates, subset=True)
    for k in range(0, len(candidates), STOCKOUT_CHUNK):
        ids = candidates[k:k + STOCKOUT_CHUNK]
        stmt = _near_zero(dialect, window, wid, ids.tolist(), int(ids[0]), int(ids[-1]))
        data = await _arrays(session, stmt, divisor, columns=4)
        # One level per posting (product, time, document): its last row that came back.
        last_of_posting = np.r_[(data[1:, 0] != data[:-1, 0]) | (data[1:, 1] != data[:-1, 1])
                                | (data[1:, 3] != data[:-1, 3]), True] if len(data) else np.zeros(0, bool)
        data = data[last_of_posting]
        p, days, ok = _positions(sub_index, window, data)
        if not ok.any():
            continue
        p, d, level = p[ok], days[ok], np.round(data[ok, 2], 6)  # sorted by product, then time
        np.minimum.at(low, (p, d), level)
        last = np.r_[(p[1:] != p[:-1]) | (d[1:] != d[:-1]), True]
        end_of_day[p[last], d[last]] = level[last]
    end_of_day = _forward_fill(end_of_day, opening[rows])
    start_of_day = np.concatenate([opening[rows][:, None], end_of_day[:, :-1]], axis=1)
    out[rows] = (start_of_day <= 0) | (low <= 0) | (end_of_day <= 0)
    return out


async def lead_times(session: AsyncSession, index: ProductIndex, today: date, tz: tzinfo,
                     lookback_days: int = LT_LOOKBACK_DAYS) -> LeadTimes:
    """Lead time per product from its supplier's receipts against purchase orders (see the module rules)."""
    since = datetime.combine(today - timedelta(days=lookback_days), time(0), tz)
    receipt, order = aliased(Document), aliased(Document)
    pairs = (await session.execute(
        select(func.coalesce(receipt.supplier_id, order.supplier_id), receipt.posted_at,
               func.coalesce(order.posted_at, order.submitted_at, order.created_at))
        .select_from(receipt)
        .join(order, order.id == receipt.ref_document_id)
        .where(receipt.type == "purchase_receipt", receipt.status == "posted", order.type == "purchase_order",
               receipt.posted_at >= since)
    )).all()
    by_supplier: dict[int, list[float]] = {}
    for sid, received, ordered in pairs:
        if sid is not None:
            days = (received.astimezone(tz).date() - ordered.astimezone(tz).date()).days
            by_supplier.setdefault(sid, []).append(float(max(days, 0)))
    latest = (await session.execute(
        select(_L.c.product_id, _D.c.supplier_id)
        .select_from(_L.join(_D, _D.c.id == _L.c.document_id))
        .where(_D.c.type == "purchase_receipt", _D.c.status == "posted", _D.c.supplier_id.is_not(None))
        .order_by(_D.c.posted_at, _D.c.id)
    )).all()
    supplier_of = {pid: sid for pid, sid in latest}  # the last row per product wins
    mean = index.lead_time_days.copy()
    std = LT_PRIOR_CV * mean
    learned = np.zeros(len(index), dtype=bool)
    for i, pid in enumerate(index.ids.tolist()):
        sid = supplier_of.get(pid)
        obs = by_supplier.get(sid, []) if sid is not None else []
        if len(obs) >= LT_MIN_OBSERVATIONS:
            mean[i] = float(np.mean(obs))
            std[i] = float(np.std(obs, ddof=1))
            learned[i] = True
    return LeadTimes(mean, std, learned)


async def position(session: AsyncSession, index: ProductIndex, wid: int | None = None) -> Position:
    """On hand, on order, requested and reserved per product (see the module rules)."""
    rows_of = index.rows()
    n = len(index)

    def fold(rows: Iterable[Sequence[Any]]) -> np.ndarray:
        out = np.zeros(n, dtype=np.float64)
        for pid, qty in rows:
            if pid in rows_of:
                out[rows_of[pid]] += _f(qty)
        return np.round(out, 6)

    on_hand_stmt = select(_B.c.product_id, func.sum(_B.c.qty)).group_by(_B.c.product_id)
    if wid is not None:
        on_hand_stmt = on_hand_stmt.where(_B.c.warehouse_id == wid)
    on_hand = fold((await session.execute(on_hand_stmt)).all())

    # Open purchase orders per (order, product), less the posted receipts that refer to them.
    ordered = (await session.execute(_line_filter(
        select(_D.c.id, _L.c.product_id, func.sum(_L.c.stock_qty))
        .select_from(_L.join(_D, _D.c.id == _L.c.document_id))
        .where(_D.c.type == "purchase_order", _D.c.status.in_(OPEN_ORDER_STATUSES))
        .group_by(_D.c.id, _L.c.product_id), wid))).all()
    order = _D.alias("po")
    received = dict(((oid, pid), _f(q)) for oid, pid, q in (await session.execute(_line_filter(
        select(_D.c.ref_document_id, _L.c.product_id, func.sum(_L.c.stock_qty))
        .select_from(_L.join(_D, _D.c.id == _L.c.document_id).join(order, order.c.id == _D.c.ref_document_id))
        .where(_D.c.type == "purchase_receipt", _D.c.status == "posted", order.c.type == "purchase_order",
               order.c.status.in_(OPEN_ORDER_STATUSES))
        .group_by(_D.c.ref_document_id, _L.c.product_id), wid))).all())
    on_order = fold((pid, max(_f(q) - received.get((oid, pid), 0.0), 0.0)) for oid, pid, q in ordered)

    po = _D.alias("converted")
    requested = fold((await session.execute(_line_filter(
        select(_L.c.product_id, func.sum(_L.c.stock_qty))
        .select_from(_L.join(_D, _D.c.id == _L.c.document_id))
        .where(_D.c.type == "purchase_request", _D.c.status.in_(OPEN_ORDER_STATUSES),
               ~exists().where(and_(po.c.ref_document_id == _D.c.id, po.c.type == "purchase_order",
                                    po.c.status.in_(OPEN_ORDER_STATUSES))))
        .group_by(_L.c.product_id), wid))).all())

    reserved = fold((await session.execute(_line_filter(
        select(_L.c.product_id, func.sum(_L.c.reserved_qty))
        .select_from(_L.join(_D, _D.c.id == _L.c.document_id))
        .where(_D.c.type == "sales_order", _D.c.status == "submitted")
        .group_by(_L.c.product_id), wid))).all())
    return Position(on_hand, on_order, requested, reserved)


async def load_history(session: AsyncSession, *, today: date, tz: tzinfo, days: int = DEFAULT_HISTORY_DAYS,
                       warehouse: str | None = None, product_ids: Iterable[int] | None = None) -> History:
    """Demand, stock-outs, lead times and position for every product, history ending yesterday.

    Run it in one read session (db.read()) so all the statements see one snapshot."""
    window = Window.ending_yesterday(today, days, tz)
    wid = await warehouse_id(session, warehouse)
    index = await load_products(session, product_ids)
    return History(
        index=index,
        window=window,
        demand=await daily_demand(session, index, window, wid),
        stockout=await stockout_days(session, index, window, wid),
        lead=await lead_times(session, index, today, tz),
        position=await position(session, index, wid),
        warehouse_id=wid,
    )
