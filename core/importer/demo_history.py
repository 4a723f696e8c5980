"""A year of seeded daily history for the demo, posted through core: sales, orders, receipts, transfers, promotions."""

# The story (all dates relative to the day the demo is built; RNG seeded, so one day's build is repeatable):
#
# * Opening stock 395 days ago (load_demo). From the next day to yesterday: every day except Sunday one wholesale
#   sales issue from CW (园区科技 / 平江路咖啡馆 / 婚庆 / 会展), and every day a sales issue per store for S01 and
#   S06 (cakes sold, booked as the ingredients and packaging they use, plus the gift boxes), all with weekly and
#   annual seasonality (mooncakes before Mid-Autumn, cookies and nuts around Christmas and the Spring Festival,
#   strawberries in winter and spring) and a slight growth.
# * Purchasing: each supplier is reviewed on its weekdays; a purchase order (李采购) is placed when the chain's stock
#   and what is on order would not last until the next delivery, received (王库管) a lead time later against the
#   order, so lead times are learned. Batch-tracked goods get a batch per receipt, expiring a shelf life later;
#   from 34 days ago on they are received into the demo's named batches (CR20261101 …, the ones the commands'
#   examples use). Lots about to expire are written off (报损). No order arrives today or later: the last
#   deliveries were yesterday at the latest.
# * CW sends stores S01 and S06 their stock twice a week (调拨). Stores S02, S03 and S09 keep their opening stock.
# * Stories: three late deliveries leave FG-NUT, RM-STRAW and RM-CHEESE at zero for some days; RM-MATCHA, RM-OIL
#   and PK-PAPERBAG stop selling 40–70 days ago (idle stock); PK-PIPING's minimum order quantity keeps months of
#   stock (a slow mover); 618 and 双十一 promotions sell more cookies and nuts and are recorded as promotions, and a
#   cookie promotion is scheduled next week; December's cookie rush is under-ordered, so cookies end below their
#   safety line with two customers' pre-orders (sales orders) due within a week; butter is under-ordered too.
# * The documents load_demo writes over the last 30 days are kept: the history runs around them (until()), reads
#   the ledger again after each (sync()) and plans for their quantities.

from __future__ import annotations

import heapq
import math
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.config import Settings
from core.importer.reading import _Row, _Table
from core.ledger.documents import LineInput, create_document, post_document, submit_document
from core.ledger.units import to_stock_qty
from core.models import Batch, Document, DocumentLine, Product, StockBalance, Warehouse
from core.replenish.promotions_db import add_promotion
from core.storage import Fast

HISTORY_DAYS = 395  # the opening stock is posted this many days ago
SEED = 20261207
CANONICAL_FROM = 34  # receipts from this many days ago on go into the demo's named batches
STORES = ("S01", "S06")  # stores with daily sales and transfers from CW
STORE_SCALE = {"S01": 1.0, "S06": 0.8}
TRANSFER_DAYS = {"S01": (4,), "S06": (5,)}  # weekdays (Monday = 0) CW sends stock
STORE_WEEK = (0.85, 0.85, 0.9, 0.95, 1.1, 1.35, 1.3)
WHOLESALE_WEEK = (1.1, 1.0, 1.0, 1.0, 1.2, 0.7, 0.0)
WHOLESALE = {  # weekday → customer, salesperson, note
    0: ("C001", "赵销售", "园区科技下午茶周订"), 1: ("C002", "孙销售", "平江路咖啡馆原料订货"),
    2: ("C001", "赵销售", "园区科技团餐补货"), 3: ("C002", "孙销售", "平江路咖啡馆原料订货"),
    4: ("C001", "赵销售", "园区科技周五茶歇"), 5: ("C003", "孙销售", "姑苏婚庆周末活动"),
}
ZERO = Decimal(0)
_LT = DocumentLine.__table__
_SCANNED = Fast(update(_LT).where(_LT.c.document_id == bindparam("doc_id")).values(entry="scan"))


@dataclass(frozen=True)
class Supplier:
    """A supplier's review weekdays and lead time (days, before the day's jitter)."""

    code: str
    order_days: tuple[int, ...]
    lead: int


SUPPLIERS = {s.code: s for s in (Supplier("SUP01", (0,), 3), Supplier("SUP02", (1,), 6), Supplier("SUP03", (3,), 2))}


@dataclass(frozen=True)
class Spec:
    """How one product sells and is bought: daily means in stock units (per store, per wholesale day), prices
    (sale per stock unit, cost per purchase unit), tax rate, supplier, safety days and the story flags."""

    supplier: str
    store: float
    wholesale: float
    price: str
    cost: str
    tax: str
    safety: float = 2.0
    stops: int | None = None  # no demand from this many days ago on (idle stock)
    lean: float = 1.0  # the last weeks' orders are this fraction of what is needed (under-ordered when < 1)


SPECS: dict[str, Spec] = {
    "RM-CREAM": Spec("SUP01", 5, 6, "52", "450", "0.13"),
    "RM-MILK": Spec("SUP01", 12, 18, "6", "96", "0.13"),
    "RM-BUTTER": Spec("SUP01", 2.5, 1.5, "85", "1650", "0.13", lean=0.5),
    "RM-CHEESE": Spec("SUP01", 0, 1.2, "82", "780", "0.13", safety=3),
    "RM-STRAW": Spec("SUP01", 0, 2.0, "42", "320", "0.13", safety=3),
    "RM-FLOUR-HI": Spec("SUP02", 8, 8, "8", "150", "0.09"),
    "RM-FLOUR-LOW": Spec("SUP02", 5, 5, "7.5", "140", "0.09"),
    "RM-SUGAR": Spec("SUP02", 4, 4, "7", "165", "0.13"),
    "RM-YEAST": Spec("SUP02", 0, 0.3, "24", "360", "0.13"),
    "RM-CHOC": Spec("SUP02", 0, 0.5, "110", "440", "0.13"),
    "RM-MATCHA": Spec("SUP02", 0, 0.12, "520", "420", "0.13", stops=70),
    "RM-OIL": Spec("SUP02", 0, 0.25, "85", "280", "0.13", stops=48),
    "FG-NUT": Spec("SUP02", 0, 10, "28", "560", "0.13", safety=3),
    "FG-COOKIE": Spec("SUP02", 4, 6, "68", "540", "0.13", lean=0.8),
    "FG-MOONCAKE": Spec("SUP02", 1, 2, "168", "760", "0.13"),
    "RM-EGG": Spec("SUP03", 50, 40, "1", "260", "0.09"),
    "PK-BOX6": Spec("SUP03", 12, 6, "2.5", "150", "0.13"),
    "PK-BOX8": Spec("SUP03", 5, 4, "3.2", "110", "0.13"),
    "PK-PIPING": Spec("SUP03", 0, 2, "0.6", "35", "0.13"),
    "PK-PAPERBAG": Spec("SUP03", 25, 0, "1.5", "180", "0.13", stops=40),
    "PK-CANDLE": Spec("SUP03", 6, 2, "2", "240", "0.13"),
}
# Late deliveries: the first order line of the product placed on or after `days_ago` arrives `late` days late, and the
# supplier has none of it to order before then (a stock-out of several days).
LATE = (("RM-STRAW", 290, 8), ("FG-NUT", 200, 14), ("RM-CHEESE", 120, 8))
MID_AUTUMN = {2024: date(2024, 9, 17), 2025: date(2025, 10, 6), 2026: date(2026, 9, 25), 2027: date(2027, 9, 15),
              2028: date(2028, 10, 3), 2029: date(2029, 9, 22), 2030: date(2030, 9, 12), 2031: date(2031, 10, 1)}
SPRING = {2024: date(2024, 2, 10), 2025: date(2025, 1, 29), 2026: date(2026, 2, 17), 2027: date(2027, 2, 6),
          2028: date(2028, 1, 26), 2029: date(2029, 2, 13), 2030: date(2030, 2, 3), 2031: date(2031, 1, 23)}
# Yearly promotions (month, day of the first and last day), their SKUs and reasons; past ones are recorded.
PROMOTIONS = (((6, 16), (6, 18), ("FG-COOKIE", "FG-NUT"), "618 年中大促：礼盒第二件半价"),
              ((11, 9), (11, 11), ("FG-COOKIE", "FG-NUT"), "双十一线上线下同价：满 199 减 40"))
PROMO_UPLIFT = 2.0
NEXT_PROMO = (8, 11, "FG-COOKIE", "年末会员周：曲奇礼盒买二送一")  # days from today, first and last


def _bump(day: date, centres: dict[int, date], width: float) -> float:
    """A bell (height 1) around the nearest of the yearly centres, `width` days wide."""
    near = min((abs((day - c).days) for y, c in centres.items() if abs(y - day.year) <= 1), default=999)
    return math.exp(-0.5 * (near / width) ** 2)


def _christmas(day: date) -> dict[int, date]:
    return {y: date(y, 12, 24) for y in (day.year - 1, day.year, day.year + 1)}


def annual(sku: str, day: date) -> float:
    """The yearly pattern of a product's demand on a day (about 1 on an ordinary day)."""
    doy = day.timetuple().tm_yday
    base = 1 + 0.08 * math.cos(2 * math.pi * (doy - 358) / 365.25)
    if sku == "FG-MOONCAKE":
        before = {y: c - timedelta(days=9) for y, c in MID_AUTUMN.items()}
        after = min(((day - c).days for c in MID_AUTUMN.values() if day >= c), default=999)
        return 0.3 + (20 * _bump(day, before, 8) if after > 2 else 0)
    if sku == "FG-COOKIE":
        return base * (1 + 0.9 * _bump(day, _christmas(day), 12) + 0.6 * _bump(day, SPRING, 9))
    if sku == "FG-NUT":
        return base * (1 + 1.2 * _bump(day, {y: c - timedelta(days=6) for y, c in SPRING.items()}, 9))
    if sku == "RM-STRAW":
        return 0.35 + 0.65 * (0.5 + 0.5 * math.cos(2 * math.pi * (doy - 45) / 365.25))
    if sku in ("RM-CREAM", "RM-MILK", "RM-BUTTER"):
        return base * (1 + 0.2 * _bump(day, _christmas(day), 8))
    return base


def promo_windows(first: date, last: date) -> list[tuple[date, date, str, str]]:
    """The yearly promotions lying wholly in [first, last]: (start, end, sku, reason)."""
    out = []
    for year in range(first.year - 1, last.year + 1):
        for (m1, d1), (m2, d2), skus, reason in PROMOTIONS:
            start, end = date(year, m1, d1), date(year, m2, d2)
            if first <= start and end <= last:
                out += [(start, end, sku, reason) for sku in skus]
    return out


def redate_opening(table: _Table, warehouses: Iterable[str]) -> _Table:
    """The opening rows of the history's warehouses one year older: expiry a year earlier, the year in the batch
    code too (CR20261101 → CR20251101), so that those lots are sold during the history, not kept for a year."""
    keep = set(warehouses)
    rows = []
    for r in table.rows:
        v = r.values
        if v.get("warehouse") in keep and v.get("expiry"):
            exp = date.fromisoformat(v["expiry"])
            older = (exp.replace(day=28) if (exp.month, exp.day) == (2, 29) else exp).replace(year=exp.year - 1)
            code = re.sub(r"20\d\d", lambda m: str(int(m.group()) - 1), v.get("batch") or "", count=1)
            r = _Row(r.row, {**v, "expiry": older.isoformat(), "batch": code})
        rows.append(r)
    return _Table(table.columns, rows)


@dataclass
class Lot:
    """Stock of one product in one warehouse and batch, as the history tracks it."""

    code: str
    expiry: date | None
    qty: Decimal
    canonical: bool = False

    def key(self) -> tuple:
        """Pick order: older batches first, the demo's named batches last."""
        return (self.canonical, self.expiry or date.max, self.code)


@dataclass(frozen=True)
class Fixed:
    """A document load_demo writes itself: its time, type, warehouses and lines (for planning around it)."""

    when: datetime
    doc_type: str
    warehouse: str
    to_warehouse: str | None
    lines: list[LineInput]


@dataclass(order=True)
class _Event:
    at: datetime
    seq: int
    run: Callable[[], Awaitable[None]] = field(compare=False)


@dataclass
class _Order:
    number: str
    supplier: str
    lines: dict[str, Decimal]  # sku → purchase units


@dataclass
class Stats:
    """What the history wrote (for the build report and tests)."""

    documents: int = 0
    lines: int = 0
    by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class DemoHistory:
    """Generates the demo's daily documents from the opening to yesterday, around load_demo's own documents."""

    def __init__(self, session: AsyncSession, settings: Settings, now: datetime, canonical: dict[str, tuple[str, date]],
                 fixed: list[Fixed]) -> None:
        self.s, self.settings = session, settings
        self.tz: ZoneInfo = settings.timezone
        self.today = now.astimezone(self.tz).date()
        self.first = self.today - timedelta(days=HISTORY_DAYS - 1)
        self.canonical = canonical  # sku → (batch code, expiry) of the demo's named CW batch
        self.rng = np.random.default_rng(SEED)
        self.stock: dict[tuple[str, str], list[Lot]] = {}
        self.on_order: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.arrivals: dict[date, list[tuple[_Order, dict[str, Decimal]]]] = defaultdict(list)
        self.products: dict[str, Product] = {}
        # load_demo's documents per (warehouse, day): net quantities, and its transfers into stores apart (the chain
        # plans for what leaves CW; a store counts what it will get)
        self.flows: dict[tuple[str, date], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.inflows: dict[tuple[str, date], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.fixed = fixed
        self.late = {sku: self.today - timedelta(days=ago) for sku, ago, _ in LATE}
        self.late_days = {sku: extra for sku, _, extra in LATE}
        self.held: dict[str, date] = {}  # sku → the day its late delivery comes (the supplier has none before)
        self.promo_days: set[tuple[str, date]] = set()
        self.stats = Stats()
        self._queue: list[_Event] = []
        self._seq = 0
        self._next = self.first
        self._received_canonical: set[str] = set()
        self._means: dict[tuple[str, date, str | None], float] = {}

    # ---------------------------------------------------------------------------------------------- set-up

    async def start(self) -> None:
        """Read the products and the opening stock, record the promotions, note load_demo's documents."""
        self.products = {p.sku: p for p in await self.s.scalars(select(Product))}
        for start, end, sku, reason in promo_windows(self.first, self.today - timedelta(days=1)):
            await add_promotion(self.s, sku=sku, start=start, end=end, reason=reason, by="李采购",
                                now=self._at(start - timedelta(days=12), 10))
            self.promo_days |= {(sku, start + timedelta(days=k)) for k in range((end - start).days + 1)}
        a, b, sku, reason = NEXT_PROMO
        await add_promotion(self.s, sku=sku, start=self.today + timedelta(days=a), end=self.today + timedelta(days=b),
                            reason=reason, by="李采购", now=self._at(self.today - timedelta(days=3), 15))
        for f in self.fixed:
            day = f.when.astimezone(self.tz).date()
            for ln in f.lines:
                _, q = to_stock_qty(self.products[ln.sku], ln.unit, Decimal(str(ln.qty)))
                wh = ln.warehouse or f.warehouse
                if f.doc_type in ("sales_issue", "borrow", "transfer"):
                    self.flows[(wh, day)][ln.sku] -= float(q)
                if f.doc_type == "transfer" and f.to_warehouse:
                    self.inflows[(f.to_warehouse, day)][ln.sku] += float(q)
                if f.doc_type == "purchase_receipt":
                    self.flows[(wh, day)][ln.sku] += float(q)
        await self.sync()

    def _at(self, day: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(day, time(hour, minute), self.tz)

    async def sync(self) -> None:
        """Read every balance back from the ledger (after a document load_demo wrote)."""
        rows = await self.s.execute(
            select(Warehouse.code, Product.sku, Batch.code, Batch.expiry, StockBalance.qty)
            .join(Warehouse, Warehouse.id == StockBalance.warehouse_id)
            .join(Product, Product.id == StockBalance.product_id)
            .join(Batch, Batch.id == StockBalance.batch_id)
            .where(StockBalance.qty != 0))
        self.stock = defaultdict(list)
        for wh, sku, code, expiry, qty in rows.all():
            canon = self.canonical.get(sku, ("\0",))[0] == code
            self.stock[(wh, sku)].append(Lot(code, expiry, Decimal(qty), canon))

    # ---------------------------------------------------------------------------------------------- running

    async def until(self, at: datetime) -> None:
        """Write every generated document due before `at` (whole days are planned as they start)."""
        last = self.today - timedelta(days=1)
        while True:
            if self._queue and self._queue[0].at < at:
                await heapq.heappop(self._queue).run()
            elif not self._queue and self._next <= last and self._at(self._next, 0) < at:
                self._plan(self._next)
                self._next += timedelta(days=1)
            else:
                return

    async def finish(self) -> Stats:
        """Everything up to the end of yesterday."""
        await self.until(self._at(self.today, 0))
        return self.stats

    def _add(self, at: datetime, run: Callable[[], Awaitable[None]]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Event(at, self._seq, run))

    def _plan(self, day: date) -> None:
        """The day's events; quantities are drawn now (same draws whatever the stock), capped when they run."""
        dow = day.weekday()
        self._add(self._at(day, 7), lambda: self._write_off(day))
        for store in STORES:
            if dow in TRANSFER_DAYS[store]:
                self._add(self._at(day, 7, 30 + STORES.index(store) * 5), lambda st=store: self._transfer(day, st))
        self._add(self._at(day, 8, 10), lambda: self._receive(day))
        suppliers = [s for s in SUPPLIERS.values() if dow in s.order_days]
        for i, sup in enumerate(suppliers):
            self._add(self._at(day, 9, 10 + i * 5), lambda sp=sup: self._order(day, sp))
        if dow in WHOLESALE:
            wanted = self._draw(day, None)
            scan = bool(self.rng.random() < 0.5)
            self._add(self._at(day, 11, 20), lambda w=wanted, sc=scan: self._sell(day, "CW", w, sc))
        for i, store in enumerate(STORES):
            drawn = self._draw(day, store)
            self._add(self._at(day, 20, 30 + i * 10), lambda st=store, w=drawn: self._sell(day, st, w, True))

    async def cover(self, f: Fixed) -> None:
        """Before one of load_demo's own issues: what its warehouse lacks comes in just before (a store gets an
        urgent transfer from CW, CW an urgent delivery), so the story's documents always post."""
        if f.doc_type not in ("sales_issue", "borrow", "transfer"):
            return
        day = f.when.astimezone(self.tz).date()
        short: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for ln in f.lines:
            _, q = to_stock_qty(self.products[ln.sku], ln.unit, Decimal(str(ln.qty)))
            wh = ln.warehouse or f.warehouse
            lack = q - self.available(wh, ln.sku, day)
            if lack > 0:
                short[wh][ln.sku] = short[wh].get(ln.sku, ZERO) + lack
        when = f.when - timedelta(minutes=30)
        for wh, need in sorted(short.items()):
            if wh != "CW":
                await self._urgent_receipt(when - timedelta(minutes=15), {
                    sku: q - self.available("CW", sku, day) for sku, q in need.items()
                    if q > self.available("CW", sku, day)})
                lines = []
                for sku, q in need.items():
                    unit = self.products[sku].stock_unit
                    for code, part in self._pick("CW", sku, self._whole(sku, float(q)), day):
                        lines.append(LineInput(sku, part, unit, batch=code if self.products[sku].batch_tracked
                                               else ""))
                        lot = next(x for x in self.lots("CW", sku) if x.code == code)
                        self._put(wh, sku, code, lot.expiry, part)
                if lines:
                    await self._post(when, "transfer", lines, warehouse="CW", to_warehouse=wh, created_by="王库管",
                                     note="门店急补（客户订货）")
            else:
                await self._urgent_receipt(when, need)

    async def _urgent_receipt(self, when: datetime, need: dict[str, Decimal]) -> None:
        """An urgent delivery into CW of what is short, in whole purchase units, per supplier."""
        day = when.astimezone(self.tz).date()
        per_supplier: dict[str, list[LineInput]] = defaultdict(list)
        for sku, qty in sorted(need.items()):
            if qty <= 0:
                continue
            product = self.products[sku]
            units = max(1, math.ceil(float(qty) / float(product.purchase_factor) - 1e-9))
            code, expiry = self._batch_for(sku, day)
            per_supplier[SPECS[sku].supplier].append(LineInput(
                sku, Decimal(units), product.purchase_unit, batch=code, expiry=expiry, unit_price=SPECS[sku].cost,
                tax_rate=SPECS[sku].tax))
            self._put("CW", sku, code, expiry, Decimal(units) * product.purchase_factor)
        for supplier, lines in sorted(per_supplier.items()):
            await self._post(when, "purchase_receipt", lines, warehouse="CW", supplier=supplier, created_by="王库管",
                             note="客户订货急采到货")

    # ---------------------------------------------------------------------------------------------- demand

    def active(self, sku: str, day: date) -> bool:
        """The product still sells on that day (idle products stop)."""
        stops = SPECS[sku].stops
        return stops is None or day < self.today - timedelta(days=stops)

    def mean(self, sku: str, day: date, store: str | None) -> float:
        """Expected demand of a product on a day: at a store, or CW's wholesale (None)."""
        key = (sku, day, store)
        found = self._means.get(key)
        if found is None:
            found = self._means[key] = self._mean(sku, day, store)
        return found

    def _mean(self, sku: str, day: date, store: str | None) -> float:
        spec = SPECS[sku]
        if not self.active(sku, day):
            return 0.0
        if store is None:
            base = spec.wholesale * WHOLESALE_WEEK[day.weekday()]
        else:
            base = spec.store * STORE_SCALE[store] * STORE_WEEK[day.weekday()]
        if not base:
            return 0.0
        trend = 1 + 0.08 * (day - self.first).days / 365
        promo = PROMO_UPLIFT if (sku, day) in self.promo_days else 1.0
        return base * annual(sku, day) * trend * promo

    def _draw(self, day: date, store: str | None) -> dict[str, Decimal]:
        out = {}
        for sku in SPECS:
            m = self.mean(sku, day, store)
            if m <= 0:
                continue
            if self.products[sku].stock_unit == "kg":
                q = Decimal(str(round(float(self.rng.gamma(5.0, m / 5.0)), 1)))
            else:
                q = Decimal(int(self.rng.poisson(m)))
            if q > 0:
                out[sku] = q
        return out

    def expected(self, sku: str, start: date, end: date, where: Iterable[str | None], *,
                 transfers_in: bool = True) -> float:
        """Expected demand of a product over [start, end) at the places given (stores; None = CW's wholesale), less
        the net flows of load_demo's own documents there (their issues add to it, their receipts take off)."""
        places = list(where)
        total = 0.0
        d = start
        while d < end:
            for w in places:
                total += self.mean(sku, d, w) - self.flows.get((w or "CW", d), {}).get(sku, 0.0)
                if transfers_in:
                    total -= self.inflows.get((w or "CW", d), {}).get(sku, 0.0)
            d += timedelta(days=1)
        return total

    def chain_expected(self, sku: str, start: date, end: date) -> float:
        """Expected demand of the chain (CW's wholesale and the stores), load_demo's transfers counted as leaving."""
        return self.expected(sku, start, end, [None, *STORES], transfers_in=False)

    # ---------------------------------------------------------------------------------------------- stock

    def lots(self, wh: str, sku: str) -> list[Lot]:
        return self.stock.setdefault((wh, sku), [])

    def available(self, wh: str, sku: str, day: date) -> Decimal:
        return sum((lot.qty for lot in self.lots(wh, sku) if lot.qty > 0 and (lot.expiry is None or lot.expiry > day)),
                   ZERO)

    def chain_stock(self, sku: str, day: date) -> float:
        return float(sum((self.available(w, sku, day) for w in ("CW", *STORES)), ZERO))

    def _pick(self, wh: str, sku: str, qty: Decimal, day: date) -> list[tuple[str, Decimal]]:
        """Take qty from the warehouse's lots, older first (named demo batches last): (batch code, qty) parts."""
        out = []
        for lot in sorted(self.lots(wh, sku), key=Lot.key):
            if qty <= 0:
                break
            if lot.qty <= 0 or (lot.expiry is not None and lot.expiry <= day):
                continue
            take = min(lot.qty, qty)
            lot.qty -= take
            qty -= take
            out.append((lot.code, take))
        return out

    def _put(self, wh: str, sku: str, code: str, expiry: date | None, qty: Decimal) -> None:
        for lot in self.lots(wh, sku):
            if lot.code == code:
                lot.qty += qty
                return
        canon = self.canonical.get(sku, ("\0",))[0] == code
        self.lots(wh, sku).append(Lot(code, expiry, qty, canon))

    def _whole(self, sku: str, qty: float) -> Decimal:
        """A quantity in the product's stock unit, rounded up (to 1 kg, or whole units)."""
        return Decimal(max(0, math.ceil(qty - 1e-9)))

    # ---------------------------------------------------------------------------------------------- documents

    async def _post(self, when: datetime, doc_type: str, lines: list[LineInput], *, scan: bool = False,
                    **kw: object) -> Document:
        doc = await create_document(self.s, self.settings, doc_type, lines, now=when, **kw)  # type: ignore[arg-type]
        if scan:  # entered with the scanner: the lines say so (the health report's scan rate)
            await _SCANNED.rowcount(self.s, {"doc_id": doc.id})
            for ln in doc.lines:
                set_committed_value(ln, "entry", "scan")
        await submit_document(self.s, self.settings, doc, when)
        await post_document(self.s, self.settings, doc, when + timedelta(minutes=2))
        self.stats.documents += 1
        self.stats.lines += len(lines)
        self.stats.by_type[doc_type] += 1
        return doc

    async def _write_off(self, day: date) -> None:
        """Lots expiring by tomorrow are written off where they lie (报损), one document per warehouse."""
        per_wh: dict[str, list[LineInput]] = defaultdict(list)
        for (wh, sku), lots in self.stock.items():
            for lot in lots:
                if lot.qty > 0 and lot.expiry is not None and lot.expiry <= day + timedelta(days=1):
                    per_wh[wh].append(LineInput(sku, lot.qty, self.products[sku].stock_unit, batch=lot.code))
                    lot.qty = ZERO
        for wh, lines in sorted(per_wh.items()):
            await self._post(self._at(day, 7), "loss", lines, warehouse=wh, created_by="刘库管",
                             note="临期批次报损（明日到期，不再出库）")

    async def _transfer(self, day: date, store: str) -> None:
        """CW tops the store up until its next delivery plus a day and a half."""
        days = TRANSFER_DAYS[store]
        gap = min((d - day.weekday()) % 7 or 7 for d in days)
        until = day + timedelta(days=gap)
        lines = []
        for sku, spec in SPECS.items():
            if not spec.store:
                continue
            need = self.expected(sku, day, until, [store]) + 1.5 * self.mean(sku, until, store)
            have = float(self.available(store, sku, day + timedelta(days=gap)))
            want = self._whole(sku, need - have)
            if want <= 0:
                continue
            keep = self.expected(sku, day, day + timedelta(days=4), [None])
            room = self.available("CW", sku, day) - Decimal(math.ceil(keep))
            qty = min(want, room.to_integral_value(rounding=ROUND_FLOOR))
            if qty <= 0:
                continue
            unit = self.products[sku].stock_unit
            for code, part in self._pick("CW", sku, qty, day):
                lines.append(LineInput(sku, part, unit, batch=code if self.products[sku].batch_tracked else ""))
                lot = next(x for x in self.lots("CW", sku) if x.code == code)
                self._put(store, sku, code, lot.expiry, part)
        if lines:
            await self._post(self._at(day, 7, 30), "transfer", lines, warehouse="CW", to_warehouse=store,
                             created_by="王库管", note="门店配送（每周两次）")

    def _batch_for(self, sku: str, day: date) -> tuple[str, date | None]:
        """The batch a delivery of the day goes into: the supplier's lot of the month (of the week for goods that keep
        under four months), expiring a shelf life after the lot began; the demo's named batch in its last month."""
        product = self.products[sku]
        if not product.batch_tracked:
            return "", None
        if day >= self.today - timedelta(days=CANONICAL_FROM) and sku in self.canonical:
            return self.canonical[sku]
        shelf = product.shelf_life_days or 90
        begun = day - timedelta(days=day.weekday()) if shelf < 120 else day.replace(day=1)
        prefix = re.match(r"[A-Z]+", self.canonical.get(sku, ("LT",))[0])
        return f"{prefix.group() if prefix else 'LT'}{begun:%y%m%d}", begun + timedelta(days=shelf)

    async def _receive(self, day: date) -> None:
        """The deliveries due today, each against its order; plus the month-end restock into the named batches."""
        for order, lines in self.arrivals.pop(day, []):
            inputs = []
            for sku, units in lines.items():
                product = self.products[sku]
                code, expiry = self._batch_for(sku, day)
                inputs.append(LineInput(sku, units, product.purchase_unit, batch=code, expiry=expiry,
                                        unit_price=SPECS[sku].cost, tax_rate=SPECS[sku].tax))
                qty = units * product.purchase_factor
                self.on_order[sku] -= qty
                self._put("CW", sku, code, expiry, qty)
                if code and code == self.canonical.get(sku, ("",))[0]:
                    self._received_canonical.add(sku)
            await self._post(self._at(day, 8, 10), "purchase_receipt", inputs, warehouse="CW",
                             supplier=order.supplier, ref_number=order.number, created_by="王库管",
                             note=f"采购单 {order.number} 到货")
        if day == self.today - timedelta(days=CANONICAL_FROM - 1):
            await self._restock(day)

    async def _restock(self, day: date) -> None:
        """Batch-tracked goods not yet received into their named batch get a month-end delivery (no order)."""
        per_supplier: dict[str, list[LineInput]] = defaultdict(list)
        for sku, (code, expiry) in sorted(self.canonical.items()):
            if sku in self._received_canonical or sku not in SPECS:
                continue
            product = self.products[sku]
            need = self.chain_expected(sku, day, day + timedelta(days=14)) - self.chain_stock(sku, day)
            units = max(1, math.ceil(max(need, 0) / product.purchase_factor))
            per_supplier[SPECS[sku].supplier].append(LineInput(
                sku, units, product.purchase_unit, batch=code, expiry=expiry, unit_price=SPECS[sku].cost,
                tax_rate=SPECS[sku].tax))
            self._put("CW", sku, code, expiry, Decimal(units * product.purchase_factor))
            self._received_canonical.add(sku)
        for supplier, lines in sorted(per_supplier.items()):
            await self._post(self._at(day, 8, 20), "purchase_receipt", lines, warehouse="CW", supplier=supplier,
                             created_by="王库管", note="月末备货入库（年末旺季）")

    async def _order(self, day: date, sup: Supplier) -> None:
        """Review the supplier's products: order what the chain would lack before the next delivery."""
        nxt = min((d - day.weekday()) % 7 or 7 for d in sup.order_days)
        arrive = day + timedelta(days=sup.lead)
        next_arrive = arrive + timedelta(days=nxt)
        if arrive >= self.today:
            return
        lines: dict[str, Decimal] = {}
        for sku, spec in SPECS.items():
            if spec.supplier != sup.code or not self.active(sku, day + timedelta(days=1)):  # idle: stock is left
                continue
            if day < self.held.get(sku, day):  # the supplier is out of it until the late delivery
                continue
            product = self.products[sku]
            rate = self.chain_expected(sku, arrive, arrive + timedelta(days=7)) / 7
            projected = self.chain_stock(sku, day) + float(self.on_order[sku]) - self.chain_expected(sku, day, arrive)
            if next_arrive >= self.today:  # the last delivery before the demo's day
                cover = 1.0 if spec.lean < 1 else spec.safety + 3
                target = self.chain_expected(sku, arrive, self.today) + cover * rate
            else:
                target = self.chain_expected(sku, arrive, next_arrive) + spec.safety * rate
            if spec.stops is not None and day >= self.today - timedelta(days=spec.stops + 14):
                target += 30 * self.chain_expected(sku, day, day + timedelta(days=7)) / 7  # bought just as it stops
            if spec.lean < 1 and day >= self.today - timedelta(days=24):
                target *= spec.lean  # the December rush under-ordered
            if projected >= target:
                continue
            factor = product.purchase_factor
            units = math.ceil((target - projected) / factor - 1e-9)
            units = max(units, math.ceil(float(product.moq or 0) / factor - 1e-9), 1)
            lines[sku] = Decimal(units)
        if not lines:
            return
        inputs = [LineInput(sku, units, self.products[sku].purchase_unit, unit_price=SPECS[sku].cost,
                            tax_rate=SPECS[sku].tax) for sku, units in lines.items()]
        doc = await self._post(self._at(day, 9, 10), "purchase_order", inputs, warehouse="CW", supplier=sup.code,
                               created_by="李采购", note="按补货周期下单")
        order = _Order(doc.number, sup.code, lines)
        jitter = int(self.rng.choice([-1, 0, 0, 0, 1, 1, 2]))
        when = max(day + timedelta(days=1), arrive + timedelta(days=jitter))
        on_time: dict[str, Decimal] = {}
        for sku, units in lines.items():
            self.on_order[sku] += units * self.products[sku].purchase_factor
            late = self.late.get(sku)
            if late is not None and day >= late:
                del self.late[sku]
                later = when + timedelta(days=self.late_days[sku])
                self.held[sku] = later
                if later < self.today:
                    self.arrivals[later].append((order, {sku: units}))
                    continue
            on_time[sku] = units
        last = self.today - timedelta(days=1)
        if on_time:
            self.arrivals[min(when, last)].append((order, on_time))

    async def _sell(self, day: date, wh: str, wanted: dict[str, Decimal], scan: bool) -> None:
        """A day's sales at a store, or CW's wholesale order: what was wanted, as far as the stock goes."""
        lines = []
        for sku, qty in wanted.items():
            qty = min(qty, self.available(wh, sku, day))
            if self.products[sku].stock_unit != "kg":
                qty = qty.to_integral_value(rounding=ROUND_FLOOR)
            if qty <= 0:
                continue
            unit = self.products[sku].stock_unit
            for code, part in self._pick(wh, sku, qty, day):
                lines.append(LineInput(sku, part, unit, batch=code if self.products[sku].batch_tracked else "",
                                       unit_price=SPECS[sku].price))
        if not lines:
            return
        if wh == "CW":
            customer, who, note = WHOLESALE[day.weekday()]
            if day.weekday() == 5 and day.isocalendar()[1] % 2 == 0:
                customer, note = "C004", "相城会展中心活动茶歇"
            await self._post(self._at(day, 11, 20), "sales_issue", lines, scan=scan, warehouse="CW",
                             customer=customer, created_by=who, note=note)
        else:
            await self._post(self._at(day, 20, 30 if wh == STORES[0] else 40), "sales_issue", lines, scan=True,
                             warehouse=wh, created_by="周店长", note="门店日结：蛋糕按配方扣减原料与包材，礼盒按件")


async def seed_preorders(session: AsyncSession, settings: Settings, now: datetime) -> list[str]:
    """Two customers' pre-orders of cookie gift boxes due within the week (cookies are short: the purchase warning's
    case). Returns their numbers."""
    tz = settings.timezone
    today = now.astimezone(tz).date()
    out = []
    for days_ago, hour, customer, qty, unit, who, due, note in (
            (2, 15, "C004", 6, "箱", "赵销售", 3, "会展中心圣诞茶歇预订：3 天后送货"),
            (1, 11, "C002", 40, "盒", "孙销售", 6, "咖啡馆年末礼盒预订：6 天后送货")):
        when = datetime.combine(today - timedelta(days=days_ago), time(hour), tz)
        doc = await create_document(session, settings, "sales_order", [LineInput("FG-COOKIE", qty, unit,
                                                                                 unit_price="68" if unit == "盒"
                                                                                 else "816")],
                                    warehouse="CW", customer=customer, created_by=who,
                                    delivery_date=today + timedelta(days=due), note=note, now=when)
        await submit_document(session, settings, doc, when + timedelta(minutes=10))
        out.append(doc.number)
    return out


def canonical_batches(table: _Table) -> dict[str, tuple[str, date]]:
    """The demo's named CW batch per batch-tracked product (from opening.csv, expiries already moved forward)."""
    out: dict[str, tuple[str, date]] = {}
    for r in table.rows:
        v = r.values
        if v.get("warehouse") == "CW" and v.get("batch") and v.get("expiry"):
            out.setdefault(v["sku"], (v["batch"], date.fromisoformat(v["expiry"])))
    return out
