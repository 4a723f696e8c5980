"""Hourly purchase warnings (the seed's 采购预警): a product whose available stock is below its safety line and that has
sales-order deliveries in the next 7 days → its purchaser gets one digest per run (the shortfalls and pre-orders as
markdown, a card of 发起采购申请 buttons) and each product's 30-day trend chart; once per product and day.

Definitions (quantities in stock units, all warehouses):

* safety line: the replenishment engine's safety stock (plan() over the same inputs as `replenish suggest`).
* available = on hand − reserved (what open sales orders of strategic customers hold), the engine's position.
* pre-orders: lines of submitted (not yet shipped) sales orders whose delivery date is today … today + AHEAD_DAYS.
* after the pre-orders = available − their quantity not yet reserved; shortfall = safety line − that: what it takes
  to be back on the line once they are delivered.

Once per product and day: each chart is queued under a key of the product and the local day
(job:purchase_warnings:{day}:{sku}>{target}), not of the hour, so the outbox's unique key is the ledger — a later hour
(or another instance running another hour at the same time) finds it and leaves the product out, and a product
enters a digest only in the transaction that queues its chart."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Button, Message
from core.messaging import outbox, recipients
from core.messaging.recipients import ToChannel, ToRole, ToUser
from core.messaging.targets import Target
from core.models import ON_HAND, Customer, Document, DocumentLine, Product, StockBalance, StockMove
from core.replenish.plan import plan
from core.replenish.suggest import build_inputs
from core.types import Dec, fq
from jobs.charts import Trend, trend_chart
from jobs.context import JobContext
from jobs.registry import hour, job

log = logging.getLogger(__name__)

AHEAD_DAYS = 7  # deliveries from today to today + 7
TREND_DAYS = 30
MAX_PER_DIGEST = 6  # products per person and run: one button each (a WeCom button card holds 6); the rest next hour
ZERO = Decimal(0)


@dataclass(frozen=True)
class PreOrder:
    """One open sales order's quantity of a product, due within the window."""

    number: str
    delivery: date
    customer: str
    qty: Decimal
    reserved: Decimal  # of qty, already held for the customer (counted in `reserved`)


@dataclass(frozen=True)
class Shortage:
    """A product under its safety line with pre-orders due: the engine's figures and those pre-orders."""

    product_id: int
    sku: str
    name: str
    unit: str
    purchaser_id: int | None
    on_hand: Decimal
    reserved: Decimal
    on_order: Decimal
    requested: Decimal
    safety: Decimal
    preorders: tuple[PreOrder, ...]

    @property
    def available(self) -> Decimal:
        """On hand less reserved."""
        return self.on_hand - self.reserved

    @property
    def after(self) -> Decimal:
        """Available once the pre-orders are delivered (their reserved part is already out of `available`)."""
        return self.available - sum((p.qty - p.reserved for p in self.preorders), ZERO)

    @property
    def shortfall(self) -> Decimal:
        """What it takes to be back on the safety line after the pre-orders."""
        return self.safety - self.after

    @property
    def first_delivery(self) -> date:
        """The earliest delivery date of its pre-orders."""
        return min(p.delivery for p in self.preorders)


def day_key(day: date, sku: str, target: Target) -> str:
    """The outbox key of a product's chart to one target on one local day: the once-a-day ledger."""
    return f"job:purchase_warnings:{day:%Y-%m-%d}:{sku}>{target.rate_key}"


async def preorders(session: AsyncSession, today: date) -> dict[int, list[PreOrder]]:
    """Per product: the submitted sales orders delivering today … today + AHEAD_DAYS (quantity per order)."""
    d, ln, c = Document.__table__.c, DocumentLine.__table__.c, Customer.__table__.c
    rows = await session.execute(
        select(ln.product_id, d.number, d.delivery_date, c.name, type_coerce(func.sum(ln.stock_qty), Dec),
               type_coerce(func.sum(ln.reserved_qty), Dec))
        .select_from(DocumentLine.__table__.join(Document.__table__, d.id == ln.document_id)
                     .outerjoin(Customer.__table__, c.id == d.customer_id))
        .where(d.type == "sales_order", d.status == "submitted", d.delivery_date >= today,
               d.delivery_date <= today + timedelta(days=AHEAD_DAYS))
        .group_by(ln.product_id, d.number, d.delivery_date, c.name)
        .order_by(d.delivery_date, d.number))
    out: dict[int, list[PreOrder]] = defaultdict(list)
    for pid, number, delivery, customer, qty, reserved in rows.all():
        out[pid].append(PreOrder(number, delivery, customer or "", abs(qty or ZERO), abs(reserved or ZERO)))
    return out


async def find(ctx: JobContext, today: date) -> tuple[list[Shortage], int]:
    """The products to warn about (most urgent first) and how many products have pre-orders due. The engine (plan()
    over every product, as `replenish suggest` does: categories share what they learn) only runs when some do."""
    async with ctx.db.read() as s:
        ahead = await preorders(s, today)
        if not ahead:
            return [], 0
        h, inputs, _chosen = await build_inputs(s, ctx.settings, today=today)
        p = Product.__table__.c
        buyers = dict((await s.execute(select(p.id, p.purchaser_id).where(p.id.in_(list(ahead))))).all())
    result = await ctx.heavy(plan, inputs)  # numpy over every product: off the event loop
    rows = h.index.rows()
    found = []
    for pid, orders in ahead.items():
        i = rows.get(pid)
        if i is None:
            continue
        e = result.explain(i).as_decimal()
        w = Shortage(pid, h.index.skus[i], h.index.names[i], h.index.units[i], buyers.get(pid), e.on_hand, e.reserved,
                    e.on_order, e.requested, e.safety_stock, tuple(orders))
        if w.available < w.safety:
            found.append(w)
    found.sort(key=lambda w: (w.first_delivery, -w.shortfall, w.sku))
    return found, len(ahead)


async def trends(session: AsyncSession, found: list[Shortage], today: date, ctx: JobContext) -> dict[int, Trend]:
    """Each product's last 30 days (today included): sales per day (posted sales issues, cancellations netted) and
    the on-hand at each day's close (the balance now less the moves posted after that day), in one grouped query
    with a SUM(CASE …) column per day — no move is loaded into Python."""
    tz = ctx.settings.timezone
    days = [today - timedelta(days=TREND_DAYS - 1 - k) for k in range(TREND_DAYS)]
    starts = [datetime.combine(d, time(0), tz) for d in days]
    ends = [*starts[1:], datetime.combine(today + timedelta(days=1), time(0), tz)]
    ids = [w.product_id for w in found]
    m, d, b = StockMove.__table__.c, Document.__table__.c, StockBalance.__table__.c
    sale = d.type == "sales_issue"
    later = [type_coerce(func.sum(case((m.posted_at >= e, m.qty), else_=0)), Dec) for e in ends]
    sold = [type_coerce(func.sum(case((sale & (m.posted_at >= a) & (m.posted_at < e), m.qty), else_=0)), Dec)
            for a, e in zip(starts, ends, strict=True)]
    rows = await session.execute(
        select(m.product_id, *later, *sold).select_from(StockMove.__table__.join(Document.__table__,
                                                                                 d.id == m.document_id))
        .where(m.bucket == ON_HAND, m.posted_at >= starts[0], m.product_id.in_(ids)).group_by(m.product_id))
    sums = {r[0]: r[1:] for r in rows.all()}
    now = dict((await session.execute(select(b.product_id, type_coerce(func.sum(b.qty), Dec))
                                      .where(b.product_id.in_(ids)).group_by(b.product_id))).all())
    out = {}
    for w in found:
        values = sums.get(w.product_id, (ZERO,) * (2 * TREND_DAYS))
        level = now.get(w.product_id) or ZERO
        closing = [level - (v or ZERO) for v in values[:TREND_DAYS]]
        sales = [-(v or ZERO) for v in values[TREND_DAYS:]]
        out[w.product_id] = Trend(f"{w.name}（{w.sku}）近{TREND_DAYS}天趋势", w.unit, tuple(days),
                                  tuple(float(v) for v in sales), tuple(float(v) for v in closing), float(w.safety),
                                  tuple((p.delivery, float(p.qty)) for p in w.preorders))
    return out


async def audiences(session: AsyncSession, found: list[Shortage], ctx: JobContext) -> dict[Target, list[Shortage]]:
    """Who hears of each product, per platform target: its purchaser (unreachable or none: everyone with the
    purchasing role) and the job's channel when configured. A person gets one digest of all their products."""
    cache: dict[object, list[Target]] = {}

    async def targets(to: ToUser | ToRole | ToChannel) -> list[Target]:
        if to not in cache:
            cache[to] = await recipients.resolve(session, to, ctx.outbound.channels, ctx.outbound.platforms)
        return cache[to]

    out: dict[Target, list[Shortage]] = defaultdict(list)
    for w in found:
        people = await targets(ToUser(w.purchaser_id)) if w.purchaser_id else []
        for t in [*(people or await targets(ToRole("purchasing"))),
                  *(await targets(ToChannel(ctx.channel)) if ctx.channel else [])]:
            if w not in out[t]:
                out[t].append(w)
    return out


class _Raced(Exception):
    """Another run queued one of the charts first: roll back and pick the products again."""


@job("purchase_warnings", title="采购预警（低于安全库存且7天内有预订单）", cron="17 * * * *", period=hour)
async def purchase_warnings(ctx: JobContext) -> str:
    """Per target one digest of the products not yet warned today (at most MAX_PER_DIGEST, most urgent first),
    then their charts (rendered once each, off the event loop)."""
    today = ctx.local.date()
    found, with_orders = await find(ctx, today)
    if not found:
        return "预警 0 个商品" + ("" if with_orders else f"：{AHEAD_DAYS}天内没有预订单")
    async with ctx.db.read() as s:
        heard = await audiences(s, found, ctx)
        queued = set(await outbox.states(s, [day_key(today, w.sku, t) for t, ws in heard.items() for w in ws]))
        due = {t: [w for w in ws if day_key(today, w.sku, t) not in queued] for t, ws in heard.items()}
        chosen = {w.product_id: w for ws in due.values() for w in ws[:MAX_PER_DIGEST]}
        charted = await trends(s, list(chosen.values()), today, ctx) if chosen else {}
    pngs = {pid: await ctx.heavy(trend_chart, t) for pid, t in charted.items()}
    warned: set[str] = set()
    waiting: set[str] = set()
    for target, items in due.items():
        for attempt in range(3):
            try:
                sent, later = await ctx.db.write(lambda s, t=target, ws=items: _deliver(s, ctx, today, t, ws, pngs))
                break
            except _Raced:
                log.info("purchase warnings: another run queued a chart for %s first (attempt %d)", target, attempt)
        else:
            raise RuntimeError(f"purchase warnings for {target.rate_key}: the charts kept being queued elsewhere")
        warned.update(sent)
        waiting.update(later)
    unreached = [w.sku for w in found if not any(w in ws for ws in heard.values())]
    waiting -= warned
    earlier = {w.sku for ws in heard.values() for w in ws} - warned - waiting
    notes = [f"今天已预警过 {len(earlier)} 个" if earlier else "", f"{len(waiting)} 个留待下一小时" if waiting else "",
             f"无人可收：{'、'.join(unreached)}" if unreached else ""]
    return f"预警 {len(warned)} 个商品" + "".join(f"；{n}" for n in notes if n)


async def _deliver(session: AsyncSession, ctx: JobContext, today: date, target: Target, items: list[Shortage],
                   pngs: dict[int, bytes]) -> tuple[list[str], list[str]]:
    """One target's digest, button card and charts in one transaction: the SKUs warned, and those left for the
    next hour (beyond MAX_PER_DIGEST); products whose chart is queued already today are neither."""
    have = await outbox.states(session, [day_key(today, w.sku, target) for w in items])
    todo = [w for w in items if day_key(today, w.sku, target) not in have]
    new = [w for w in todo if w.product_id in pngs][:MAX_PER_DIGEST]
    later = [w.sku for w in todo if w not in new]
    if not new:
        return [], later
    rest = len(later)
    tag = hashlib.sha1(",".join(w.sku for w in new).encode()).hexdigest()[:12]
    rows = await ctx.outbound.send(session, f"{ctx.key('digest:' + tag)}>{target.rate_key}", target,
                                   digest(new, today, rest), ctx.now)
    if target.kind == "user":  # a group robot cannot carry callback buttons: the digest names the commands
        rows += await ctx.outbound.send(session, f"{ctx.key('apply:' + tag)}>{target.rate_key}", target,
                                        buttons(new), ctx.now)
    for w in new:
        chart = Message("image", title=f"{w.name}（{w.sku}）近{TREND_DAYS}天趋势", png=pngs[w.product_id])
        added = await ctx.outbound.send(session, day_key(today, w.sku, target), target, chart, ctx.now)
        if not added:
            raise _Raced(w.sku)
        rows += added
    ctx.queued += rows
    return [w.sku for w in new], later


def _order(p: PreOrder, unit: str) -> str:
    held = f"，已预留 {fq(p.reserved)}{unit}" if p.reserved else ""
    return f"{p.delivery:%m-%d} {p.number} {p.customer or '客户'} {fq(p.qty)}{unit}{held}"


def digest(items: list[Shortage], today: date, rest: int = 0) -> Message:
    """The digest: per product its available stock against the safety line, the pre-orders and the shortfall."""
    end = today + timedelta(days=AHEAD_DAYS)
    lines = [f"{len(items)} 个商品可用库存低于安全库存，且 {today:%m-%d} 至 {end:%m-%d} 有预订单交货："]
    for n, w in enumerate(items, start=1):
        u = w.unit
        coming = [f"在途 {fq(w.on_order)}{u}" if w.on_order else "", f"已申请 {fq(w.requested)}{u}" if w.requested
                  else ""]
        lines += [f"{n}. **{w.name}（{w.sku}）缺口 {fq(w.shortfall)}{u}**",
                  f"可用 {fq(w.available)}{u}（在库 {fq(w.on_hand)}{u} − 预留 {fq(w.reserved)}{u}），"
                  f"安全库存 {fq(w.safety)}{u}；交货后可用 {fq(w.after)}{u}"
                  + ("；" + "，".join(x for x in coming if x) if any(coming) else ""),
                  "预订单：" + "；".join(_order(p, u) for p in w.preorders),
                  f"发起采购：采购申请 {w.sku}"]
    if rest:
        lines.append(f"另有 {rest} 个商品同样需要补货，下一小时的预警会列出。")
    lines.append("> 缺口 = 安全库存 − 交货后可用；交货后可用 = 可用 − 预订单中未预留的数量。"
                 f"每个商品附近{TREND_DAYS}天趋势图（日销量、每日期末在库、安全库存线、预订单交货日）。")
    return Message("markdown", title="采购预警", text="\n".join(lines))


def buttons(items: list[Shortage]) -> Message:
    """The 发起采购申请 buttons (the pick action runs 采购申请 <SKU> as if typed: the engine's quantity and why)."""
    one = len(items) == 1
    return Message("card", title="发起采购申请", text="按补货建议量提交采购申请，主管审批后生成采购订单。",
                   buttons=tuple(Button("发起采购申请" if one else f"{w.name}（{w.sku}）", f"pick:采购申请 {w.sku}",
                                        "primary") for w in items))
