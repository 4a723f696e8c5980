"""盘点 in chat (open, add lines, show, submit), then the discrepancy's types (差异, or the card's buttons) and
photos (凭证 then a picture); once complete it goes to the three-party sign-off."""

from __future__ import annotations

from cards.model import Button, Message, text
from core.approvals import engine, evidence
from core.approvals.policy import policy_for
from core.approvals.views import approval_view
from core.errors import DomainError
from core.ledger import count_sheet
from core.ledger.doctypes import DISCREPANCY_TYPES
from core.messaging.recipients import ToRole
from core.models import Document
from core.types import fq
from handlers.approval_cards import approval_card
from handlers.approvals import actor, ask_to_sign
from handlers.borrow import signature_photo
from handlers.picking import one_product
from handlers.registry import Context, action, command, picture

COUNT_USAGE = ("盘点 开始 <仓库>；盘点 <SKU|条码|名称> <数量>[单位] [批次]；盘点（查看）；盘点 提交。"
               "例如：盘点 开始 CW、盘点 RM-CREAM 10kg、盘点 奶油 3箱")
COUNT_ROLES = ("warehouse", "manager")
PHOTOS_SHOWN = 3  # evidence photos sent to each signer with the card


def _sheet_text(s: count_sheet.CountSheet) -> str:
    head = f"**盘点单 {s.doc.number}**（{s.warehouse} {s.warehouse_name}）"
    if not s.lines:
        return head + "\n还没有录入。发送：盘点 <SKU或条码> <数量>，例如：盘点 RM-CREAM 10kg"
    rows = [f"> {ln.line_no}. {ln.name}（{ln.sku}）{' 批次 ' + ln.batch if ln.batch else ''}：{fq(ln.counted)}{ln.unit}"
            + (f"（= {fq(ln.stock_qty)}{ln.stock_unit}）" if ln.unit != ln.stock_unit else "") for ln in s.lines]
    return "\n".join([head, *rows, f"共 {len(s.lines)} 行。录完发送「盘点 提交」。"])


def type_buttons(doc: Document) -> tuple[Button, ...]:
    """Buttons choosing the type of the first line still without one (one line at a time: at most 5 buttons)."""
    line = next((ln for ln in doc.lines if not ln.discrepancy_type), None)
    if line is None:
        return ()
    return tuple(Button(f"第{line.line_no}行：{t}", f"disc:{doc.id}:{line.line_no}:{i}")
                 for i, t in enumerate(DISCREPANCY_TYPES, start=1))


async def discrepancy_card(ctx: Context, doc: Document, headline: str = "", card_id: str | None = None) -> Message:
    """The discrepancy before sign-off: its lines, what is missing, the type buttons and how to add photos."""
    view = await approval_view(ctx.unit, doc.number)
    missing = await evidence.missing_for_sign_off(ctx.unit, doc)
    base = approval_card(view, ctx.settings.timezone, headline=headline)
    todo = [f"送签前还需要：{'；'.join(missing)}",
            "选类型：点下面的按钮，或发送「差异 " + doc.number + " <行号> <类型> [说明]」（类型："
            + "、".join(DISCREPANCY_TYPES) + "）",
            f"传照片：先发送「凭证 {doc.number}」，再发图片"] if missing else []
    return Message("card", title=f"盘点差异 {doc.number}：待补充", text="\n".join([base.text, *todo]),
                   buttons=type_buttons(doc), card_id=card_id)


async def to_sign_off_if_ready(ctx: Context, doc: Document) -> Message:
    """Open the sign-off once every line has a type and a photo is kept, else say what is missing."""
    if await evidence.missing_for_sign_off(ctx.unit, doc):
        return await discrepancy_card(ctx, doc, card_id=ctx.card_ref)
    if doc.status != "submitted":  # rejected or withdrawn: fixed, it goes again by 重新提交
        return text(f"差异单 {doc.number} 已补充完整。发送「重新提交 {doc.number}」再次送签。")
    policy = policy_for(ctx.settings, doc.type)
    assert policy is not None
    await engine.open_round(ctx.unit, doc, policy, actor(ctx), ctx.now)
    view = await approval_view(ctx.unit, doc.number)
    await ask_to_sign(ctx, view, headline=f"{ctx.sender.name} 提交了盘点差异，请三方会签")
    photos = await evidence.evidence_photos(ctx.unit, doc, PHOTOS_SHOWN)
    for role in view.roles_to_ask():  # the signers see the evidence itself, not only its count on the card
        for i, data in enumerate(photos, start=1):
            ctx.tell(ToRole(role), Message("image", title=f"差异单 {doc.number} 凭证照片 {i}/{len(photos)}", png=data))
    roles = "、".join(r for r in ("库管", "采购", "销售"))
    return approval_card(view, ctx.settings.timezone, card_id=ctx.card_ref,
                         headline=f"差异单 {doc.number} 资料齐全，已送 {roles} 三方会签")


@command("盘点", "count", summary="盘点：开一张盘点单，逐行录入实盘数量，提交后生成差异单",
         usage=COUNT_USAGE, roles=COUNT_ROLES, writes=True)
async def count(ctx: Context, args: str) -> list[Message]:
    """盘点 开始 <仓库> | 盘点 <商品> <数量> [批次] | 盘点 | 盘点 提交."""
    words = args.split()
    s, me = ctx.unit, ctx.sender.id
    if words[:1] in (["开始"], ["start"]):
        if len(words) < 2:
            raise DomainError("NO_WAREHOUSE", "请告诉我盘点哪个仓库", "用法：盘点 开始 <仓库编码>，例如：盘点 开始 CW")
        doc, new = await count_sheet.open_count(s, ctx.settings, me, words[1], ctx.now)
        sheet = await count_sheet.sheet(s, doc)
        lead = "已开始盘点" if new else "你在这个仓库已有进行中的盘点，继续录入即可"
        return [Message("markdown", title="盘点", text=f"{lead}。\n" + _sheet_text(sheet))]
    if not words:
        doc = await count_sheet.current_count(s, me)
        return [Message("markdown", title="盘点", text=_sheet_text(await count_sheet.sheet(s, doc)))]
    if words[0] in ("提交", "submit"):
        doc = await count_sheet.current_count(s, me)
        disc = await count_sheet.submit_count(s, ctx.settings, doc, ctx.now)
        if disc is None:
            return [text(f"盘点单 {doc.number} 已提交：账实相符，没有差异。")]
        card = await discrepancy_card(ctx, disc, headline=f"盘点单 {doc.number} 已提交，{len(disc.lines)} 行有差异")
        return [card]
    if len(words) < 2:
        raise DomainError("BAD_ARGS", f"「盘点 {args}」缺少数量", "用法：" + COUNT_USAGE)
    doc = await count_sheet.current_count(s, me)
    batch = words[2] if len(words) > 2 else ""
    product = await one_product(s, words[0], "盘点 {sku} " + " ".join(words[1:]))
    qty, unit = count_sheet.parse_quantity(words[1], product)
    line = await count_sheet.set_line(s, ctx.settings, doc, product, qty, unit, batch, ctx.now)
    sheet = await count_sheet.sheet(s, doc)
    return [Message("markdown", title="盘点",
                    text=f"已记录第 {line.line_no} 行：{product.name} {fq(qty)}{unit}\n" + _sheet_text(sheet))]


@command("差异", "discrepancy", summary="为盘点差异单的一行选择差异类型",
         usage="差异 <单号> <行号> <类型> [说明]，例如：差异 CY20261206001 1 客户借货未还 王记借了2kg",
         roles=COUNT_ROLES, writes=True)
async def set_type(ctx: Context, args: str) -> list[Message]:
    """The text alternative to the type buttons."""
    words = args.split(maxsplit=3)
    if len(words) < 3 or not words[1].isdigit():
        raise DomainError("BAD_ARGS", "差异需要单号、行号和类型",
                          "用法：差异 <单号> <行号> <类型> [说明]；类型：" + "、".join(DISCREPANCY_TYPES))
    doc = await evidence.discrepancy_for_edit(ctx.unit, words[0])
    await evidence.set_type(ctx.unit, doc, int(words[1]), words[2], words[3] if len(words) > 3 else "")
    return [await to_sign_off_if_ready(ctx, doc)]


@action("disc", summary="选择盘点差异类型", roles=COUNT_ROLES)
async def type_click(ctx: Context, rest: str) -> list[Message]:
    """disc:{document id}:{line no}:{type no} — a type button on the discrepancy card."""
    try:
        doc_id, line_no, kind = (int(x) for x in rest.split(":"))
    except ValueError:
        raise DomainError("BAD_BUTTON", "这个按钮已失效或无法识别", "请发送「单据 <单号>」查看差异单") from None
    found = await ctx.unit.get(Document, doc_id)
    if found is None:
        raise DomainError("STALE_CARD", "这张差异单不存在", "请发送「单据」查看你的单据")
    doc = await evidence.discrepancy_for_edit(ctx.unit, found.number)
    await evidence.set_type(ctx.unit, doc, line_no, str(kind))
    return [await to_sign_off_if_ready(ctx, doc)]


@command("凭证", "photo", summary="为单据上传凭证照片：先发本命令，再发图片",
         usage="凭证 <单号>，然后发送图片，例如：凭证 CY20261206001", writes=True)
async def expect_photo(ctx: Context, args: str) -> list[Message]:
    """The sender's next picture is kept with this document."""
    if not args.split():
        raise DomainError("NO_NUMBER", "请告诉我照片属于哪张单据", "用法：凭证 <单号>，然后发送图片")
    doc = await evidence.discrepancy_for_edit(ctx.unit, args.split()[0])
    await evidence.expect_photo(ctx.unit, ctx.sender.id, doc, ctx.now)
    minutes = int(evidence.UPLOAD_WINDOW.total_seconds() // 60)
    return [text(f"请在 {minutes} 分钟内发送单据 {doc.number} 的凭证照片（PNG 或 JPEG，不超过 "
                 f"{evidence.MAX_PHOTO // 1024 // 1024} MB），可以发多张。")]


@picture(summary="接收凭证照片和客户签字照片")
async def photo(ctx: Context, _args: str) -> list[Message]:
    """A picture: kept with the document the sender named in 凭证 (checked: PNG/JPEG, size), or after 签字 the
    customer's signature on a borrow slip."""
    assert ctx.picture is not None
    upload = await evidence.awaited_upload(ctx.unit, ctx.sender.id, ctx.now)
    if upload is None:
        raise DomainError("NO_PHOTO_REQUEST", "收到图片，但不知道它属于哪张单据",
                          "请先发送「凭证 <单号>」（盘点差异）或「签字 <借条号>」（客户签字），再发图片")
    found, kind = upload
    if kind == evidence.SIGNATURE:
        return await signature_photo(ctx, found)
    doc = await evidence.discrepancy_for_edit(ctx.unit, found.number)
    row, new = await evidence.attach_photo(ctx.unit, doc, ctx.picture.data, ctx.sender.id, ctx.platform, ctx.now)
    said = (f"已保存凭证照片（{row.size // 1024 or 1} KB）到单据 {doc.number}。" if new
            else f"这张照片已经保存在单据 {doc.number} 中。")
    return [text(said), await to_sign_off_if_ready(ctx, doc)]
