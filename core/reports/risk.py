"""Risk items (the seed's 高风险商品预警表): products with stock and no movement for 30 days, and products whose
30-day turnover is under 0.3, with their stock value.

Definitions (local days in the configured timezone; the window is the WINDOW_DAYS whole days before `today`):

* on hand: the product's on-hand stock over every warehouse (on-loan stock is not on hand) at the window's end.
* no movement: no stock move of the product (any document, either bucket) since the window's first day.
* turnover = issue quantity over the window ÷ average stock over the window. Issue quantity: the stock quantity of
  posted sales issues and other issues (销售出库 + 其他出库) in the window, less their cancellations; transfers,
  loans, losses and count differences are not issues. Average stock: the mean of the 30 daily closing balances
  (on hand at the end of each day), each reconstructed as the on hand now less the moves posted after that day
  ended; their sum comes from one grouped query (two numbers per product: no move is loaded into Python).
* unit cost: the unit price (before tax, per stock unit) of the product's last posted purchase receipt, else of its
  posted opening; stock value = on hand × unit cost (unknown without either).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import ON_HAND, Document, DocumentLine, Product, StockBalance, StockMove
from core.types import Dec, q6

WINDOW_DAYS = 30
TURNOVER_LIMIT = Decimal("0.3")
ISSUE_TYPES = ("sales_issue", "other_issue")
IDLE = "idle"
SLOW = "slow"
REASON_ZH = {IDLE: f"{WINDOW_DAYS}天无出入库", SLOW: f"周转率<{TURNOVER_LIMIT}"}
COST_ZH = {"receipt": "最近采购入库单价", "opening": "期初单价", "": "无单价"}
FORMULA_ZH = (f"周转率 = 近{WINDOW_DAYS}天出库量（销售出库 + 其他出库）÷ 近{WINDOW_DAYS}天平均库存"
              f"（{WINDOW_DAYS}个每日期末在库量的平均）")
ZERO = Decimal(0)


@dataclass(frozen=True)
class RiskItem:
    """One product on the list: why, its stock and movement figures, and its stock value."""

    sku: str
    name: str
    category: str
    unit: str
    reason: str  # IDLE | SLOW
    on_hand: Decimal
    average: Decimal  # average daily closing stock over the window
    issued: Decimal  # issue quantity over the window
    turnover: Decimal | None  # issued ÷ average (None when the average is zero)
    last_move: datetime | None
    unit_cost: Decimal | None
    cost_source: str  # "receipt" | "opening" | ""

    @property
    def value(self) -> Decimal | None:
        """On hand × unit cost, to the cent (None when no cost is known)."""
        return None if self.unit_cost is None else (self.on_hand * self.unit_cost).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class RiskReport:
    """The risk items of the window [start, end) (local days), most valuable first."""

    start: date
    end: date  # the first day after the window (the report's day)
    items: list[RiskItem]
    products_with_stock: int

    @property
    def idle(self) -> list[RiskItem]:
        """Items with no movement in the window."""
        return [i for i in self.items if i.reason == IDLE]

    @property
    def slow(self) -> list[RiskItem]:
        """Items that moved but turn over too slowly."""
        return [i for i in self.items if i.reason == SLOW]

    @property
    def total_value(self) -> Decimal:
        """The stock value of every item with a known cost."""
        return sum((i.value for i in self.items if i.value is not None), ZERO)


def day_ends(today: date, tz: ZoneInfo, days: int = WINDOW_DAYS) -> tuple[datetime, list[datetime]]:
    """The window's start (midnight of its first day) and the end of each of its days, oldest first (DST-exact)."""
    first = today - timedelta(days=days)
    start = datetime.combine(first, time(0), tz)
    return start, [datetime.combine(first + timedelta(days=k + 1), time(0), tz) for k in range(days)]


async def after_sums(session: AsyncSession, ends: list[datetime]) -> dict[int, tuple[Decimal, Decimal]]:
    """Per product: (the on-hand moves posted at or after the last day end — what yesterday's closing lacks of the
    balance now —, the sum over every day end of the moves posted at or after it). Closing of day k = now − S_k, so
    the average closing = now − ΣS_k ÷ days; ΣS_k = Σ qty × (the number of day ends at or before the move), one CASE
    per move (latest end first). One grouped query over the window's moves; two numbers per product come back."""
    m = StockMove.__table__.c
    ends_passed = case(*[(m.posted_at >= e, k + 1) for k, e in reversed(list(enumerate(ends)))], else_=0)
    rows = await session.execute(
        select(m.product_id, type_coerce(func.sum(case((m.posted_at >= ends[-1], m.qty), else_=0)), Dec),
               type_coerce(func.sum(m.qty * ends_passed), Dec))
        .where(m.bucket == ON_HAND, m.posted_at >= ends[0]).group_by(m.product_id))
    return {pid: (last or ZERO, total or ZERO) for pid, last, total in rows.all()}


async def on_hand(session: AsyncSession) -> dict[int, Decimal]:
    """On-hand stock per product over every warehouse, now."""
    b = StockBalance.__table__.c
    rows = await session.execute(select(b.product_id, type_coerce(func.sum(b.qty), Dec)).group_by(b.product_id))
    return {pid: qty or ZERO for pid, qty in rows.all()}


async def issued(session: AsyncSession, start: datetime, end: datetime) -> dict[int, Decimal]:
    """Issue quantity per product in [start, end): sales and other issues' on-hand moves, cancellations netted."""
    m, d = StockMove.__table__.c, Document.__table__.c
    rows = await session.execute(
        select(m.product_id, type_coerce(func.sum(m.qty), Dec)).join(Document.__table__, d.id == m.document_id)
        .where(m.bucket == ON_HAND, d.type.in_(ISSUE_TYPES), m.posted_at >= start, m.posted_at < end)
        .group_by(m.product_id))
    return {pid: max(ZERO, -(qty or ZERO)) for pid, qty in rows.all()}


async def last_moves(session: AsyncSession, before: datetime) -> dict[int, datetime]:
    """The time of each product's latest stock move (either bucket) before `before`."""
    m = StockMove.__table__.c
    rows = await session.execute(select(m.product_id, func.max(m.posted_at)).where(m.posted_at < before)
                                 .group_by(m.product_id))
    return {pid: at for pid, at in rows.all() if at is not None}


async def unit_costs(session: AsyncSession) -> dict[int, tuple[Decimal, str]]:
    """Per product: the unit price per stock unit of its last posted purchase receipt, else of its posted opening."""
    d, ln = Document.__table__.c, DocumentLine.__table__.c
    out: dict[int, tuple[Decimal, str]] = {}
    for doc_type, source in (("opening", "opening"), ("purchase_receipt", "receipt")):  # receipts win
        ranked = (select(ln.product_id, ln.unit_price, ln.factor,
                         func.row_number().over(partition_by=ln.product_id,
                                                order_by=(d.posted_at.desc(), d.id.desc(), ln.line_no.desc()))
                         .label("n"))
                  .join(Document.__table__, d.id == ln.document_id)
                  .where(d.type == doc_type, d.status == "posted").subquery())
        rows = await session.execute(select(ranked.c.product_id, ranked.c.unit_price, ranked.c.factor)
                                     .where(ranked.c.n == 1))
        for pid, price, factor in rows.all():
            if source == "receipt" or pid not in out:
                out[pid] = (q6(price / (factor or 1)), source)
    return out


async def risk_items(session: AsyncSession, today: date, tz: ZoneInfo) -> RiskReport:
    """The risk report for the WINDOW_DAYS days before `today` (read in one snapshot session). Stock figures are
    as at the end of the window (yesterday's closing), so a late re-run of a past day reports that day."""
    start, ends = day_ends(today, tz)
    now = await on_hand(session)
    after = await after_sums(session, ends)
    closing = {pid: q - after.get(pid, (ZERO, ZERO))[0] for pid, q in now.items()}
    stock = {pid: q for pid, q in closing.items() if q > 0}
    out_qty = await issued(session, start, ends[-1])
    last = await last_moves(session, ends[-1])
    costs = await unit_costs(session)
    p = Product.__table__.c
    products = {r[0]: r for r in (await session.execute(select(p.id, p.sku, p.name, p.category, p.stock_unit))).all()
                if r[0] in stock}
    items = []
    for pid, qty in stock.items():
        row = products.get(pid)
        if row is None:
            continue
        average = q6((now[pid] * len(ends) - after.get(pid, (ZERO, ZERO))[1]) / len(ends))
        out = out_qty.get(pid, ZERO)
        turnover = q6(out / average) if average > 0 else None
        moved = last.get(pid)
        if moved is None or moved < start:
            reason = IDLE
        elif turnover is not None and turnover < TURNOVER_LIMIT:
            reason = SLOW
        else:
            continue
        cost, source = costs.get(pid, (None, ""))
        items.append(RiskItem(row.sku, row.name, row.category, row.stock_unit, reason, qty, average, out, turnover,
                              moved, cost, source))
    items.sort(key=lambda i: (i.value is None, -(i.value or ZERO), i.sku))
    return RiskReport(start.date(), today, items, len(stock))
