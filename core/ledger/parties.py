"""Customers and suppliers as people name them in chat: by code, by exact name, or by a unique name fragment."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.models import Customer

MAX_CUSTOMERS_LISTED = 10


async def customer_by(session: AsyncSession, text: str) -> Customer:
    """The customer a code or name names (code exact, any case; name exact, else a unique fragment).
    DomainError listing the customers (or the several that match)."""
    t = text.strip()
    found = (await session.scalars(select(Customer).where(or_(func.lower(Customer.code) == t.lower(),
                                                              Customer.name == t)))).all()
    if len(found) == 1:
        return found[0]
    like = (await session.scalars(select(Customer).where(Customer.name.contains(t, autoescape=True))
                                  .order_by(Customer.code).limit(MAX_CUSTOMERS_LISTED + 1))).all()
    if len(like) == 1:
        return like[0]
    if like:
        names = "、".join(f"{c.code} {c.name}" for c in like[:MAX_CUSTOMERS_LISTED])
        raise DomainError("CUSTOMER_AMBIGUOUS", f"「{t}」匹配到多个客户：{names}", "请写客户编码，例如 " + like[0].code)
    some = (await session.scalars(select(Customer).order_by(Customer.code).limit(MAX_CUSTOMERS_LISTED))).all()
    total = await session.scalar(select(func.count()).select_from(Customer)) or 0
    listed = "、".join(f"{c.code} {c.name}" for c in some)
    more = f"（共 {total} 个，只列前 {len(some)} 个）" if total > len(some) else ""
    fix = (f"请写客户编码或名称（名称中的几个字也可以）。已有客户：{listed}{more}；新客户请先导入客户档案"
           if some else "还没有客户档案：请先导入客户（jxcbot import customers）")
    raise DomainError("NO_CUSTOMER", f"找不到客户「{t}」", fix, {"customer": t})
