"""Monthly manual forecast anchors: set (reason required, every change logged), list, and FVA per month."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import DomainError
from core.models import ForecastAnchor, ForecastOverride, Product, User, utcnow
from core.replenish import anchors
from core.replenish.explain import to_dec
from core.replenish.forecast import forecast
from core.replenish.history import (
    DEFAULT_HISTORY_DAYS,
    MAX_YEAR,
    MIN_YEAR,
    Window,
    daily_demand,
    load_products,
    stockout_days,
)
from core.replenish.promotions_db import promo_matrix
from core.replenish.strategies_db import to_decimal, user_id

MAX_WEIGHT = Decimal(str(anchors.WEIGHT_CAP))
MAX_MONTHS_AHEAD = 24  # anchors are for the coming months, not for years ahead


@dataclass(frozen=True)
class AnchorView:
    """One anchor as people see it."""

    sku: str
    name: str
    unit: str
    month: date
    qty: Decimal
    weight_cap: Decimal
    reason: str
    stat_qty: Decimal | None
    actual_qty: Decimal | None
    created_by: str
    updated_at: datetime


@dataclass(frozen=True)
class OverrideView:
    """One logged set or change of an anchor."""

    sku: str
    month: date
    old_qty: Decimal | None
    new_qty: Decimal
    old_weight_cap: Decimal | None
    new_weight_cap: Decimal
    stat_qty: Decimal | None
    reason: str
    user: str
    at: datetime


@dataclass(frozen=True)
class FvaRow:
    """One anchored product in one month: did blending in the planner's number beat the statistical forecast?"""

    sku: str
    name: str
    stat: Decimal
    manual: Decimal
    weight_used: Decimal
    blended: Decimal
    actual: Decimal | None  # None while the month is not over
    reason: str

    @property
    def fva(self) -> Decimal | None:
        """|stat − actual| − |blended − actual| (> 0: the override helped)."""
        if self.actual is None:
            return None
        return abs(self.stat - self.actual) - abs(self.blended - self.actual)


@dataclass(frozen=True)
class FvaReport:
    """Forecast value added of one month's anchors: statistical vs blended vs actual."""

    month: date
    rows: tuple[FvaRow, ...]
    stat_wape: Decimal | None  # Σ|stat − actual| / Σ actual over finished rows
    blended_wape: Decimal | None
    fva: Decimal | None  # stat_wape − blended_wape (> 0: the overrides helped)
    helped: int
    hurt: int


def parse_month(value: date | str) -> date:
    """The first day of a month given as a date or text like 2026-12; DomainError BAD_MONTH otherwise."""
    if isinstance(value, date):
        return value.replace(day=1)
    text = str(value).strip()
    for fmt in ("%Y-%m", "%Y-%m-%d"):
        try:
            first = datetime.strptime(text, fmt).date().replace(day=1)
        except ValueError:
            continue
        if not MIN_YEAR <= first.year <= MAX_YEAR:
            raise DomainError("BAD_MONTH", f"月份「{text}」超出范围", f"年份须在 {MIN_YEAR}–{MAX_YEAR} 之间",
                              {"month": text})
        return first
    raise DomainError("BAD_MONTH", f"月份「{text}」无法识别", "请写成 2026-12 这样的年-月", {"month": text})


def month_days(month: date) -> int:
    """Days in the month."""
    return calendar.monthrange(month.year, month.month)[1]


async def statistical_month(session: AsyncSession, product_ids: list[int], month: date, today: date,
                            tz: tzinfo) -> dict[int, Decimal]:
    """The statistical forecast of a month's total demand per product, as the engine forecasts daily demand.

    Made from the history before the month (or before today, for a later month), with the promotion calendar's days
    (past ones teach the uplift, those up to the month's end apply it). The products' whole categories are read,
    not the whole ledger: the engine pools weekday profiles and promotion uplift within a category."""
    if not product_ids:
        return {}
    origin = min(today, month)
    same_category = select(Product.id).where(
        Product.category.in_(select(Product.category).where(Product.id.in_(product_ids))))
    index = await load_products(session, (await session.scalars(same_category)).all())
    window = Window.ending_yesterday(origin, DEFAULT_HISTORY_DAYS, tz)
    demand = await daily_demand(session, index, window)
    censored = await stockout_days(session, index, window)
    skip = (month - origin).days
    horizon = skip + month_days(month)
    promo = await promo_matrix(session, index, window.start, window.days + horizon)
    fc = forecast(demand, censored, promo, index.category_ids(), horizon, window.start.weekday())
    total = fc.daily[:, skip:].sum(axis=1)
    wanted = set(product_ids)
    return {int(pid): to_dec(float(v), 2) for pid, v in zip(index.ids, total, strict=True) if int(pid) in wanted}


async def set_anchor(
    session: AsyncSession, settings: Settings, *, sku: str, month: date | str, qty: Decimal | int | str,
    reason: str | None, by: str, weight_cap: Decimal | str | None = None, now: datetime | None = None,
) -> AnchorView:
    """Set or change a product's anchor for a month and log it; bad input raises DomainError and changes nothing.

    qty is the month's total demand in stock units; weight_cap (≤ the engine's cap, default it) bounds how far
    the forecast moves toward it."""
    if reason is None or not reason.strip():
        raise DomainError("ANCHOR_REASON", "设置预测锚点必须填写原因，本次未做任何修改",
                          "请说明依据，例如：客户已确认 12 月团购 300 盒", {"sku": sku})
    first = parse_month(month)
    amount = to_decimal(qty, "锚点数量")
    if amount < 0:
        raise DomainError("BAD_QTY", f"锚点数量 {amount} 不能为负", "请填写该月预计需求总量（库存单位，≥0）")
    cap = MAX_WEIGHT if weight_cap is None else to_decimal(weight_cap, "权重上限")
    if not Decimal(0) < cap <= MAX_WEIGHT:
        raise DomainError("BAD_WEIGHT", f"权重上限 {cap} 必须大于 0 且不超过 {MAX_WEIGHT}",
                          f"人工锚点对预测的权重最多为 {MAX_WEIGHT}，请填写 0 到 {MAX_WEIGHT} 之间的数",
                          {"weight_cap": str(cap)})
    product = await session.scalar(select(Product).where(Product.sku == sku.strip()))
    if product is None:
        raise DomainError("UNKNOWN_SKU", f"找不到商品「{sku}」", "请核对 SKU", {"sku": sku})
    uid = await user_id(session, by, required=True)
    now = now or utcnow()
    today = now.astimezone(settings.timezone).date()
    if (first.year - today.year) * 12 + first.month - today.month > MAX_MONTHS_AHEAD:
        raise DomainError("BAD_MONTH", f"{first:%Y-%m} 超过 {MAX_MONTHS_AHEAD} 个月之后，无法设置锚点",
                          f"锚点最多设置到 {MAX_MONTHS_AHEAD} 个月之后的月份", {"month": f"{first:%Y-%m}"})
    stat = (await statistical_month(session, [product.id], first, today, settings.timezone))[product.id]
    anchor = await session.scalar(
        select(ForecastAnchor).where(ForecastAnchor.product_id == product.id, ForecastAnchor.month == first))
    old_qty = old_cap = None
    if anchor is None:
        anchor = ForecastAnchor(product_id=product.id, month=first, created_by_id=uid, created_at=now)
        session.add(anchor)
    else:
        old_qty, old_cap = anchor.qty, anchor.weight_cap
    anchor.qty, anchor.weight_cap, anchor.reason, anchor.stat_qty, anchor.updated_at = (
        amount, cap, reason.strip(), stat, now)
    await session.flush()
    session.add(ForecastOverride(anchor_id=anchor.id, old_qty=old_qty, new_qty=amount, old_weight_cap=old_cap,
                                 new_weight_cap=cap, stat_qty=stat, reason=reason.strip(), user_id=uid,
                                 created_at=now))
    await session.flush()
    return (await list_anchors(session, month=first, sku=product.sku))[0]


async def list_anchors(session: AsyncSession, *, month: date | str | None = None,
                       sku: str | None = None) -> list[AnchorView]:
    """Anchors, newest month first then by SKU; optionally of one month and/or one product."""
    stmt = (select(ForecastAnchor, Product.sku, Product.name, Product.stock_unit, User.name)
            .join(Product, Product.id == ForecastAnchor.product_id)
            .join(User, User.id == ForecastAnchor.created_by_id)
            .order_by(ForecastAnchor.month.desc(), Product.sku))
    if month is not None:
        stmt = stmt.where(ForecastAnchor.month == parse_month(month))
    if sku is not None:
        stmt = stmt.where(Product.sku == sku.strip())
    return [AnchorView(p_sku, name, unit, a.month, a.qty, a.weight_cap, a.reason, a.stat_qty, a.actual_qty, who,
                       a.updated_at)
            for a, p_sku, name, unit, who in (await session.execute(stmt)).all()]


async def override_log(session: AsyncSession, *, sku: str | None = None) -> list[OverrideView]:
    """Every logged anchor set/change, oldest first."""
    stmt = (select(ForecastOverride, ForecastAnchor.month, Product.sku, User.name)
            .join(ForecastAnchor, ForecastAnchor.id == ForecastOverride.anchor_id)
            .join(Product, Product.id == ForecastAnchor.product_id)
            .join(User, User.id == ForecastOverride.user_id)
            .order_by(ForecastOverride.created_at, ForecastOverride.id))
    if sku is not None:
        stmt = stmt.where(Product.sku == sku.strip())
    return [OverrideView(p_sku, month, o.old_qty, o.new_qty, o.old_weight_cap, o.new_weight_cap, o.stat_qty,
                         o.reason, who, o.created_at)
            for o, month, p_sku, who in (await session.execute(stmt)).all()]


async def month_anchors(session: AsyncSession, month: date) -> dict[int, ForecastAnchor]:
    """The anchors of one month by product id."""
    rows = await session.scalars(select(ForecastAnchor).where(ForecastAnchor.month == parse_month(month)))
    return {a.product_id: a for a in rows}


async def _actuals(session: AsyncSession, product_ids: list[int], month: date, tz: tzinfo) -> dict[int, Decimal]:
    """Realised demand of a month (posted sales issues less returns, the same rule as the history)."""
    index = await load_products(session, product_ids)
    window = Window(month, month_days(month), tz)
    totals = (await daily_demand(session, index, window)).sum(axis=1)
    return {int(pid): to_dec(float(v), 6) for pid, v in zip(index.ids, totals, strict=True)}


async def record_actuals(session: AsyncSession, settings: Settings, month: date | str, *,
                         today: date) -> int:
    """Store the realised demand on a finished month's anchors (for FVA); returns how many were updated."""
    first = parse_month(month)
    if first + timedelta(days=month_days(first)) > today:
        raise DomainError("MONTH_NOT_OVER", f"{first:%Y-%m} 尚未结束，无法记录实际需求", "请在该月结束后再记录")
    found = await month_anchors(session, first)
    actual = await _actuals(session, list(found), first, settings.timezone)
    for pid, anchor in found.items():
        anchor.actual_qty = actual[pid]
    await session.flush()
    return len(found)


async def fva_report(session: AsyncSession, settings: Settings, month: date | str, *, today: date) -> FvaReport:
    """Per anchored product: statistical forecast, blended forecast (the engine's capped blend) and actual demand.

    The actual is the recorded one, else computed from the ledger once the month is over (None before)."""
    first = parse_month(month)
    found = await month_anchors(session, first)
    over = first + timedelta(days=month_days(first)) <= today
    computed = await _actuals(session, list(found), first, settings.timezone) if over and found else {}
    products = {p.id: p for p in await session.scalars(select(Product).where(Product.id.in_(list(found))))}
    order = sorted(found, key=lambda pid: products[pid].sku)
    stat = np.array([float(found[p].stat_qty or 0) for p in order])
    manual = np.array([float(found[p].qty) for p in order])
    weight = np.array([float(found[p].weight_cap) for p in order])
    blended, used = anchors.blend(stat, manual, weight)
    rows = []
    for k, pid in enumerate(order):
        a = found[pid]
        actual = a.actual_qty if a.actual_qty is not None else computed.get(pid)
        rows.append(FvaRow(products[pid].sku, products[pid].name, to_dec(stat[k], 2), a.qty, to_dec(used[k], 4),
                           to_dec(blended[k], 2), actual, a.reason))
    done = [r for r in rows if r.actual is not None]
    total = sum((r.actual for r in done if r.actual is not None), Decimal(0))
    stat_wape = blended_wape = gain = None
    if total > 0:
        stat_wape = to_dec(float(sum(abs(r.stat - r.actual) for r in done if r.actual is not None) / total), 4)
        blended_wape = to_dec(float(sum(abs(r.blended - r.actual) for r in done if r.actual is not None) / total), 4)
        gain = stat_wape - blended_wape
    return FvaReport(first, tuple(rows), stat_wape, blended_wape, gain,
                     sum(1 for r in done if (r.fva or 0) > 0), sum(1 for r in done if (r.fva or 0) < 0))
