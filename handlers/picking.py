"""One product from what a user typed: an exact SKU or barcode, a single match, or a pick list to choose from."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Button, Message
from core.errors import DomainError
from core.ledger.stock import find_products
from core.models import Product
from handlers.registry import Answer, Context, action, find

MAX_PICK = 6  # WeCom's button_interaction card carries up to 6 buttons


async def one_product(session: AsyncSession, query: str, command: str) -> Product:
    """The product `query` names. Several matches raise Answer with a pick list whose buttons re-run
    `command` (containing "{sku}") with each SKU; no match is a DomainError."""
    found = await find_products(session, query, limit=MAX_PICK + 1)
    if not found:
        raise DomainError("NO_MATCH", f"没有找到与「{query}」匹配的商品",
                          "请换个关键词（名称中的两三个字即可），或直接发 SKU / 条码")
    exact = [p for p in found if query.strip() in (p.sku, p.barcode)]
    if len(exact) == 1 or len(found) == 1:
        product = await session.get(Product, (exact or found)[0].id)
        assert product is not None
        return product
    shown = found[:MAX_PICK]
    lines = [f"「{query}」匹配到多个商品，请选择（点按钮，或发送下面的命令）："]
    lines += [f"{i}. {p.name}（{p.sku}）→ {command.format(sku=p.sku)}" for i, p in enumerate(shown, start=1)]
    if len(found) > MAX_PICK:
        lines.append("还有更多匹配，请输入更完整的名称或 SKU")
    buttons = tuple(Button(f"{p.name}（{p.sku}）", f"pick:{command.format(sku=p.sku)}") for p in shown)
    raise Answer(Message("card", title="请选择商品", text="\n".join(lines), buttons=buttons))


@action("pick", summary="从候选商品中选择")
async def pick(ctx: Context, rest: str) -> list[Message]:
    """A pick-list button: run the command it carries, as if the user had typed it (with their roles)."""
    found = find(rest)
    if found is None:
        raise DomainError("BAD_BUTTON", "这个按钮已失效或无法识别", "请重新发送命令")
    command, args = found
    if not command.allowed(ctx.sender):
        return [Message("text", text=command.refusal())]
    return await command.run(ctx, args)
