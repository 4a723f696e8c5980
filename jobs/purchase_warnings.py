"""Hourly purchase warnings (the seed's 采购预警): a product whose available stock is below its safety line and that has
sales-order deliveries in the next 7 days → its purchaser gets one digest per run (several products in one card,
each with its shortfall, the pre-orders and a 发起采购申请 button) and each product's 30-day trend chart. Once per
product and day while the condition holds: a later hour of the same day leaves out products already warned."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Button, Message
from core.messaging.recipients import Recipient, ToRole, ToUser
from core.models import Customer, Document, DocumentLine, OutboxMessage, Product, StockMove
from core.replenish.suggest import suggest
from core.types import fq
from jobs.charts import Trend, trend_chart
from jobs.context import JobContext
from jobs.registry import hour, job

AHEAD_DAYS = 7
TREND_DAYS = 30
MAX_BUTTONS = 6  # a WeCom button card holds at most 6 buttons; more products are named with the text command


@dataclass(frozen=True)
class Warning:
    """One product to warn about: available vs the safety line, and the pre-orders due in the next days."""

    product: Product
    available: Decimal
    safety: Decimal
    preorders: list[tuple[date, Decimal, str]]  # delivery day, quantity (stock unit), customer

    @property
    def shortfall(self) -> Decimal:
        """How far below the safety line, plus what the pre-orders will take out."""
        return self.safety - self.available + sum((q for _, q, _ in self.preorders), Decimal(0))


async def preorders(session: AsyncSession, today: date) -> dict[int, list[tuple[date, Decimal, str]]]:
    """Open sales orders delivering within AHEAD_DAYS, per product."""
    rows = await session.execute(
        select(DocumentLine.product_id, Document.delivery_date, DocumentLine.stock_qty, Customer.name)
        .join(Document, Document.id == DocumentLine.document_id)
        .outerjoin(Customer, Customer.id == Document.customer_id)
        .where(Document.type == "sales_order", Document.status == "submitted",
               Document.delivery_date >= today, Document.delivery_date <= today + timedelta(days=AHEAD_DAYS)))
    out: dict[int, list[tuple[date, Decimal, str]]] = defaultdict(list)
    for pid, day, qty, customer in rows.all():
        out[pid].append((day, abs(qty), customer or ""))
    return out


async def trend(session: AsyncSession, product: Product, today: date, ctx: JobContext,
                ahead: list[tuple[date, Decimal, str]], safety: Decimal, on_hand_now: Decimal) -> Trend:
    """The product's last 30 days: daily sales (posted sales issues) and closing on-hand (now less the moves after
    each day), from one grouped query of its own moves."""
    tz = ctx.settings.timezone
    start = datetime.combine(today - timedelta(days=TREND_DAYS - 1), time(), tz)
    rows = await session.execute(
        select(StockMove.posted_at, StockMove.qty, Document.type)
        .join(Document, Document.id == StockMove.document_id)
        .where(StockMove.product_id == product.id, StockMove.bucket == "stock", StockMove.posted_at >= start))
    days = [today - timedelta(days=TREND_DAYS - 1 - i) for i in range(TREND_DAYS)]
    sold = dict.fromkeys(days, Decimal(0))
    moved = dict.fromkeys(days, Decimal(0))
    for at, qty, kind in rows.all():
        d = at.astimezone(tz).date()
        if d in moved:
            moved[d] += qty
            if kind == "sales_issue":
                sold[d] -= qty
    closing, level = [], on_hand_now
    for d in reversed(days):
        closing.append(level)
        level -= moved[d]
    closing.reverse()
    return Trend(f"{product.name}（{product.sku}）近{TREND_DAYS}天：低于安全库存，{AHEAD_DAYS}天内有预订单",
                 product.stock_unit, tuple(days), tuple(float(sold[d]) for d in days),
                 tuple(float(c) for c in closing), float(safety), tuple((d, float(q)) for d, q, _ in ahead))


async def warned_today(session: AsyncSession, day: str) -> set[str]:
    """SKUs already warned today: each digest's outbox key names them (job:purchase_warnings:{day}T{HH}:…)."""
    keys = await session.scalars(select(OutboxMessage.dedupe_key)
                                 .where(OutboxMessage.dedupe_key.like(f"job:purchase_warnings:{day}T%")))
    out: set[str] = set()
    for key in keys:
        part = key.split(":", 3)[3].split(">")[0]  # {recipient}|{sku},{sku}…[#n], before the target suffix
        if "|" in part:
            out.update(part.split("|", 1)[1].split("#")[0].split(","))
    return out


@job("purchase_warnings", title="采购预警（低于安全库存且7天内有预订单）", cron="17 * * * *", period=hour)
async def purchase_warnings(ctx: JobContext) -> str:
    """Digest per purchaser, then one chart per product; products warned earlier today are left out."""
    today = ctx.local.date()
    suggestions = {s.sku: s for s in await suggest(ctx.db, today=today, settings=ctx.settings, everything=True)}
    async with ctx.db.read() as s:
        ahead = await preorders(s, today)
        done = await warned_today(s, f"{today:%Y-%m-%d}")
        products = {p.id: p for p in await s.scalars(select(Product).where(Product.id.in_(list(ahead) or [0])))}
        found = []
        for pid, orders in sorted(ahead.items()):
            p = products[pid]
            sg = suggestions.get(p.sku)
            if sg is None or p.sku in done:
                continue
            e = sg.explanation
            available = Decimal(e.on_hand) - Decimal(e.reserved)
            if available < Decimal(e.safety_stock):
                found.append(Warning(p, available, Decimal(e.safety_stock), sorted(orders)))
        charts = {w.product.sku: await trend(s, w.product, today, ctx, w.preorders, w.safety, Decimal(
            suggestions[w.product.sku].explanation.on_hand)) for w in found}
        buyers = {w.product.sku: w.product.purchaser_id for w in found}
    by_buyer: dict[int | None, list[Warning]] = defaultdict(list)
    for w in found:
        by_buyer[buyers[w.product.sku]].append(w)
    pngs = {sku: await ctx.heavy(trend_chart, t) for sku, t in charts.items()}  # off the event loop

    def image(w: Warning) -> Message:
        return Message("image", title=f"{w.product.name} 近{TREND_DAYS}天趋势", png=pngs[w.product.sku])

    if found and ctx.channel:  # [jobs.purchase_warnings] channel: the purchasing group sees the same digest and charts
        await ctx.post(_digest(found), "channel|" + ",".join(w.product.sku for w in found))
        for w in found:
            await ctx.post(image(w), f"channel|{w.product.sku}#chart")
    for buyer, items in by_buyer.items():
        to: Recipient = ToUser(buyer) if buyer else ToRole("purchasing")
        skus = ",".join(w.product.sku for w in items)
        await ctx.send(to, _digest(items), f"{buyer or 'purchasing'}|{skus}")
        for w in items:
            await ctx.send(to, image(w), f"{buyer or 'purchasing'}|{w.product.sku}#chart")
    return f"预警 {len(found)} 个商品" + (f"（今天已预警过的 {len(done)} 个不再重复）" if done else "")


def _digest(items: list[Warning]) -> Message:
    lines = [f"**采购预警：{len(items)} 个商品低于安全库存，且{AHEAD_DAYS}天内有预订单**"]
    for w in items:
        u = w.product.stock_unit
        orders = "、".join(f"{d:%m-%d} {fq(q)}{u}" + (f"（{c}）" if c else "") for d, q, c in w.preorders)
        lines.append(f"- {w.product.name}（{w.product.sku}）：可用 {fq(w.available)}{u}，安全库存 {fq(w.safety)}{u}，"
                     f"缺口 {fq(w.shortfall)}{u}；预订单：{orders}")
    extra = items[MAX_BUTTONS:]
    if extra:
        lines.append("其余商品请发送：" + "、".join(f"采购申请 {w.product.sku}" for w in extra))
    lines.append("趋势图随后发出。点按钮或发送「采购申请 <SKU>」按补货建议发起采购申请。")
    buttons = tuple(Button(f"发起采购申请 {w.product.name}"[:16], f"pick:采购申请 {w.product.sku}", "primary")
                    for w in items[:MAX_BUTTONS])
    return Message("card", title="采购预警", text="\n".join(lines), buttons=buttons)
