"""Category replenishment strategies: fixed, static (the old formula) or dynamic, with service level and review."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.models import STRATEGIES, Product, ReplenishStrategy, User, utcnow
from core.replenish.why import STRATEGY_ZH

MAX_NUMBER = Decimal(10) ** 12  # quantities and factors a user types: beyond this it is a typo, not a plan
MAX_REVIEW_DAYS = 365


@dataclass(frozen=True)
class Strategy:
    """How a category is replenished; categories without a row get DEFAULT."""

    category: str
    strategy: str
    service_level: Decimal
    fixed_qty: Decimal | None
    review_days: int


DEFAULT = Strategy("", "dynamic", Decimal("0.95"), None, 7)


def to_decimal(value: Decimal | int | str, what: str) -> Decimal:
    """A finite Decimal from user input; DomainError BAD_NUMBER names the field."""
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        d = Decimal("NaN")
    if not d.is_finite():
        raise DomainError("BAD_NUMBER", f"{what}「{value}」不是数字", f"请把{what}改为数字", {"value": str(value)})
    if abs(d) > MAX_NUMBER:
        raise DomainError("BAD_NUMBER", f"{what}「{value}」过大", f"请填写不超过 {MAX_NUMBER:,.0f} 的数",
                          {"value": str(value)})
    return d


async def user_id(session: AsyncSession, name: str | None, *, required: bool) -> int | None:
    """The id of a user by name; DomainError when required and missing or unknown."""
    if not name or not name.strip():
        if required:
            raise DomainError("NO_USER", "缺少操作人", "请注明是谁做的修改（用户名）")
        return None
    uid = await session.scalar(select(User.id).where(User.name == name.strip()))
    if uid is None:
        raise DomainError("NOT_FOUND", f"找不到用户「{name}」", "请核对用户名，或先导入用户档案", {"user": name})
    return uid


async def set_strategy(
    session: AsyncSession, *, category: str, strategy: str, service_level: Decimal | str = Decimal("0.95"),
    fixed_qty: Decimal | str | None = None, review_days: int = 7, by: str | None = None,
    now: datetime | None = None,
) -> Strategy:
    """Create or replace a category's strategy; bad input raises DomainError and changes nothing."""
    if strategy not in STRATEGIES:
        raise DomainError("BAD_STRATEGY", f"未知补货策略「{strategy}」",
                          "可选：" + "、".join(f"{k}（{v}）" for k, v in STRATEGY_ZH.items()), {"strategy": strategy})
    level = to_decimal(service_level, "服务水平")
    if not Decimal(0) < level < Decimal(1):
        raise DomainError("BAD_SERVICE_LEVEL", f"服务水平 {level} 必须在 0 与 1 之间", "例如 0.95 表示 95%",
                          {"service_level": str(level)})
    fixed = None if fixed_qty is None else to_decimal(fixed_qty, "固定数量")
    if strategy == "fixed" and (fixed is None or fixed < 0):
        raise DomainError("BAD_FIXED_QTY", "固定策略需要一个不小于 0 的固定数量",
                          "请填写固定的安全库存数量（库存单位）")
    if strategy != "fixed" and fixed is not None:
        raise DomainError("BAD_FIXED_QTY", f"只有 fixed 策略使用固定数量，{strategy} 策略不会用到它",
                          "去掉固定数量，或把策略改为 fixed")
    name = (category or "").strip()
    if not name or await session.scalar(select(Product.id).where(Product.category == name).limit(1)) is None:
        raise DomainError("UNKNOWN_CATEGORY", f"没有商品属于品类「{category}」，策略不会用到任何商品",
                          "请核对品类名称（与商品档案的「品类」一致）", {"category": category})
    if not 1 <= review_days <= MAX_REVIEW_DAYS:
        raise DomainError("BAD_REVIEW_DAYS", f"补货周期 {review_days} 天必须在 1 到 {MAX_REVIEW_DAYS} 天之间",
                          "例如每周补货填 7")
    uid = await user_id(session, by, required=False)
    row = await session.scalar(select(ReplenishStrategy).where(ReplenishStrategy.category == name))
    if row is None:
        row = ReplenishStrategy(category=name)
        session.add(row)
    row.strategy, row.service_level, row.review_days = strategy, level, review_days
    row.fixed_qty = fixed if strategy == "fixed" else None
    row.updated_by_id, row.updated_at = uid, now or utcnow()
    await session.flush()
    return Strategy(category, strategy, level, row.fixed_qty, review_days)


async def strategies(session: AsyncSession) -> dict[str, Strategy]:
    """Every configured category strategy by category."""
    rows = await session.scalars(select(ReplenishStrategy).order_by(ReplenishStrategy.category))
    return {r.category: Strategy(r.category, r.strategy, r.service_level, r.fixed_qty, r.review_days) for r in rows}
