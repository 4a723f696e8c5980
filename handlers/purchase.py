"""采购申请 (with the replenishment engine's suggestion and its why) → the manager's sign-off → 采购订单 placed and
the purchaser told → 采购单 (open orders) → 收货 (receipts against an order, with the payable)."""

from __future__ import annotations

import re
from decimal import Decimal

from cards.model import Message, text
from core.approvals.views import approval_view
from core.errors import DomainError
from core.ledger import purchasing
from core.ledger.doctypes import STATUS_ZH
from core.ledger.purchasing import OrderView, PurchaseRequest, Receipt, ReceiptLine
from core.messaging.recipients import ToUser
from core.models import Document, User
from core.models.masters import ROLE_ZH
from core.types import fq
from handlers.approvals import actor, after_posting, ask_to_sign
from handlers.picking import one_product
from handlers.registry import Context, command

REQUEST_USAGE = ("采购申请 <SKU|条码|名称> [数量] [原因] [供应商 <编码|名称>] [单价 <金额>]。"
                 "不写数量时按补货引擎的建议量（附原因），写了数量则建议量列在旁边。"
                 "例如：采购申请 RM-CREAM、采购申请 淡奶油 6桶 中秋备货、"
                 "采购申请 RM-CHOC 10kg 新品试做 供应商 SUP01 单价 80")
ORDERS_USAGE = "采购单 [采购单号]，例如：采购单、采购单 CG20261207001"
RECEIVE_USAGE = ("收货 <采购单号> [<条码|SKU> <数量> [批次] [到期日]]；不写商品即按未收数量全部收货，"
                 "多个商品用「；」或换行分隔。例如：收货 CG20261207001、收货 CG20261207001 RM-FLOUR-HI 8袋、"
                 "收货 CG20261207001 RM-CREAM 3桶 CR1207A 2027-06-30")
REQUEST_ROLES = ("purchasing", "warehouse", "manager")
RECEIVE_ROLES = ("warehouse", "purchasing")
ORDERS_ROLES = ("purchasing", "warehouse", "manager")
_LINES = re.compile(r"[；;\n]+")
_OPTIONS = {"供应商": "supplier", "单价": "price"}


def yuan(amount: Decimal) -> str:
    """Money as people read it: two decimals when it has at most two (1525.50), else every decimal kept."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents}" if cents == amount else fq(amount)


def _split_options(words: list[str]) -> tuple[list[str], dict[str, str]]:
    """`供应商 X` / `单价 X` (also 供应商:X, 供应商=X) taken out of the words; the rest kept in order."""
    rest: list[str] = []
    found: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        head, sep, tail = re.split(r"([:：=])", w, maxsplit=1) if re.search(r"[:：=]", w) else (w, "", "")
        if head in _OPTIONS and sep and tail:
            found[_OPTIONS[head]] = tail
        elif w in _OPTIONS:
            if i + 1 >= len(words):
                raise DomainError("BAD_ARGS", f"「{w}」后面缺少内容", "用法：" + REQUEST_USAGE)
            found[_OPTIONS[w]] = words[i + 1]
            i += 1
        else:
            rest.append(w)
        i += 1
    return rest, found


def _suggested(req: PurchaseRequest) -> str:
    s = req.suggestion
    if s is None:
        return "补货引擎没有这个商品的建议"
    if s.qty <= 0:
        return f"补货引擎建议：暂不采购（0{s.unit}）"
    qty, unit = purchasing.in_purchase_units(req.product, s.qty)
    return f"补货引擎建议：{fq(qty)}{unit}" + (f"（{fq(s.qty)}{s.unit}）" if unit != s.unit else "")


def _request_lines(req: PurchaseRequest, ctx: Context) -> list[str]:
    p, today = req.product, ctx.now.astimezone(ctx.settings.timezone).date()
    qty = f"{fq(req.qty)}{req.unit}" + (f"（{fq(req.stock_qty)}{p.stock_unit}）" if req.unit != p.stock_unit else "")
    out = [f"{p.name}（{p.sku}）：申请 {qty}，{_suggested(req)}" if req.asked
           else f"{p.name}（{p.sku}）：申请 {qty}，即补货引擎的建议量"]
    if req.suggestion is not None:
        out.append("建议原因：" + purchasing.suggestion_why(req.suggestion, today))
        notes = purchasing.suggestion_notes(req.suggestion)
        if notes:
            out.append("备注：" + "；".join(notes))
    price = (f"单价 {fq(req.unit_price)}/{req.unit}" + (f"（取自上次入库 {req.price_from}）" if req.price_from else "")
             if req.unit_price else "单价未知（没有入库记录，可写「单价 <金额>」）")
    tax = f"，税率 {fq(req.tax_rate * 100)}%" if req.tax_rate else ""
    out.append(f"供应商：{req.supplier.name}（{req.supplier.code}）；{price}{tax}；金额 {yuan(req.amount)}；"
               f"入库仓库 {req.warehouse.code} {req.warehouse.name}")
    if req.doc.note:
        out.append(f"原因：{req.doc.note}")
    if req.notes:
        out.append("⚠ 申请数量" + "、".join(req.notes) + "，请审批人留意")
    return out


@command("采购申请", "申请采购", "pr",
         summary="采购申请：按补货引擎的建议量（附原因）或写明的数量，提交主管审批，批准后生成采购订单",
         usage=REQUEST_USAGE, roles=REQUEST_ROLES, writes=True)
async def request(ctx: Context, args: str) -> list[Message]:
    """采购申请 <商品> [数量] [原因] [供应商 X] [单价 X]."""
    words = args.split()
    if not words:
        raise DomainError("NO_PRODUCT", "请告诉我要采购哪个商品", "用法：" + REQUEST_USAGE)
    product = await one_product(ctx.unit, words[0], "采购申请 {sku} " + " ".join(words[1:]))
    rest, options = _split_options(words[1:])
    qty = unit = None
    if rest and purchasing.looks_like_qty(rest[0]):
        qty, unit = purchasing.parse_qty(rest.pop(0), product)
    price = purchasing.parse_price(options["price"]) if "price" in options else None
    req = await purchasing.request_purchase(ctx.unit, ctx.settings, actor(ctx), product, qty=qty, unit=unit,
                                            reason=" ".join(rest), supplier=options.get("supplier"),
                                            unit_price=price, now=ctx.now)
    view = await approval_view(ctx.unit, req.doc.number)
    body = _request_lines(req, ctx)
    order = "依次" if view.approval is not None and view.approval.sequential else ""
    waiting = "、".join(ROLE_ZH[s.role] for s in view.steps)
    await ask_to_sign(ctx, view, headline=f"{ctx.sender.name} 提交了采购申请，请审批\n" + "\n".join(body))
    head = f"**采购申请 {req.doc.number} 已提交**，等待 {waiting} {order}审批"
    return [Message("markdown", title=f"采购申请 {req.doc.number}",
                    text="\n".join([head, *body, f"发送「单据 {req.doc.number}」查看审批进度。"]))]


def _order_lines(v: OrderView) -> list[str]:
    out = []
    for ln in v.lines:
        p = ln.product
        left = f"，未收 {ln.in_unit(ln.outstanding)}" if ln.outstanding else "，已收齐"
        out.append(f"> {p.name}（{p.sku}）：订购 {ln.in_unit(ln.ordered)}，已收 {ln.in_unit(ln.received)}{left}")
    return out


def _order_head(v: OrderView, ctx: Context) -> str:
    when = v.doc.posted_at or v.doc.created_at
    state = "未收齐" if v.open else ("已收齐（已关闭）" if v.doc.status == "posted" else STATUS_ZH[v.doc.status])
    request_no = f"（申请 {v.request}）" if v.request else ""
    return (f"**{v.doc.number}** · {state} · {v.supplier} · 入 {v.warehouse} · 采购 {v.purchaser} · "
            f"{when.astimezone(ctx.settings.timezone):%m-%d} 下单{request_no}")


@command("采购单", "采购订单", "po", summary="列出未收齐的采购订单：每个商品订购多少、已收多少；采购单 <单号> 看一张",
         usage=ORDERS_USAGE, roles=ORDERS_ROLES)
async def orders(ctx: Context, args: str) -> list[Message]:
    """The open purchase orders, or one order (open or closed)."""
    words = args.split()
    async with ctx.db.read() as s:
        if words:
            doc = await purchasing.the_order(s, words[0])
            v = (await purchasing.order_views(s, [doc]))[0]
            hint = f"到货后发送：收货 {doc.number}（部分到货写商品和数量）" if v.open else ""
            return [Message("markdown", title=f"采购单 {doc.number}",
                            text="\n".join([_order_head(v, ctx), *_order_lines(v), *([hint] if hint else [])]))]
        found = await purchasing.open_orders(s)
    if not found:
        return [text("目前没有未收齐的采购单。采购申请批准后会自动生成采购单；发送「采购申请 <商品>」提交申请。")]
    shown = found[:purchasing.MAX_ORDERS_LISTED]
    more = f"（先显示最早的 {len(shown)} 张）" if len(found) > len(shown) else ""
    lines = [f"**未收齐的采购单：{len(found)} 张**{more}"]
    for v in shown:
        lines += [_order_head(v, ctx), *_order_lines(v)]
    lines.append("收货：收货 <采购单号> [<条码|SKU> <数量> [批次] [到期日]]；不写商品即全部收货")
    return [Message("markdown", title="采购单", text="\n".join(lines))]


def _receipt_lines(args: str) -> tuple[str, list[ReceiptLine] | None]:
    """The order number and the lines to receive (None: everything outstanding)."""
    m = re.match(r"\s*(\S*)\s*(.*)", args, re.S)
    number, rest = (m.group(1), m.group(2)) if m else ("", "")
    if not number:
        raise DomainError("NO_NUMBER", "请告诉我收哪张采购单的货", "用法：" + RECEIVE_USAGE)
    out = []
    for chunk in (c.split() for c in _LINES.split(rest) if c.strip()):
        if len(chunk) < 2 or len(chunk) > 4:
            raise DomainError("BAD_ARGS", f"看不懂收货行「{' '.join(chunk)}」：每行写 <条码|SKU> <数量> [批次] "
                              "[到期日]",
                              "用法：" + RECEIVE_USAGE)
        out.append(ReceiptLine(*chunk))
    return number, out or None


def _receipt_text(r: Receipt, ctx: Context) -> list[str]:
    v = r.order
    head = (f"**已收货：采购入库单 {r.receipt.number}**（采购单 {v.doc.number}，{v.supplier}，入 {v.warehouse}）")
    out = [head]
    by_product = {ln.product.id: ln for ln in v.lines}
    for ln, _stock, typed, batch, expiry in r.lines:
        now_ln = by_product[ln.product.id]
        extra = (f" 批次 {batch}" if batch else "") + (f" 到期 {expiry}" if expiry else "")
        left = f"，未收 {now_ln.in_unit(now_ln.outstanding)}" if now_ln.outstanding else "，已收齐"
        out.append(f"> {ln.product.name}（{ln.product.sku}）{typed}{extra}：订购 {now_ln.in_unit(now_ln.ordered)}，"
                   f"累计已收 {now_ln.in_unit(now_ln.received)}{left}")
    rates = {ln.tax_rate for ln in r.receipt.lines}
    if len(rates) == 1:
        rate = next(iter(rates))
        out.append(f"应付 {yuan(r.payable)} = 金额 {yuan(r.amount)} ×（1 + 税率 {fq(rate * 100)}%）")
    else:
        out.append(f"应付 {yuan(r.payable)} = Σ 各行金额 ×（1 + 税率）；金额合计 {yuan(r.amount)}")
    out.append(f"采购单 {v.doc.number} 已全部收齐，已关闭。" if r.closed
               else f"采购单 {v.doc.number} 还有未收的商品，后续到货再发「收货 {v.doc.number} …」。")
    return out


@command("收货", "到货", summary="按采购单收货：可分批收，不能超收（除非配置允许），过账采购入库并生成应付",
         usage=RECEIVE_USAGE, roles=RECEIVE_ROLES, writes=True)
async def receive(ctx: Context, args: str) -> list[Message]:
    """收货 <采购单号> [<商品> <数量> [批次] [到期日]]…"""
    number, lines = _receipt_lines(args)
    r = await purchasing.receive(ctx.unit, ctx.settings, number, lines, by=ctx.sender.name, now=ctx.now)
    body = _receipt_text(r, ctx)
    purchaser = r.order.doc.created_by_id
    if purchaser is not None and purchaser != ctx.sender.id:
        ctx.tell(ToUser(purchaser), text(f"{ctx.sender.name} 已收货。\n" + "\n".join(body)))
    return [Message("markdown", title=f"收货 {r.receipt.number}", text="\n".join(body))]


@after_posting("purchase_request")
async def order_placed(ctx: Context, doc: Document) -> list[Message]:
    """An approved request placed its order: the purchaser (the product's, else the requester) is told its number."""
    v = await purchasing.order_for_request(ctx.unit, doc)
    if v is None:
        return []
    order = v.doc
    goods = "；".join(f"{ln.product.name}（{ln.product.sku}）{ln.in_unit(ln.ordered)}" for ln in v.lines)
    told = text(f"采购申请 {doc.number} 已批准，已生成采购订单 {order.number}：供应商 {v.supplier}，{goods}，"
                f"入 {v.warehouse}。请向供应商下单；到货后发送「收货 {order.number}」（分批到货："
                f"收货 {order.number} <条码|SKU> <数量> [批次] [到期日]）。发送「采购单」查看未收齐的采购单。")
    for uid in dict.fromkeys((order.created_by_id, doc.created_by_id)):
        if uid is not None and uid != ctx.sender.id:
            ctx.tell(ToUser(uid), told)
    who = await ctx.unit.get(User, order.created_by_id) if order.created_by_id else None
    return [text(f"已生成采购订单 {order.number}（供应商 {v.supplier}，{goods}）"
                 + (f"，已通知采购 {who.name}。" if who is not None and who.id != ctx.sender.id else "。"))]
