"""诊断 <单号> | 诊断 <商品> <仓库>: the failing checks with their fixes, the three books side by side, the freeze log;
解冻 <商品> <仓库> <说明> for managers. The same core functions and words as `jxcbot diagnose`."""

from __future__ import annotations

import re

from sqlalchemy import select

from cards.model import Message, text
from core.errors import DomainError
from core.ledger.diagnose import diagnose_document, diagnose_pair
from core.ledger.freeze import unfreeze
from core.models import Document, DocumentLine, Product, Warehouse
from handlers import diagnosis_text
from handlers.picking import one_product
from handlers.registry import Answer, Context, command

USAGE = "诊断 <单号>，或 诊断 <商品> <仓库>，例如：诊断 RK20261206001、诊断 RM-CREAM CW"
UNFREEZE_USAGE = "解冻 <商品> <仓库> <说明>，例如：解冻 RM-CREAM CW 单位录错已更正"
DOC_NUMBER = re.compile(r"[A-Z]{2}\d{11,12}")  # {PREFIX}{YYYYMMDD}{NNN[N]}
MAX_PAIRS = 3  # a document's pairs whose books are shown below its checks


def _books_md(d) -> list[str]:
    return [f"> {book}：{said}" for book, said in diagnosis_text.books(d)]


async def _pair_message(ctx: Context, sku: str, warehouse: str) -> Message:
    d = await diagnose_pair(ctx.unit, sku, warehouse)
    lines = [f"**{diagnosis_text.pair_head(d)}**", *_books_md(d), *diagnosis_text.pair_tail(d, ctx.settings.timezone)]
    if d.frozen:
        lines.append(f"核对修正后，主管可发送：解冻 {d.sku} {d.warehouse} <说明>")
    return Message("markdown", title=f"诊断 {d.sku} {d.warehouse}", text="\n".join(lines))


async def _document_message(ctx: Context, number: str) -> Message:
    d = await diagnose_document(ctx.unit, ctx.settings, number, ctx.now)
    lines = [f"**{diagnosis_text.document_head(d)}**", *diagnosis_text.document_lines(d)]
    if d.failures:  # the books of the pairs the document touches
        pairs = await ctx.unit.execute(
            select(Product.sku, Warehouse.code).distinct()
            .join(DocumentLine, DocumentLine.product_id == Product.id)
            .join(Warehouse, Warehouse.id == DocumentLine.warehouse_id)
            .join(Document, Document.id == DocumentLine.document_id)
            .where(Document.number == d.number).limit(MAX_PAIRS))
        for sku, wh in pairs.all():
            pd = await diagnose_pair(ctx.unit, sku, wh)
            lines += [f"三账 {pd.name}（{sku}）@ {wh}" + ("  【已冻结】" if pd.frozen else ""), *_books_md(pd)]
    return Message("markdown", title=f"诊断 {d.number}", text="\n".join(lines))


@command("诊断", "diagnose", summary="诊断：单据为什么过不了账、商品在仓库的三账是否一致、冻结记录", usage=USAGE,
         writes=True)
async def diagnose(ctx: Context, args: str) -> list[Message]:
    """A dry run of every posting check (rolled back by Answer: nothing it touches is kept), or a pair's books."""
    words = args.split()
    if len(words) == 1:
        if not DOC_NUMBER.fullmatch(words[0].upper()):
            raise DomainError("BAD_ARGS", f"「{words[0]}」不是单据号", "查商品请写上仓库：诊断 <商品> <仓库>，例如："
                              "诊断 RM-CREAM CW；查单据请写完整单号，例如：诊断 RK20261206001")
        raise Answer(await _document_message(ctx, words[0].upper()))
    if len(words) == 2:
        product = await one_product(ctx.unit, words[0], f"诊断 {{sku}} {words[1]}")
        raise Answer(await _pair_message(ctx, product.sku, words[1].upper()))
    raise DomainError("BAD_ARGS", "诊断需要一个单据号，或商品和仓库两项", "用法：" + USAGE)


@command("解冻", "unfreeze", summary="解冻：核对修正后，解除商品在某仓库的冻结（写明说明，记入冻结日志）",
         usage=UNFREEZE_USAGE, roles=("manager",), writes=True)
async def lift(ctx: Context, args: str) -> list[Message]:
    """Lift a pair's freeze with a note (the freeze log keeps who, when and why)."""
    words = args.split(maxsplit=2)
    if len(words) < 3:
        raise DomainError("BAD_ARGS", "解冻需要商品、仓库和说明", "用法：" + UNFREEZE_USAGE)
    product = await one_product(ctx.unit, words[0], f"解冻 {{sku}} {words[1]} {words[2]}")
    warehouse = words[1].upper()
    await diagnose_pair(ctx.unit, product.sku, warehouse)  # names an unknown warehouse exactly
    await unfreeze(ctx.unit, product.sku, warehouse, ctx.sender.name, words[2], ctx.now)
    return [text(f"已解冻 {product.name}（{product.sku}）@ {warehouse}：{words[2]}（{ctx.sender.name}）。"
                 f"该商品在该仓库可以正常出入库了；冻结日志已记录，发送「诊断 {product.sku} {warehouse}」查看。")]
