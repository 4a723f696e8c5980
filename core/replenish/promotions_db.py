"""Promotion calendar: add (validated, reason required), list, remove, and the engine's promo day matrix.

A promotion marks one product's local days [start, end] (both inclusive). Past promotions teach the forecaster the
product's uplift (shrunk toward its category's); scheduled ones raise the forecast on their days (core/replenish/
forecast.py). Every bad input raises a DomainError before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.ledger.dates import match_date
from core.models import Product, Promotion, User, utcnow
from core.replenish.history import MAX_YEAR, MIN_YEAR, ProductIndex
from core.replenish.strategies_db import user_id

MAX_PROMO_DAYS = 60  # a longer "promotion" is a new normal, not a promotion: the baseline should learn it


@dataclass(frozen=True)
class PromotionView:
    """One promotion as people see it."""

    id: int
    sku: str
    name: str
    start: date
    end: date  # inclusive
    reason: str
    created_by: str
    created_at: datetime

    @property
    def days(self) -> int:
        """Promotion days, both ends included."""
        return (self.end - self.start).days + 1


def parse_day(value: date | str, what: str) -> date:
    """A date given as a date or text like 2026-12-01; DomainError BAD_DATE naming the field otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    day = match_date(text)
    if day is not None:
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise DomainError("BAD_DATE", f"{what}「{text}」超出范围", f"年份须在 {MIN_YEAR}–{MAX_YEAR} 之间",
                              {"date": text})
        return day
    raise DomainError("BAD_DATE", f"{what}「{text}」无法识别", f"请把{what}写成 2026-12-01 这样的年-月-日",
                      {"date": text})


async def add_promotion(session: AsyncSession, *, sku: str, start: date | str, end: date | str,
                        reason: str | None, by: str, now: datetime | None = None) -> PromotionView:
    """Schedule (or record a past) promotion of a product on [start, end], end inclusive.

    Refused with a DomainError, nothing written: no reason, unparsable dates, end before start, longer than
    MAX_PROMO_DAYS, unknown SKU or user, or overlapping another promotion of the same product."""
    if reason is None or not reason.strip():
        raise DomainError("PROMO_REASON", "登记促销必须填写原因，本次未做任何修改",
                          "请说明促销内容，例如：双十二满 100 减 20", {"sku": sku})
    first, last = parse_day(start, "开始日期"), parse_day(end, "结束日期")
    if last < first:
        raise DomainError("PROMO_DATES", f"结束日期 {last} 早于开始日期 {first}",
                          "请检查两个日期是否写反：结束日期（含当天）不能早于开始日期",
                          {"start": str(first), "end": str(last)})
    days = (last - first).days + 1
    if days > MAX_PROMO_DAYS:
        raise DomainError("PROMO_TOO_LONG", f"促销 {days} 天，超过上限 {MAX_PROMO_DAYS} 天",
                          f"请拆成不超过 {MAX_PROMO_DAYS} 天的促销；长期降价会改变日常销量，应让预测自行学习，"
                          "不按促销登记", {"days": days})
    product = await session.scalar(select(Product).where(Product.sku == sku.strip()))
    if product is None:
        raise DomainError("UNKNOWN_SKU", f"找不到商品「{sku}」", "请核对 SKU", {"sku": sku})
    uid = await user_id(session, by, required=True)
    clash = await session.scalar(
        select(Promotion).where(Promotion.product_id == product.id, Promotion.start_date <= last,
                                Promotion.end_date >= first).order_by(Promotion.start_date).limit(1))
    if clash is not None:
        raise DomainError("PROMO_OVERLAP",
                          f"{product.sku} 在 {clash.start_date} 至 {clash.end_date} 已有促销 #{clash.id}"
                          f"（{clash.reason}），与本次日期重叠",
                          f"请调整日期，或先删除旧的促销：jxcbot replenish promo remove {clash.id}",
                          {"sku": product.sku, "id": clash.id})
    promo = Promotion(product_id=product.id, start_date=first, end_date=last, reason=reason.strip(),
                      created_by_id=uid, created_at=now or utcnow())
    session.add(promo)
    await session.flush()
    return (await _views(session, select_id=promo.id))[0]


async def _views(session: AsyncSession, *, since: date | None = None, sku: str | None = None,
                 select_id: int | None = None) -> list[PromotionView]:
    stmt = (select(Promotion, Product.sku, Product.name, User.name)
            .join(Product, Product.id == Promotion.product_id)
            .join(User, User.id == Promotion.created_by_id)
            .order_by(Promotion.start_date, Product.sku, Promotion.id))
    if since is not None:
        stmt = stmt.where(Promotion.end_date >= since)
    if sku is not None:
        stmt = stmt.where(Product.sku == sku.strip())
    if select_id is not None:
        stmt = stmt.where(Promotion.id == select_id)
    return [PromotionView(p.id, p_sku, name, p.start_date, p.end_date, p.reason, who, p.created_at)
            for p, p_sku, name, who in (await session.execute(stmt)).all()]


async def list_promotions(session: AsyncSession, *, since: date | str | None = None,
                          sku: str | None = None) -> list[PromotionView]:
    """Promotions by start date then SKU; with `since`, only those still running on or after that day."""
    return await _views(session, since=None if since is None else parse_day(since, "起始日期"), sku=sku)


async def remove_promotion(session: AsyncSession, promotion_id: int | str) -> PromotionView:
    """Delete one promotion by id and return what it was; DomainError NOT_FOUND (nothing changed) if unknown."""
    try:
        pid = int(str(promotion_id).strip().lstrip("#"))
    except ValueError:
        pid = None
    if pid is not None and not 0 < pid < 2**63:  # not an id any database holds
        pid = None
    found = await _views(session, select_id=pid) if pid is not None else []
    if not found:
        raise DomainError("NOT_FOUND", f"找不到促销 #{promotion_id}",
                          "请用 jxcbot replenish promo list 查看促销编号", {"id": str(promotion_id)})
    promo = await session.get(Promotion, pid)
    await session.delete(promo)
    await session.flush()
    return found[0]


async def promo_matrix(session: AsyncSession, index: ProductIndex, start: date, days: int) -> np.ndarray:
    """bool[n, days]: True where product row i has a promotion on local day start + k (the engine's ``promo``)."""
    out = np.zeros((len(index), max(days, 0)), dtype=bool)
    if not len(index) or days <= 0:
        return out
    end = start + timedelta(days=days - 1)
    rows_of = index.rows()
    found = (await session.execute(
        select(Promotion.product_id, Promotion.start_date, Promotion.end_date)
        .where(Promotion.start_date <= end, Promotion.end_date >= start))).all()
    for product_id, first, last in found:
        row = rows_of.get(product_id)
        if row is not None:
            out[row, max((first - start).days, 0):(last - start).days + 1] = True
    return out
