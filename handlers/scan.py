"""扫码: a scanned code goes to the sender's open draft of a scan-required document (a borrow slip, a shipment);
without one it answers with the product's stock."""

from __future__ import annotations

from sqlalchemy import select

from cards.model import Message, text
from core.ledger.documents import get_document
from core.ledger.lookup import ask_stock
from core.ledger.scan import parse_scan, product_of
from core.models import Document
from handlers.registry import SCAN_TARGETS, Context, scanned
from handlers.stock import render


async def _draft(ctx: Context) -> Document | None:
    """The sender's newest draft of a type that takes scans."""
    if not SCAN_TARGETS:
        return None
    number = await ctx.unit.scalar(
        select(Document.number).where(Document.created_by_id == ctx.sender.id, Document.status == "draft",
                                      Document.type.in_(tuple(SCAN_TARGETS)))
        .order_by(Document.created_at.desc(), Document.id.desc()).limit(1))
    return await get_document(ctx.unit, number) if number is not None else None


@scanned(summary="扫码录入：扫到的商品和批次记到你正在填写的借条或发货单上；没有单据时显示该商品的库存")
async def scan(ctx: Context, code: str) -> list[Message]:
    """The scanned code: a line of the open draft, or the product's stock."""
    found = parse_scan(code)
    draft = await _draft(ctx)
    if draft is not None:
        return await SCAN_TARGETS[draft.type].run(ctx, draft, found)
    product = await product_of(ctx.unit, found)
    answer = await ask_stock(ctx.db, product.sku)
    batch = f"，批次 {found.batch}" if found.batch else ""
    head = f"扫到：{product.name}（{product.sku}）{batch}。你没有正在填写的借条或发货单，下面是它的库存。\n"
    return [Message("markdown", title=f"扫码 {product.sku}",
                    text=head + render(product.sku, None, answer.products, answer.levels)), text(
        "要把扫到的商品记到单据上，先开单：借货 <客户> …，或 发货 <销售订单号>，再扫码。")]
