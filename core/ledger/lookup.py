"""Stock as people ask for it (the chat command 库存 and `jxcbot stock` both): matches and their levels, now or
at a past time; a missing query or no match is a DomainError that says how to ask."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import DomainError
from core.ledger.stock import ProductMatch, WarehouseStock, current_stock, stock_lookup

USAGE = "用法：库存 <SKU|条码|名称片段> [仓库编码]，例如：库存 奶油、库存 RM-CREAM CW"


@dataclass(frozen=True)
class StockAnswer:
    """What a stock question found: the matching products (best first) and their stock per warehouse."""

    query: str
    warehouse: str | None
    at: datetime | None
    products: list[ProductMatch]
    levels: list[WarehouseStock]


async def ask_stock(db: Any, query: str, warehouse: str | None = None, at: datetime | None = None) -> StockAnswer:
    """Stock of the products matching a SKU, barcode or name fragment, in one warehouse or all, now (one read
    statement, no session) or as of `at` (a snapshot)."""
    query = query.strip()
    if not query:
        raise DomainError("NO_QUERY", "请告诉我要查哪个商品", USAGE)
    if at is None:
        products, levels = await current_stock(db, query, warehouse)
    else:
        async with db.read(snapshot=True) as session:
            products, levels = await stock_lookup(session, query, warehouse, at)
    if not products:
        raise DomainError("NO_MATCH", f"没有找到与「{query}」匹配的商品",
                          "请换个关键词（名称中的两三个字即可），或直接发 SKU / 条码")
    return StockAnswer(query, warehouse, at, products, levels)
