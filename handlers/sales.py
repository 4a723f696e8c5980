"""销售订单 / 发货 / 退货: pre-orders, their shipment (scanned where [scan] requires it) and returns."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from cards.model import Message, text
from core.errors import DomainError
from core.ledger import selling
from core.ledger.count_sheet import parse_quantity
from core.ledger.dates import chat_date
from core.ledger.parties import customer_by
from core.ledger.scan import Scanned, product_of, require_scanned
from core.models import Customer, Document, Product, Warehouse
from core.types import fq
from handlers.picking import one_product
from handlers.registry import Context, command, scan_target

ORDER_USAGE = ("销售订单 <客户> <商品> <数量>[单位] <交货日期> [仓库] [单价]；只发「销售订单」列出未发货的订单。"
               "例如：销售订单 C001 FG-MOONCAKE 8箱 12-20")
SHIP_USAGE = ("发货 <销售订单号>，再逐个扫码（企业微信菜单「扫码」/ 控制台扫码栏）或发送 发货 <单号> <条码> [批次]。"
              "例如：发货 XS20261206001")
RETURN_USAGE = "退货 <销售出库单号> <商品> <数量>[单位]，例如：退货 CK20261206001 FG-COOKIE 2"


def _price(word: str) -> Decimal | None:
    try:
        value = Decimal(word.removeprefix("¥").removesuffix("元"))
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


async def _names(ctx: Context, doc: Document) -> tuple[str, str]:
    customer = await ctx.unit.get(Customer, doc.customer_id) if doc.customer_id else None
    wh = await ctx.unit.get(Warehouse, doc.warehouse_id) if doc.warehouse_id else None
    return (customer.name if customer else "—"), (wh.code if wh else "—")


async def _order_lines(ctx: Context, doc: Document) -> str:
    out = []
    for ln in doc.lines:
        p = await ctx.unit.get_one(Product, ln.product_id)
        reserved = f"，预留 {fq(ln.reserved_qty)}{p.stock_unit}" if ln.reserved_qty else ""
        out.append(f"{p.name}（{p.sku}）{fq(ln.qty)}{ln.unit}{reserved}")
    return "；".join(out)


@command("销售订单", "salesorder", summary="登记客户的预订单（交货日期前会进入采购预警；战略客户按比例预留库存）",
         usage=ORDER_USAGE, roles=("sales", "manager"), writes=True)
async def sales_order(ctx: Context, args: str) -> list[Message]:
    """A new sales order, or the open ones."""
    words = args.split()
    if not words or words == ["全部"]:
        orders = await selling.open_orders(ctx.unit, None if words else ctx.sender.id)
        if not orders:
            return [text("没有未发货的销售订单。登记新订单：" + ORDER_USAGE)]
        rows = []
        for o in orders:
            customer, wh = await _names(ctx, o)
            rows.append(f"- {o.number} {customer} {wh} 交货 {o.delivery_date}：{await _order_lines(ctx, o)}")
        return [Message("markdown", title="未发货的销售订单", text="**未发货的销售订单**\n" + "\n".join(rows)
                        + "\n发货：发货 <销售订单号>")]
    if len(words) < 4:
        raise DomainError("BAD_ARGS", "销售订单需要客户、商品、数量和交货日期", "用法：" + ORDER_USAGE)
    customer = await customer_by(ctx.unit, words[0])
    product = await one_product(ctx.unit, words[1], f"销售订单 {words[0]} {{sku}} " + " ".join(words[2:]))
    qty, unit = parse_quantity(words[2], product)
    today = ctx.now.astimezone(ctx.settings.timezone).date()
    delivery = chat_date(words[3], today)
    if delivery is None:
        raise DomainError("BAD_DATE", f"看不懂交货日期「{words[3]}」", "请写 2026-12-20、12-20、明天 或 5天后")
    warehouse, price = None, Decimal(0)
    for w in words[4:]:
        if (p := _price(w)) is not None:
            price = p
        else:
            warehouse = w
    doc = await selling.place_order(ctx.unit, ctx.settings, customer, product, qty, unit, delivery, ctx.sender.name,
                                    ctx.now, warehouse=warehouse, unit_price=price)
    _, wh = await _names(ctx, doc)
    reserve = (f"\n战略客户：已预留 {fq(doc.lines[0].reserved_qty)}{product.stock_unit}"
               if doc.lines[0].reserved_qty else "")
    return [text(f"已登记销售订单 {doc.number}：{customer.name} {product.name} {fq(qty)}{unit}，{delivery} 从 {wh} "
                 f"交货。{reserve}\n到货前发送「发货 {doc.number}」出库。")]


async def _shipment_state(ctx: Context, doc: Document, head: str) -> Message:
    """What is left to scan on the shipment, or the posted result."""
    if doc.status == "posted":
        customer, wh = await _names(ctx, doc)
        amount = sum((ln.qty * ln.unit_price for ln in doc.lines), Decimal(0))
        return text(f"{head}\n已发货：销售出库单 {doc.number}（{customer}，{wh}）已过账，应收 {fq(amount)} 元。")
    pending = selling.pending_lines(doc)
    rows = []
    for ln in doc.lines:
        p = await ctx.unit.get_one(Product, ln.product_id)
        mark = "✓" if ln.entry else "待扫"
        batch = f" 批次 {ln.batch_code}" if ln.batch_code else ""
        rows.append(f"> {mark} {p.name}（{p.sku}，条码 {p.barcode or '—'}）{fq(ln.qty)}{ln.unit}{batch}")
    how = ("在企业微信应用菜单点「扫码」扫商品条码（带批次的码会记下批次）" if ctx.platform == "wecom" else
           f"在控制台扫码栏扫入，或发送：发货 {doc.number} <条码> [批次]")
    return Message("markdown", title=f"发货 {doc.number}", text="\n".join(
        [f"{head}", f"**发货单 {doc.number}**：还有 {len(pending)} 行待扫码", *rows, how]))


async def _confirmed(ctx: Context, doc: Document, product: Product, batch: str, entry: str) -> list[Message]:
    await selling.confirm_line(ctx.unit, doc, product, batch, entry)
    if not selling.pending_lines(doc):
        await selling.ship(ctx.unit, ctx.settings, doc, ctx.now)
    return [await _shipment_state(ctx, doc, f"已确认：{product.name}" + (f" 批次 {batch}" if batch else ""))]


@command("发货", "ship", summary="按销售订单出库：逐个扫码确认后过账，生成应收", usage=SHIP_USAGE,
         roles=("warehouse", "sales", "manager"), writes=True)
async def ship(ctx: Context, args: str) -> list[Message]:
    """发货 <单号> starts (or shows) the shipment; 发货 <单号> <条码> [批次] confirms a line by typing."""
    words = args.split()
    if not words:
        raise DomainError("NO_NUMBER", "请告诉我发哪张销售订单",
                          "用法：" + SHIP_USAGE + "；发送「销售订单」查看未发货的订单")
    doc = await selling.start_shipment(ctx.unit, ctx.settings, words[0], ctx.sender.name, ctx.now)
    if "sales_issue" not in ctx.settings.scan_required:
        for ln in doc.lines:
            ln.entry = "text"
        await selling.ship(ctx.unit, ctx.settings, doc, ctx.now)
        return [await _shipment_state(ctx, doc, f"销售订单 {words[0]}")]
    if len(words) == 1:
        return [await _shipment_state(ctx, doc, f"销售订单 {words[0]} 开始发货（出库必扫商品条码 + 批次）")]
    product = await one_product(ctx.unit, words[1], f"发货 {words[0]} {{sku}} " + " ".join(words[2:]))
    batch = words[2] if len(words) > 2 else ""
    entry = require_scanned(ctx.settings, "sales_issue", ctx.platform, words[1], product, batch, scanned=False)
    return await _confirmed(ctx, doc, product, batch, entry)


@scan_target("sales_issue")
async def ship_scan(ctx: Context, doc: Document, scanned: Scanned) -> list[Message]:
    """A scan on an open shipment confirms the line of that product (with the batch a GS1 code carries)."""
    product = await product_of(ctx.unit, scanned)
    return await _confirmed(ctx, doc, product, scanned.batch, "scan")


@command("退货", "return", summary="客户退货：按销售出库单退回，冲减应收，原单标记已退货", usage=RETURN_USAGE,
         roles=("sales", "warehouse", "manager"), writes=True)
async def sales_return(ctx: Context, args: str) -> list[Message]:
    """退货 <销售出库单号> <商品> <数量>."""
    words = args.split()
    if len(words) < 3:
        raise DomainError("BAD_ARGS", "退货需要销售出库单号、商品和数量", "用法：" + RETURN_USAGE)
    product = await one_product(ctx.unit, words[1], f"退货 {words[0]} {{sku}} {words[2]}")
    qty, unit = parse_quantity(words[2], product)
    done = await selling.return_sale(ctx.unit, ctx.settings, words[0], product, qty, unit, ctx.sender.name, ctx.now)
    return [text(f"已退货：销售退货单 {done.document.number}，{product.name} {fq(qty)}{unit} 退回入库，冲减应收 "
                 f"{fq(done.amount)} 元；原单 {words[0]} 已标记为已退货。")]
