"""Unit conversion from a line's unit to the product's stock unit, with the whole-number rule."""

from __future__ import annotations

from decimal import Decimal

from core.errors import DomainError
from core.models import Product

# Units that count discrete things: quantities in them must be whole numbers.
COUNT_UNITS = frozenset(
    "个 件 瓶 箱 包 袋 盒 桶 支 只 台 套 张 块 罐 听 卷 条 片 根 把 双 对 打 提 板 托 筐 篮 份 枚 粒".split()
)


def is_whole(qty: Decimal) -> bool:
    """True for an integral quantity."""
    return qty == qty.to_integral_value()


def to_stock_qty(product: Product, unit: str | None, qty: Decimal) -> tuple[int, Decimal]:
    """(factor, quantity in stock unit) for qty given in unit; DomainError on a bad unit."""
    unit = (unit or "").strip()
    fields = {"sku": product.sku, "unit": unit, "qty": str(qty)}
    if not unit:
        raise DomainError(
            "UNIT_MISSING",
            f"商品 {product.sku}「{product.name}」的单位为空",
            f"请填写单位：库存单位「{product.stock_unit}」或采购单位「{product.purchase_unit}」，不会默认为最小单位",
            fields,
        )
    if unit == product.stock_unit:
        factor = 1
    elif unit == product.purchase_unit:
        factor = product.purchase_factor
    else:
        raise DomainError(
            "UNIT_UNKNOWN",
            f"商品 {product.sku} 没有单位「{unit}」",
            f"请改用库存单位「{product.stock_unit}」或采购单位「{product.purchase_unit}」",
            fields,
        )
    whole_needed = unit in COUNT_UNITS or (factor > 1 and unit == product.purchase_unit)
    if whole_needed and not is_whole(qty):
        raise DomainError(
            "UNIT_NOT_WHOLE",
            f"商品 {product.sku} 的数量 {qty}{unit} 不是整数",
            f"「{unit}」必须是整数（1{product.purchase_unit}={product.purchase_factor}{product.stock_unit}），"
            f"请改为整数或改用库存单位「{product.stock_unit}」",
            fields,
        )
    stock_qty = qty * factor
    if product.stock_unit in COUNT_UNITS and not is_whole(stock_qty):
        raise DomainError(
            "UNIT_NOT_WHOLE",
            f"商品 {product.sku} 折合 {stock_qty}{product.stock_unit}，不是整数",
            f"「{product.stock_unit}」必须是整数，请修改数量",
            fields,
        )
    return factor, stock_qty
