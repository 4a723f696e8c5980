"""库存 <SKU|条码|名称片段> [仓库]: stock per warehouse and batch, as the warehouse staff ask for it."""

from __future__ import annotations

from cards.model import Message
from core.ledger.lookup import USAGE, ask_stock
from core.ledger.stock import WarehouseStock
from core.types import fq
from handlers.registry import Context, command

MAX_PRODUCTS = 5


@command("库存", "stock", "查库存", summary="查询商品在各仓库、各批次的库存",
         usage=USAGE.removeprefix("用法："))
async def stock(ctx: Context, args: str) -> list[Message]:
    """Stock of the matching products: on hand, on loan, reserved, available, per warehouse and batch."""
    query, warehouse = [*args.split(maxsplit=1), "", ""][:2]  # any whitespace, full-width too
    answer = await ask_stock(ctx.db, query, warehouse.strip() or None)
    return [Message("markdown", title=f"库存 {query}",
                    text=render(query, answer.warehouse, answer.products, answer.levels))]


def render(query: str, warehouse: str | None, products: list, levels: list[WarehouseStock]) -> str:
    """The reply text: one block per product, one line per warehouse, batches indented."""
    lines = [f"**库存查询「{query}」**" + (f"（仓库 {warehouse}）" if warehouse else "")]
    by_sku: dict[str, list[WarehouseStock]] = {}
    for lv in levels:
        by_sku.setdefault(lv.sku, []).append(lv)
    for p in products[:MAX_PRODUCTS]:
        rows = by_sku.get(p.sku, [])
        unit = rows[0].unit if rows else ""
        lines.append(f"\n**{p.name}**（{p.sku}）")
        if not rows:
            lines.append("> 暂无库存记录")
            continue
        for r in rows:
            lines.append(f"> {r.warehouse} {r.warehouse_name}：可用 **{fq(r.available)}**{unit}"
                         f"（在库 {fq(r.on_hand)}，借出 {fq(r.on_loan)}，预留 {fq(r.reserved)}）")
            for b in r.batches:
                if b.batch:
                    lines.append(f">   批次 {b.batch} 到期 {b.expiry or '—'}：{fq(b.on_hand)}{unit}")
    if len(products) > MAX_PRODUCTS:
        lines.append(f"\n另有 {len(products) - MAX_PRODUCTS} 个商品匹配，请输入更完整的名称或 SKU 缩小范围")
    return "\n".join(lines)

