"""借货 / 签字 / 归还 / 借条 / 借货统计: a customer borrow slip filled in chat (typed or scanned), signed by the
customer (a photo), approved by the manager (stock on hand → on loan), returned in parts, listed with what is out."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Message, text
from core.approvals import engine, evidence
from core.approvals.views import approval_view
from core.errors import DomainError
from core.ledger import borrow as core
from core.ledger.doctypes import STATUS_ZH
from core.ledger.document_view import document_view
from core.ledger.documents import get_document, post_document
from core.ledger.parties import customer_by
from core.ledger.scan import SCAN_FIX, Scanned, ean13_ok, product_of, require_scanned
from core.ledger.stock import find_products
from core.messaging.recipients import ToUser
from core.models import Customer, Document, Product, Warehouse
from core.models.masters import ROLE_ZH
from core.types import fq
from handlers.approval_cards import approval_card
from handlers.approvals import actor, ask_to_sign
from handlers.picking import one_product
from handlers.registry import Context, command, scan_target

BORROW_ROLES = ("sales", "warehouse", "manager")
EXAMPLE = "借货 C002 6930180079197 2kg CR20261101"
BORROW_USAGE = ("借货 <客户> [仓库] <条码|SKU> <数量> [批次] [归还日期]（可一次写多组「条码 数量 [批次]」；不写归还日期"
                "按 [borrow] default_days 天）；借货 <客户>（开一张空借条，再用「扫码」加商品）；借货（查看草稿）；"
                "借货 改 <行号> <数量>；借货 删 <行号>；借货 提交 [客户]。"
                f"例如：{EXAMPLE} 12-31、借货 C003 CW 6921581187857 20 6941481108660 2 7天、借货 提交")
SIGN_USAGE = "签字 <借条号>，然后发送客户签字的照片，例如：签字 JH20261206001"
RETURN_USAGE = ("归还 <借条号> [<条码|SKU> <数量> [批次]]…（不写商品：全部归还）。"
                "例如：归还 JH20261206001 6930180079197 1kg、归还 JH20261206001")
SLIPS_USAGE = "借条 [客户|借条号]，例如：借条、借条 C003、借条 JH20261206001"
STATS_USAGE = "借货统计 [月份]，例如：借货统计、借货统计 上月、借货统计 2026-11"
NUMBER = re.compile(r"^JH\d+$", re.IGNORECASE)


def _today(ctx: Context) -> date:
    return ctx.now.astimezone(ctx.settings.timezone).date()


# --- how a slip reads -------------------------------------------------------------------------------------------


async def slip_text(s: AsyncSession, doc: Document, today: date) -> str:
    """A slip not lent yet: customer, warehouse, return date, lines, the signature and the next step."""
    view = await document_view(s, doc.number)
    cust = await s.get(Customer, doc.customer_id) if doc.customer_id else None
    wh = await s.get(Warehouse, doc.warehouse_id) if doc.warehouse_id else None
    signed = await core.signatures(s, doc.id)
    entries = {ln.line_no: ln.entry for ln in view.doc.lines}
    tracked = set((await s.scalars(select(Product.sku).where(Product.sku.in_({ln.sku for ln in view.lines}),
                                                             Product.batch_tracked.is_(True)))).all())
    who = f"{cust.code} {cust.name}" if cust else "—"
    out = [f"**借条 {doc.number}**（{STATUS_ZH[doc.status]}）客户 {who} · 从 {wh.code if wh else '—'} 借出 · "
           f"归还日期 {doc.due_date or '未填写'}"]
    for ln in view.lines:
        batch = f"批次 {ln.batch}" if ln.batch else "（批次：先到期先出）" if ln.sku in tracked else ""
        conv = f"（= {fq(ln.stock_qty)}{ln.stock_unit}）" if ln.unit != ln.stock_unit else ""
        how = " · 扫码" if entries.get(ln.line_no) == "scan" else ""
        out.append(f"> {ln.line_no}. {ln.name}（{ln.sku}）{batch}：{fq(ln.qty)}{ln.unit}{conv}{how}")
    if not view.lines:
        code = cust.code if cust else "<客户>"
        out.append(f"还没有商品。添加：借货 {code} <条码> <数量> [批次]，或用「扫码」扫描商品")
    out.append(f"客户签字：已签（{signed} 张照片）" if signed else "客户签字：还没有")
    if doc.status == "draft" and view.lines:
        out.append(f"下一步：发送「借货 提交{'' if cust is None else ' ' + cust.code}」送主管审批" if signed
                   else f"下一步：发送「签字 {doc.number}」，再发客户在借条上签字的照片")
    if doc.reject_reason and doc.status in ("rejected", "draft"):
        out.append(f"驳回原因：{doc.reject_reason}")
    return "\n".join(out)


def _state_text(st: core.SlipState, tz, today: date, *, show_author: bool) -> list[str]:
    """One lent slip in a list: since when, due when, overdue, and each product still out."""
    doc = st.doc
    since = doc.posted_at.astimezone(tz).date() if doc.posted_at else None
    days = (f"{since:%m-%d} 借出（" + (f"{(today - since).days} 天）" if since < today else "今天）")) if since else ""
    late = f" · **逾期 {st.overdue_days} 天**" if st.overdue_days else ""
    due = f" · 归还日期 {doc.due_date:%Y-%m-%d}" if doc.due_date else ""
    author = f" · {st.created_by}" if show_author and st.created_by else ""
    head = f"- **{doc.number}** {st.customer} {st.customer_name}{author} · {days}{due}{late}"
    items = []
    for i in st.items:
        if i.out <= 0:
            continue
        batch = f" 批次 {i.batch}" if i.batch else ""
        returned = f"，已还 {fq(i.returned)}" if i.returned else ""
        items.append(f"{i.name}{batch} 未还 {fq(i.out)}{i.unit}（借 {fq(i.lent)}{returned}）")
    return [head, "  " + "；".join(items)] if items else [head]


# --- products as typed ------------------------------------------------------------------------------------------


async def _product(ctx: Context, query: str, known: dict[str, Product], retype: str) -> Product:
    """The product a typed barcode or SKU names (a name fragment too, where scanning is not required)."""
    found = known.get(query)
    if found is not None:
        return found
    q = query.strip()
    if len(q) == 13 and q.isdigit():
        if not ean13_ok(q):
            raise DomainError("BAD_CHECK_DIGIT", f"条码 {q} 的校验位不对，可能输错了一位",
                              "请核对条码数字（商品包装上条码下方的 13 位数字），或用「扫码」扫描")
        raise DomainError("UNKNOWN_BARCODE", f"没有条码为 {q} 的商品",
                          "请核对条码，或发送「库存 <名称>」查找商品的条码")
    if core.BORROW in ctx.settings.scan_required:
        matches = await find_products(ctx.unit, q, limit=6)
        if not matches:
            raise DomainError("NO_MATCH", f"没有找到与「{q}」匹配的商品", "请核对条码，或发送「库存 <名称>」查找")
        listed = "、".join(f"{m.name} {m.barcode or '（无条码）'}" for m in matches)
        raise DomainError("SCAN_REQUIRED", "借条的商品必须扫码，或输入完整的商品条码和批次号（不能用名称或 SKU）",
                          f"「{q}」匹配到：{listed}。{SCAN_FIX}，或发送完整条码和批次")
    return await one_product(ctx.unit, q, retype)


async def _known(s: AsyncSession, tokens: list[str]) -> dict[str, Product]:
    return await core.products_by_code(s, {t for t in tokens if t})


# --- 借货 --------------------------------------------------------------------------------------------------------


async def _which_draft(ctx: Context, ref: list[str]) -> Document:
    """The draft a 提交/改/删/签字 means: a slip number, a customer, or the sender's only draft."""
    s, me = ctx.unit, ctx.sender.id
    if ref and NUMBER.match(ref[0]):
        doc = await core.slip_for_edit(s, ref[0].upper())
        if doc.created_by_id != me:
            raise DomainError("NOT_YOURS", f"借条 {doc.number} 不是你开的草稿", "只能修改或提交自己开的借条草稿")
        return doc
    if ref:
        customer = await customer_by(s, ref[0])
        drafts = await core.drafts_of(s, me, customer.id)
        if not drafts:
            raise DomainError("NO_DRAFT", f"你没有给 {customer.code} {customer.name} 的借条草稿",
                              f"先添加商品：借货 {customer.code} <条码> <数量> [批次]")
        return await core.slip_for_edit(s, drafts[0].number)
    drafts = await core.drafts_of(s, me)
    if not drafts:
        raise DomainError("NO_DRAFT", "你没有正在填写的借条", f"先添加商品，例如：{EXAMPLE}")
    if len(drafts) > 1:
        custs = {c.id: c for c in [await s.get_one(Customer, d.customer_id) for d in drafts if d.customer_id]}
        listed = "、".join(f"{d.number}（{custs[d.customer_id].code} {custs[d.customer_id].name}）"
                          for d in drafts if d.customer_id)
        first = custs[drafts[0].customer_id].code if drafts[0].customer_id else drafts[0].number
        raise DomainError("WHICH_DRAFT", f"你有 {len(drafts)} 张借条草稿：{listed}",
                          f"请写上客户或借条号，例如：借货 提交 {first}")
    return await core.slip_for_edit(s, drafts[0].number)


async def _submit(ctx: Context, doc: Document) -> list[Message]:
    s, tz, today = ctx.unit, ctx.settings.timezone, _today(ctx)
    await core.check_submittable(s, doc, today)
    doc = await get_document(s, doc.number, lock=True)
    cust = await s.get_one(Customer, doc.customer_id)
    approval = await engine.submit_for_approval(s, ctx.settings, doc, actor(ctx), ctx.now)
    if approval is None:  # [approvals.borrow] may not remove the step, but a policy of None posts at once
        await post_document(s, ctx.settings, doc, ctx.now)
        return [text(f"借条 {doc.number} 已提交并借出（无需审批）。发送「借条」查看。")]
    view = await approval_view(s, doc.number)
    await ask_to_sign(ctx, view, headline=f"{ctx.sender.name} 提交了借条：借给 {cust.code} {cust.name}，"
                                          f"{doc.due_date} 前归还，客户已签字")
    roles = "、".join(ROLE_ZH[r] for r in view.pending_roles())
    return [approval_card(view, tz, headline=f"借条 {doc.number} 已提交，等待{roles}审批；批准后库存转为借出")]


async def _show_drafts(ctx: Context) -> list[Message]:
    drafts = await core.drafts_of(ctx.unit, ctx.sender.id)
    if not drafts:
        return [text(f"你没有正在填写的借条。开一张：{EXAMPLE}（或 借货 <客户>，再扫码）。发送「借条」查看已借出的。")]
    texts = [await slip_text(ctx.unit, d, _today(ctx)) for d in drafts]
    return [Message("markdown", title="借条草稿", text="\n\n".join(texts))]


async def _change(ctx: Context, words: list[str], drop: bool) -> list[Message]:
    """借货 改 <行号> <数量> [客户|单号] / 借货 删 <行号> [客户|单号]."""
    need = 1 if drop else 2
    if len(words) < need or not words[0].isdigit():
        raise DomainError("BAD_ARGS", "请写行号" + ("" if drop else "和新数量"),
                          "用法：借货 删 <行号>，例如：借货 删 2" if drop
                          else "用法：借货 改 <行号> <数量>，例如：借货 改 1 5kg")
    doc = await _which_draft(ctx, words[need:])
    line_no = int(words[0])
    if drop:
        voided = await core.drop_line(ctx.unit, doc, line_no)
        said = f"已删除第 {line_no} 行。"
    else:
        qty, unit = core.parse_qty(words[1])
        change = await core.set_line_qty(ctx.unit, ctx.settings, doc, line_no, qty, unit, ctx.now)
        voided = change.signature_voided
        said = f"已把第 {line_no} 行改为 {fq(change.line.qty)}{change.line.unit}。"
    if voided:
        said += "借条有改动，之前的客户签字已失效，请重新签字。"
    return [Message("markdown", title="借条", text=said + "\n" + await slip_text(ctx.unit, doc, _today(ctx)))]


@command("借货", "borrow", summary="借货：给客户开借条（扫码或输入条码+批次），客户签字后提交主管审批",
         usage=BORROW_USAGE, roles=BORROW_ROLES, writes=True)
async def lend(ctx: Context, args: str) -> list[Message]:
    """借货 <客户> … adds lines to the sender's draft slip for the customer; 借货 提交 / 改 / 删; 借货 shows."""
    words = args.split()
    s, today = ctx.unit, _today(ctx)
    if not words:
        return await _show_drafts(ctx)
    if words[0] in ("提交", "submit"):
        return await _submit(ctx, await _which_draft(ctx, words[1:]))
    if words[0] in ("改", "修改"):
        return await _change(ctx, words[1:], drop=False)
    if words[0] in ("删", "删除"):
        return await _change(ctx, words[1:], drop=True)
    customer = await customer_by(s, words[0])
    rest = words[1:]
    known = await _known(s, rest)
    wh = await core.warehouse_by_code(s, rest[0]) if rest and rest[0] not in known else None
    if wh is not None:
        rest = rest[1:]
    items, due = core.parse_items(rest, set(known), today)
    drafts = await core.drafts_of(s, ctx.sender.id, customer.id)
    if drafts and wh is not None and drafts[0].warehouse_id != wh.id:
        other = await s.get_one(Warehouse, drafts[0].warehouse_id)
        raise DomainError("ONE_WAREHOUSE", f"你给 {customer.code} 的借条草稿 {drafts[0].number} 从 {other.code} 借出，"
                          f"一张借条只从一个仓库借出", f"请先提交 {drafts[0].number}（借货 提交 {customer.code}），"
                          f"再从 {wh.code} 开新借条；或去掉仓库 {wh.code}")
    products = [await _product(ctx, it.query, known, _retype("借货", words, it.query)) for it in items]
    typed = []  # checked before a draft is opened: (item, product, quantity, unit, entry)
    for it, product in zip(items, products, strict=True):
        qty, unit = core.parse_qty(it.qty, product)
        entry = require_scanned(ctx.settings, core.BORROW, ctx.platform, it.query, product, it.batch, scanned=False)
        typed.append((it, product, qty, unit, entry))
    if drafts:
        doc, new = await core.slip_for_edit(s, drafts[0].number), False
    else:
        example = f"借货 {customer.code} CW " + " ".join(rest) if rest else f"借货 {customer.code} CW"
        wh = wh or await core.default_warehouse(s, products[0] if products else None, example)
        doc, new = await core.open_draft(s, ctx.settings, ctx.sender.id, customer, wh, ctx.now)
    said = [f"已开借条 {doc.number}。" if new else ""]
    voided = False
    for it, product, qty, unit, entry in typed:
        change = await core.add_line(s, ctx.settings, doc, product, qty, unit, it.batch, entry, ctx.now)
        voided = voided or change.signature_voided
        ln = change.line
        said.append(f"{'已加到' if change.merged else '已记录'}第 {ln.line_no} 行：{product.name} "
                    f"{fq(ln.qty)}{ln.unit}" + (f" 批次 {ln.batch_code}" if ln.batch_code else "") + "。")
    if due is not None:
        core.set_due(doc, due, today)
        await s.flush()
        said.append(f"归还日期：{due}。")
    if voided:
        said.append("借条有改动，之前的客户签字已失效，请重新签字。")
    head = "".join(x for x in said if x)
    return [Message("markdown", title="借条", text=(head + "\n" if head else "") + await slip_text(s, doc, today))]


def _retype(name: str, words: list[str], query: str) -> str:
    """The message with the product query replaced by {sku}, for a pick list's buttons."""
    return f"{name} " + " ".join("{sku}" if w == query else w.replace("{", "{{").replace("}", "}}") for w in words)


@scan_target(core.BORROW)
async def scan_line(ctx: Context, doc: Document, scanned: Scanned) -> list[Message]:
    """A scan adds one stock unit of the scanned product (and batch, when the code carries it) to the draft slip;
    scanning again adds one more; 借货 改 <行号> <数量> sets the quantity."""
    s, today = ctx.unit, _today(ctx)
    product = await product_of(s, scanned)
    slip = await core.slip_for_edit(s, doc.number)
    if scanned.expiry is not None and scanned.expiry < today:
        raise DomainError("BATCH_EXPIRED", f"扫到的 {product.name} 批次 {scanned.batch} 已于 {scanned.expiry} 过期，"
                          "过期批次不能借出", "请换一件未过期的商品扫码，过期品请走报损流程")
    entry = require_scanned(ctx.settings, core.BORROW, ctx.platform, scanned.barcode, product, scanned.batch,
                            scanned=True)
    change = await core.add_line(s, ctx.settings, slip, product, Decimal(1), product.stock_unit, scanned.batch,
                                 entry, ctx.now)
    ln = change.line
    said = (f"扫码{'加到' if change.merged else '记录'}第 {ln.line_no} 行：{product.name}"
            + (f" 批次 {ln.batch_code}" if ln.batch_code else "") + f"，现为 {fq(ln.qty)}{ln.unit}。"
            f"再扫一次加 1{product.stock_unit}；改数量：借货 改 {ln.line_no} <数量>。")
    if change.signature_voided:
        said += "借条有改动，之前的客户签字已失效，请重新签字。"
    return [Message("markdown", title="借条", text=said + "\n" + await slip_text(s, slip, today))]


# --- 签字 --------------------------------------------------------------------------------------------------------


@command("签字", "sign", summary="为借条上传客户签字照片：先发本命令，再发照片",
         usage=SIGN_USAGE, roles=BORROW_ROLES, writes=True)
async def sign(ctx: Context, args: str) -> list[Message]:
    """The sender's next picture is the customer's signature on this slip."""
    doc = await _which_draft(ctx, args.split()[:1])
    if not await core.line_count(ctx.unit, doc):
        raise DomainError("EMPTY_SLIP", f"借条 {doc.number} 还没有任何商品，客户签字前先把借的商品记上",
                          f"例如：{EXAMPLE}")
    await evidence.expect_photo(ctx.unit, ctx.sender.id, doc, ctx.now, kind=evidence.SIGNATURE)
    minutes = int(evidence.UPLOAD_WINDOW.total_seconds() // 60)
    return [text(f"请在 {minutes} 分钟内发送客户在借条 {doc.number} 上签字的照片（PNG 或 JPEG，不超过 "
                 f"{evidence.MAX_PHOTO // 1024 // 1024} MB）。")]


async def signature_photo(ctx: Context, doc: Document) -> list[Message]:
    """The picture after 签字 <借条号>: kept as the customer's signature on the draft slip (the picture handler of
    handlers.counts routes it here)."""
    assert ctx.picture is not None
    slip = await core.slip_for_edit(ctx.unit, doc.number)
    row, new = await evidence.attach_photo(ctx.unit, slip, ctx.picture.data, ctx.sender.id, ctx.platform, ctx.now,
                                           kind=evidence.SIGNATURE)
    if not new and row.kind != evidence.SIGNATURE:
        raise DomainError("OLD_SIGNATURE", "这张照片是借条改动之前的签字，不能用于改动后的借条",
                          f"请让客户在改动后的借条上重新签字并拍照，再发送「签字 {slip.number}」和新照片")
    said = (f"已保存客户签字（{row.size // 1024 or 1} KB）到借条 {slip.number}。" if new
            else f"这张签字照片已经保存在借条 {slip.number} 中。")
    return [text(said), Message("markdown", title="借条", text=await slip_text(ctx.unit, slip, _today(ctx)))]


# --- 归还 --------------------------------------------------------------------------------------------------------


@command("归还", "还货", summary="登记客户归还借货（部分或全部），立即入库",
         usage=RETURN_USAGE, roles=BORROW_ROLES, writes=True)
async def give_back(ctx: Context, args: str) -> list[Message]:
    """归还 <借条号> [<条码|SKU> <数量> [批次]]… — a borrow return posted at once against the slip."""
    words = args.split()
    if not words:
        raise DomainError("NO_NUMBER", "请告诉我归还的是哪张借条", "用法：" + RETURN_USAGE)
    s, today = ctx.unit, _today(ctx)
    number = words[0].upper()
    wants: list[core.ReturnWant] | None = None
    if len(words) > 1:
        known = await _known(s, words[1:])
        items, _ = core.parse_items(words[1:], set(known), today, dates=False)
        wants = []
        for it in items:
            product = await _product(ctx, it.query, known, _retype("归还", words, it.query))
            qty, unit = core.parse_qty(it.qty, product)
            entry = require_scanned(ctx.settings, core.RETURN, ctx.platform, it.query, product, it.batch,
                                    scanned=False)
            wants.append(core.ReturnWant(product, core.to_stock(product, qty, unit), it.batch, entry))
    result = await core.post_return(s, ctx.settings, number, wants, ctx.sender.id, ctx.now)
    back = "；".join(f"{name}{' 批次 ' + b if b else ''} {fq(q)}{u}" for _sku, name, b, q, u in result.back)
    slip = result.slip
    lines = [f"已登记归还 {result.document.number}（借条 {slip.doc.number}，{slip.customer} {slip.customer_name}）："
             f"{back}，已入库 {slip.warehouse}。"]
    if slip.out > 0:
        lines.append("这张借条还有未还：")
        lines += _state_text(slip, ctx.settings.timezone, today, show_author=False)[1:]
    else:
        lines.append(f"借条 {slip.doc.number} 已全部归还 ✅")
    reply = "\n".join(lines)
    if slip.doc.created_by_id and slip.doc.created_by_id != ctx.sender.id:
        ctx.tell(ToUser(slip.doc.created_by_id), text(f"{ctx.sender.name} 登记了归还：" + reply))
    return [Message("markdown", title="归还", text=reply)]


# --- 借条 --------------------------------------------------------------------------------------------------------


@command("借条", "slips", summary="列出我的未还借条：还欠多少、借出多久、是否逾期；借条 <客户> 看一个客户的",
         usage=SLIPS_USAGE, roles=BORROW_ROLES)
async def slips(ctx: Context, args: str) -> list[Message]:
    """My open slips (created by me), a customer's, or one slip."""
    tz, today = ctx.settings.timezone, _today(ctx)
    ref = args.split()[0] if args.split() else ""
    async with ctx.db.read() as s:
        if ref and NUMBER.match(ref):
            return [await _one_slip(s, ref.upper(), tz, today)]
        if ref:
            customer = await customer_by(s, ref)
            lent = await core.open_slips(s, today, customer_id=customer.id)
            waiting = await core.pending_slips(s, customer_id=customer.id)
            title = f"{customer.code} {customer.name} 的借条"
        else:
            lent = await core.open_slips(s, today, created_by=ctx.sender.id)
            waiting = await core.pending_slips(s, created_by=ctx.sender.id)
            title = "我的借条"
        custs = {c.id: c for c in [await s.get(Customer, d.customer_id) for d in waiting if d.customer_id] if c}
    if not lent and not waiting:
        return [text(f"{title}：没有未还的借条。" + ("" if ref else f"开借条：{EXAMPLE}"))]
    overdue = sum(1 for st in lent if st.overdue_days)
    out = [f"**{title}**：未还 {len(lent)} 张" + (f"，其中逾期 {overdue} 张" if overdue else "")]
    for st in lent:
        out += _state_text(st, tz, today, show_author=bool(ref))
    if waiting:
        out.append("未借出：" + "；".join(
            f"{d.number} {custs[d.customer_id].code if d.customer_id in custs else ''} {STATUS_ZH[d.status]}"
            for d in waiting))
    out.append("归还：归还 <借条号> [<条码> <数量>]；详情：借条 <借条号>")
    return [Message("markdown", title=title, text="\n".join(out))]


async def _one_slip(s: AsyncSession, number: str, tz, today: date) -> Message:
    doc = await get_document(s, number)
    if doc.type != core.BORROW:
        raise DomainError("NOT_BORROW", f"单据 {doc.number} 不是借条", f"发送「单据 {doc.number}」查看")
    if doc.status != "posted":
        return Message("markdown", title=f"借条 {doc.number}", text=await slip_text(s, doc, today))
    st = await core.slip_state(s, doc, today)
    head = _state_text(st, tz, today, show_author=True)
    left = sum(1 for i in st.items if i.out > 0)
    done = "已全部归还 ✅" if left == 0 else f"还有 {left} 项未还；归还：归还 {doc.number} [<条码> <数量>]"
    rows = [f"> {i.name}（{i.sku}）{'批次 ' + i.batch if i.batch else ''}：借 {fq(i.lent)}{i.unit}，"
            f"已还 {fq(i.returned)}，未还 {fq(i.out)}" for i in st.items]
    return Message("markdown", title=f"借条 {doc.number}", text="\n".join([head[0], *rows, done]))


# --- 借货统计 ----------------------------------------------------------------------------------------------------


def parse_month(word: str, today: date) -> date:
    """The first day of the month a word names: 本月 / 上月 / 2026-11 / 2026年11月 / 11月 (the latest such month
    not after this one); today's month when empty."""
    w = word.strip()
    if w in ("", "本月", "这个月"):
        return today.replace(day=1)
    if w in ("上月", "上个月"):
        return (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    m = re.fullmatch(r"(\d{4})[-/年.](\d{1,2})月?", w) or re.fullmatch(r"(\d{1,2})月", w)
    if m is not None:
        year, month = (int(m.group(1)), int(m.group(2))) if m.re.groups == 2 else (today.year, int(m.group(1)))
        if 1 <= month <= 12:
            if m.re.groups == 1 and month > today.month:
                year -= 1
            return date(year, month, 1)
    raise DomainError("BAD_MONTH", f"看不懂月份「{word}」",
                      "请写月份，例如：借货统计 2026-11、借货统计 11月 或 借货统计 上月")


def _pct(rate: Decimal | None) -> str:
    return "—" if rate is None else f"{(rate * 100).quantize(Decimal('0.1'))}%"


@command("借货统计", "borrowstats", summary="借货按期归还率：到期的借条中按期归还的比例，按客户和合计",
         usage=STATS_USAGE, roles=BORROW_ROLES)
async def stats(ctx: Context, args: str) -> list[Message]:
    """Return rate of the month = returned by the due date ÷ lent, of the slips due in the month and past due."""
    today = _today(ctx)
    start, end = core.month_bounds(parse_month(args, today))
    async with ctx.db.read() as s:
        rates = await core.return_rates(s, ctx.settings.timezone, start, end, today)
    title = f"借货归还率 {start:%Y年%m月}"
    if not rates.overall.slips:
        return [text(f"{title}：没有归还日期在该月且已过的借条。")]
    o = rates.overall
    out = [f"**{title}**（归还日期在该月且已过的借条 {o.slips} 张；按期归还 ÷ 借出，按库存单位计）",
           f"合计：{_pct(o.rate)}（按期还 {fq(o.on_time)} / 借出 {fq(o.lent)}"
           + (f"，逾期后才还 {fq(o.late)}" if o.late else "") + (f"，仍未还 {fq(o.out)}" if o.out else "") + "）"]
    for r in rates.customers:
        late = f"，未还清：{'、'.join(r.unreturned)}" if r.unreturned else ""
        out.append(f"- {r.code} {r.name}：{_pct(r.rate)}（{fq(r.on_time)} / {fq(r.lent)}，{r.slips} 张{late}）")
    return [Message("markdown", title=title, text="\n".join(out))]
