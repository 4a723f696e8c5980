"""Customers and suppliers as people name them in chat: by code, by exact name, or by a unique name fragment."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.models import Customer


async def customer_by(session: AsyncSession, text: str) -> Customer:
    """The customer `text` names; DomainError listing the candidates when it names none or several."""
    word = text.strip()
    exact = await session.scalar(select(Customer).where(or_(Customer.code == word, Customer.name == word)))
    if exact is not None:
        return exact
    found = list(await session.scalars(select(Customer).where(Customer.name.contains(word)).order_by(Customer.code)
                                       .limit(6))) if word else []
    if len(found) == 1:
        return found[0]
    if found:
        raise DomainError("AMBIGUOUS_CUSTOMER", f"「{word}」匹配到多个客户：" + "、".join(f"{c.name}（{c.code}）"
                                                                                  for c in found[:5]),
                          "请写客户编码或更完整的名称")
    some = list(await session.scalars(select(Customer).order_by(Customer.code).limit(5)))
    hint = "，例如：" + "、".join(f"{c.code} {c.name}" for c in some) if some else ""
    raise DomainError("UNKNOWN_CUSTOMER", f"没有找到客户「{word}」",
                      f"请写客户编码或名称{hint}；新客户请先由管理员导入客户档案")
