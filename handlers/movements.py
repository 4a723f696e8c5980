"""入库, 出库, 调拨, 报损, 调整 in chat: one message is one document; receipts and issues post at once, transfers,
losses and adjustments go to the manager (and lock their product+warehouse until decided)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from cards.model import Message, text
from core.approvals import engine
from core.approvals.policy import policy_for
from core.approvals.views import approval_view
from core.errors import CheckResult, DomainError
from core.ledger.diagnose import diagnose_document
from core.ledger.doctypes import STATUS_ZH, doc_type
from core.ledger.document_rows import insert_document
from core.ledger.documents import (
    LineInput,
    create_document,
    get_document,
    line_row,
    post_document,
    submit_document,
)
from core.ledger.freeze import freeze_held
from core.ledger.numbering import next_number
from core.ledger.scan import Scanned, product_of, require_scanned
from core.messaging.people import with_role
from core.models import Batch, Customer, Document, DocumentLine, Product, StockBalance, Supplier, Warehouse
from core.models.masters import ROLE_ZH
from core.storage import savepoint
from core.types import fq
from handlers.approval_cards import approval_card
from handlers.approvals import actor, ask_to_sign
from handlers.picking import one_product
from handlers.registry import Context, command, scan_target

ROLES = ("warehouse", "manager")
REFUSED = "库存校验异常"  # what the seed's users see when a posting check refuses a document
MAX_LINES = 50

RECEIVE_USAGE = ("入库 <仓库> [供应商] <SKU|条码|名称> <数量>[单位] [批次] [到期日] [单价]，"
                 "多个商品用「；」或换行分隔；采购入库，无需审批，立即过账。"
                 "例如：入库 CW RM-CREAM 3桶 CR20261206；入库 CW SUP01 RM-CREAM 3桶 CR20261206 2027-06-01 450；"
                 "入库 CW RM-FLOUR-HI 10袋；RM-SUGAR 5袋")
ISSUE_USAGE = ("出库 <仓库> [客户] <条码> <数量>[单位] [批次] [单价]：写客户编码是销售出库（记应收），不写是其他出库；"
               "出库要求扫码：企业微信请先发「出库 <仓库>」再用菜单「扫码」逐件扫，最后发「出库 提交」；"
               "其他平台可输入完整条码和批次。"
               "例如：出库 CW 6930180079197 2kg CR20261101；出库 CW C002 6930180079197 2kg CR20261101 52")
TRANSFER_USAGE = ("调拨 <调出仓库> <调入仓库> <SKU|条码|名称> <数量>[单位] [批次]，多个商品用「；」分隔；"
                  "提交后等主管审批，审批前这些商品在两个仓库的库存变动被锁定。"
                  "例如：调拨 CW S01 RM-CREAM 5kg；调拨 CW S02 RM-MILK 2箱；RM-FLOUR-HI 1袋")
LOSS_USAGE = ("报损 <仓库> <SKU|条码|名称> <数量>[单位] [批次] [原因]；"
              "提交后等主管审批，审批前该商品在该仓库的库存变动被锁定。"
              "例如：报损 CW RM-CREAM 2kg 包装破损；报损 CW RM-CREAM 1桶 CR20261101 过期")
ADJUST_USAGE = ("调整 <仓库> <SKU|条码|名称> <±数量>[单位] [批次] <原因>：+ 为增加，- 为减少，必须写原因；"
                "提交后等主管审批，审批前该商品在该仓库的库存变动被锁定。"
                "例如：调整 CW RM-CREAM -1.5kg 称重误差；调整 CW PK-BOX6 +20个 漏录入库")

_SEP = re.compile(r"[\n；;]+")
_QTY = re.compile(r"^([+＋\-－−]?)(\d+(?:\.\d+)?|\.\d+)\s*([^\d\s.+\-＋－−]*)$")
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
_PRICE = re.compile(r"^(?:单价[:：=]?|[¥￥@])(\d+(?:\.\d+)?)元?$|^(\d+(?:\.\d+)?)元$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_DOC_NUMBER = re.compile(r"^[A-Za-z]{2}\d{8,}$")
_MINUS = ("-", "－", "−")


@dataclass(frozen=True)
class Kind:
    """What one command makes: the words, the document type(s), and which extras a line takes."""

    name: str
    types: tuple[str, ...]
    usage: str
    extras: str  # "receipt" (batch, expiry, price), "issue" (batch, price), "batch", "reason" (batch?, reason)
    signed: bool = False


RECEIVE = Kind("入库", ("purchase_receipt",), RECEIVE_USAGE, "receipt")
ISSUE = Kind("出库", ("other_issue", "sales_issue"), ISSUE_USAGE, "issue")
TRANSFER = Kind("调拨", ("transfer",), TRANSFER_USAGE, "batch")
LOSS = Kind("报损", ("loss",), LOSS_USAGE, "reason")
ADJUST = Kind("调整", ("adjustment",), ADJUST_USAGE, "reason", signed=True)


@dataclass
class Typed:
    """One line as the user typed it: the product words, the quantity word and what follows."""

    query: str
    qty: str
    extras: list[str]


@dataclass
class Parsed:
    """A line resolved: the product, the LineInput for core and the reason words it carried."""

    product: Product
    line: LineInput
    reason: str = ""


@dataclass
class Header:
    """The document-level words: warehouse(s), customer or supplier."""

    warehouse: Warehouse
    to_warehouse: Warehouse | None = None
    customer: Customer | None = None
    supplier: Supplier | None = None
    words: list[str] = field(default_factory=list)  # as typed, for re-running the command from a pick list


# ---------------------------------------------------------------------------------------------------- parsing


def _segments(args: str) -> list[list[str]]:
    """The message split into lines (newline or ；) of words (any whitespace, full-width too)."""
    return [seg.split() for seg in _SEP.split(args) if seg.split()]


def parse_qty(word: str, product: Product, *, signed: bool = False) -> tuple[Decimal, str]:
    """"3桶", "30kg", "+20个", "-1.5" → (quantity, unit); no unit means the product's stock unit. A sign only
    where the command takes one (调整); 0 and negatives elsewhere are refused."""
    m = _QTY.match(word.strip())
    example = f"3{product.purchase_unit}" if product.purchase_unit != product.stock_unit else f"3{product.stock_unit}"
    if m is None:
        raise DomainError("BAD_QTY", f"看不懂数量「{word}」",
                          f"请写数字，可带单位，例如 {example} 或 10{product.stock_unit}"
                          + ("（调整写 + 或 -，例如 -2）" if signed else ""), {"qty": word})
    sign, number, unit = m.groups()
    try:
        qty = Decimal(number)
    except InvalidOperation:
        raise DomainError("BAD_QTY", f"看不懂数量「{word}」", f"请写数字，例如 {example}") from None
    if sign in _MINUS:
        if not signed:
            raise DomainError("BAD_QTY", f"数量「{word}」必须大于 0",
                              "请写正数；要减少库存请用「报损」或「调整 <仓库> <商品> -数量 <原因>」", {"qty": word})
        qty = -qty
    if qty == 0:
        raise DomainError("BAD_QTY", f"数量「{word}」为 0", "请写大于 0 的数量" if not signed else "调整数量不能为 0",
                          {"qty": word})
    return qty, unit or product.stock_unit


def _date(word: str) -> date | None:
    m = _DATE.match(word)
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise DomainError("BAD_DATE", f"到期日「{word}」不是有效日期", "请写成 2027-06-01 这样的日期") from None


def _price(word: str) -> Decimal | None:
    m = _PRICE.match(word)
    return Decimal(m.group(1) or m.group(2)) if m else None


async def _batch_exists(session: AsyncSession, product: Product, code: str) -> bool:
    return await session.scalar(select(Batch.id).where(Batch.product_id == product.id, Batch.code == code)) \
        is not None


async def _extras(session: AsyncSession, kind: Kind, product: Product, words: list[str]) -> dict:
    """Batch, expiry, unit price and reason from the words after the quantity. 入库: a date is the expiry,
    450元 / ¥450 / 单价450 the price, another word the batch (a bare number after it the price). 出库: an existing
    batch of the product, else a number is the price (an unknown batch is refused). 报损 / 调整: the first word is
    the batch only when the product has a batch of that code, the rest is the reason."""
    out: dict = {"batch": "", "expiry": None, "unit_price": Decimal(0), "reason": ""}
    rest = list(words)
    if kind.extras == "issue":
        for w in rest:
            if not out["batch"] and await _batch_exists(session, product, w):
                out["batch"] = w
            elif (p := _price(w) if not _NUMBER.match(w) else Decimal(w)) is not None and not out["unit_price"]:
                out["unit_price"] = p
            else:
                raise DomainError("NO_BATCH", f"{product.sku} 没有批次「{w}」" if not out["batch"]
                                  else f"「{w}」不知道是什么", "用法：" + kind.usage)
        return out
    if kind.extras == "reason":
        if rest and await _batch_exists(session, product, rest[0]):
            out["batch"] = rest.pop(0)
        out["reason"] = " ".join(rest)
        return out
    for w in rest:
        if kind.extras == "receipt" and (d := _date(w)) is not None:
            out["expiry"] = d
        elif kind.extras == "receipt" and (p := _price(w)) is not None:
            out["unit_price"] = p
        elif not out["batch"] and not (kind.extras == "receipt" and _NUMBER.match(w) and out["expiry"]):
            out["batch"] = w
        elif kind.extras == "receipt" and _NUMBER.match(w) and not out["unit_price"]:
            out["unit_price"] = Decimal(w)
        else:
            raise DomainError("BAD_ARGS", f"「{w}」不知道是什么（{product.sku} 这一行已经有批次 {out['batch']}）",
                              "用法：" + kind.usage)
    return out


def _template(kind: Kind, header_words: list[str], lines: list[Typed], at: int) -> str:
    """The whole command again with line `at`'s product as "{sku}": what a pick-list button re-runs."""
    def esc(s: str) -> str:
        return s.replace("{", "{{").replace("}", "}}")
    parts = []
    for i, t in enumerate(lines):
        words = ["{sku}" if i == at else esc(t.query), esc(t.qty), *map(esc, t.extras)]
        parts.append(" ".join(words))
    return " ".join([kind.name, *map(esc, header_words)]) + " " + "；".join(parts)


async def _warehouse(session: AsyncSession, word: str) -> Warehouse | None:
    """The warehouse a word names: its code (any case, an @ in front allowed) or its full name."""
    word = word.removeprefix("@").removeprefix("＠").strip()
    return (await session.scalars(select(Warehouse).where(
        (func.upper(Warehouse.code) == word.upper()) | (Warehouse.name == word)))).first()


async def _no_warehouse(session: AsyncSession, word: str, kind: Kind) -> DomainError:
    codes = (await session.scalars(select(Warehouse.code).order_by(Warehouse.code))).all()
    what = f"「{word}」不是仓库编码" if word else "缺少仓库"
    return DomainError("NO_WAREHOUSE", f"{kind.name}需要先写仓库：{what}",
                       f"仓库编码：{'、'.join(codes[:30]) or '（还没有仓库）'}。用法：{kind.usage}")


async def _party(session: AsyncSession, model: type, word: str):
    return (await session.scalars(select(model).where(
        (func.upper(model.code) == word.upper()) | (model.name == word)))).first()


async def _header(session: AsyncSession, kind: Kind, first: list[str]) -> tuple[Header, list[str]]:
    """The document words at the start of the first line; returns them and the words left for the first line."""
    words = list(first)
    if not words:
        raise await _no_warehouse(session, "", kind)
    wh = await _warehouse(session, words[0])
    if wh is None:
        raise await _no_warehouse(session, words[0], kind)
    head = Header(wh, words=[words.pop(0)])
    if kind is TRANSFER:
        to = await _warehouse(session, words[0]) if words else None
        if to is None:
            raise DomainError("NO_WAREHOUSE", f"调拨需要调入仓库{f'：「{words[0]}」不是仓库编码' if words else ''}",
                              "用法：" + kind.usage)
        head.to_warehouse = to
        head.words.append(words.pop(0))
    elif kind is RECEIVE and words and (supp := await _party(session, Supplier, words[0])) is not None:
        head.supplier = supp
        head.words.append(words.pop(0))
    elif kind is ISSUE and words and (cust := await _party(session, Customer, words[0])) is not None:
        head.customer = cust
        head.words.append(words.pop(0))
    return head, words


def _typed(kind: Kind, segments: list[list[str]]) -> list[Typed]:
    out = []
    for seg in segments:
        if len(seg) < 2:
            raise DomainError("BAD_ARGS", f"「{' '.join(seg)}」缺少数量", "用法：" + kind.usage)
        out.append(Typed(seg[0], seg[1], seg[2:]))
    if not out:
        raise DomainError("BAD_ARGS", f"{kind.name}缺少商品和数量", "用法：" + kind.usage)
    if len(out) > MAX_LINES:
        raise DomainError("TOO_MANY_LINES", f"一条消息最多 {MAX_LINES} 行", "请分成几条发送")
    return out


async def _lines(ctx: Context, kind: Kind, doc_type_code: str, head: Header, typed: list[Typed]) -> list[Parsed]:
    """Each typed line resolved: the product (a pick list when several match), quantity and unit, extras; lines
    of a scan-required type must carry the exact barcode and batch (or come from a scan)."""
    out = []
    for i, t in enumerate(typed):
        product = await one_product(ctx.unit, t.query, _template(kind, head.words, typed, i))
        extras = list(t.extras)
        qty_word = t.qty
        if _QTY.match(qty_word) and not _QTY.match(qty_word).group(3) and extras \
                and extras[0] in (product.stock_unit, product.purchase_unit):
            qty_word += extras.pop(0)  # 「3 箱」 typed with a space
        qty, unit = parse_qty(qty_word, product, signed=kind.signed)
        ex = await _extras(ctx.unit, kind, product, extras)
        try:
            require_scanned(ctx.settings, doc_type_code, ctx.platform, t.query, product, ex["batch"], scanned=False)
        except DomainError as e:
            how = (f"；扫码出库：先发送「出库 {head.warehouse.code}」开单，再用「扫码」逐件扫描，最后发送「出库 提交」"
                   if doc_type_code == "other_issue" else "")
            raise DomainError(e.code, e.message_zh, e.fix_zh + how, e.fields) from None
        out.append(Parsed(product, LineInput(product.sku, qty, unit, batch=ex["batch"], expiry=ex["expiry"],
                                             unit_price=ex["unit_price"]), ex["reason"]))
    return out


# ---------------------------------------------------------------------------------------------------- replies


async def _on_hand(session: AsyncSession, product_id: int, warehouse_id: int) -> Decimal:
    total = await session.scalar(select(func.coalesce(func.sum(StockBalance.qty), 0)).where(
        StockBalance.product_id == product_id, StockBalance.warehouse_id == warehouse_id))
    return Decimal(total or 0)


async def _names(session: AsyncSession, doc: Document) -> tuple[dict[int, Product], dict[int, str]]:
    pids = {ln.product_id for ln in doc.lines}
    products = {p.id: p for p in await session.scalars(select(Product).where(Product.id.in_(pids)))}
    codes = dict((await session.execute(select(Warehouse.id, Warehouse.code))).tuples().all())
    return products, codes


def _line_text(ln: DocumentLine, p: Product, codes: dict[int, str], sign: str = "") -> str:
    conv = f"（= {fq(abs(ln.stock_qty))}{p.stock_unit}）" if ln.unit != p.stock_unit else ""
    batch = f" 批次 {ln.batch_code}" if ln.batch_code else ""
    expiry = f" 到期 {ln.expiry}" if ln.expiry else ""
    qty = fq(ln.qty) if ln.qty < 0 or not sign else f"{sign}{fq(ln.qty)}"
    return f"{ln.line_no}. {p.name}（{p.sku}）{codes[ln.warehouse_id]}{batch}{expiry}：{qty}{ln.unit}{conv}"


async def approvers(session: AsyncSession, roles: Sequence[str], but: int | None = None) -> str:
    """「主管（陈经理、赵主管）」: the roles and the people holding them (not `but`, who may not sign)."""
    parts = []
    for role in roles:
        names = [p.name for p in await with_role(session, role) if p.id != but]
        parts.append(f"{ROLE_ZH.get(role, role)}（{'、'.join(names)}）" if names
                     else f"{ROLE_ZH.get(role, role)}（目前没有可审批的人，请联系管理员开通）")
    return "、".join(parts)


async def _pending_approvers(session: AsyncSession, number: str) -> str:
    """Who must decide the pending document `number` (the roles still to sign and their holders)."""
    try:
        view = await approval_view(session, number)
    except DomainError:
        return ""
    if view.approval is None:
        return ""
    return await approvers(session, view.pending_roles(), view.approval.requester_id)


async def _failures(ctx: Context, doc: Document) -> list[CheckResult]:
    """Every posting check failing for `doc` now (a dry run: nothing it touches is kept)."""
    nested = await savepoint(ctx.unit)
    try:
        return list((await diagnose_document(ctx.unit, ctx.settings, doc.number, ctx.now)).failures)
    finally:
        await nested.rollback()


async def _rule_lines(ctx: Context, found: Sequence[CheckResult]) -> list[str]:
    out = []
    for i, r in enumerate(found, start=1):
        out.append(f"{i}. {r.message_zh}")
        if r.code == "PENDING_LOCK" and (who := await _pending_approvers(ctx.unit, str(r.fields.get("pending", "")))):
            out.append(f"   可审批 {r.fields['pending']} 的人：{who}")
        out.append(f"   处理办法：{r.fix_zh}")
    return out


async def _refusal(ctx: Context, doc: Document, error: DomainError, retry: str) -> list[Message]:
    """A posting check refused `doc`: it stays a draft (nothing moved); every failing rule with its fix, and
    诊断 by document and by product+warehouse."""
    found = [f for f in await _failures(ctx, doc) if not f.warning]
    if not any(f.code == error.code for f in found):
        found.insert(0, CheckResult(error.code, error.message_zh, error.fix_zh, error.fields))
    name = doc_type(doc.type).name_zh
    products, codes = await _names(ctx.unit, doc)
    first = doc.lines[0]
    pair = f"{products[first.product_id].sku} {codes[first.warehouse_id]}"
    body = [f"**{name}被拦截：{REFUSED}**（{len(found)} 项未通过），没有过账，库存没有变化。",
            f"{name}单 {doc.number} 已存为草稿。", *await _rule_lines(ctx, found),
            f"发送「诊断 {doc.number}」查看全部检查及处理办法，或「诊断 {pair}」对照库存账、财务账和实物账；",
            f"问题解决后发送「{retry}」再次提交。"]
    return [Message("markdown", title=f"{name}被拦截：{REFUSED}", text="\n".join(body))]


def _warnings(found: Sequence[CheckResult]) -> list[str]:
    warned = [f for f in found if f.warning]
    if not warned:
        return []
    return ["⚠ 宽松校验：以下问题未拦截，单据已标记「待复核」：", *(f"- {w.message_zh}" for w in warned)]


# ---------------------------------------------------------------------------------------------------- flows


async def _post_now(ctx: Context, kind: Kind, doc: Document) -> list[Message]:
    """Submit and post a receipt or issue in this unit of work; a refused check keeps it a draft."""
    s = ctx.unit
    nested = await savepoint(s)
    try:
        await submit_document(s, ctx.settings, doc, ctx.now)
        result = await post_document(s, ctx.settings, doc, ctx.now)
    except DomainError as e:
        await nested.rollback()
        await s.refresh(doc, ["status", "submitted_at", "posted_at", "needs_review", "review_notes"])
        await freeze_held(s, e, ctx.now, ctx.sender.name)  # a held quantity (g vs kg) freezes its pair
        return await _refusal(ctx, doc, e, f"{kind.name} {doc.number}")
    await nested.commit()
    name = doc_type(doc.type).name_zh
    products, codes = await _names(s, doc)
    sign = "+" if kind is RECEIVE else "-"
    party = ""
    if doc.supplier_id:
        party = f"，供应商 {(await s.get_one(Supplier, doc.supplier_id)).name}"
    if doc.customer_id:
        party = f"，客户 {(await s.get_one(Customer, doc.customer_id)).name}"
    body = [f"**{name}单 {doc.number} 已过账**{party}"]
    for ln in doc.lines:
        p = products[ln.product_id]
        now = await _on_hand(s, ln.product_id, ln.warehouse_id)
        body.append(_line_text(ln, p, codes, sign) + f" → {codes[ln.warehouse_id]} 现有 {fq(now)}{p.stock_unit}")
    body += _warnings(result.warnings)
    if doc.type == "other_issue":
        body.append("（未写客户，按其他出库记账；销售出库请在仓库后写客户编码）")
    return [Message("markdown", title=f"{name} {doc.number}", text="\n".join(body))]


async def _send_for_approval(ctx: Context, kind: Kind, doc: Document) -> list[Message]:
    """A transfer, loss or adjustment: checked now (a refused check keeps it a draft), then submitted and its
    round of sign-off opened; the approvers get the card with 同意 / 驳回."""
    s = ctx.unit
    found = await _failures(ctx, doc)
    errors = [f for f in found if not f.warning]
    if errors:
        e = errors[0]
        return await _refusal(ctx, doc, DomainError(e.code, e.message_zh, e.fix_zh, e.fields),
                              f"{kind.name} {doc.number}")
    approval = await engine.submit_for_approval(s, ctx.settings, doc, actor(ctx), ctx.now)
    name = doc_type(doc.type).name_zh
    if approval is None:  # [approvals] configured away: it posts like a receipt
        result = await post_document(s, ctx.settings, doc, ctx.now)
        return [text(f"{name}单 {doc.number} 已过账（无需审批）。" + "\n".join(["", *_warnings(result.warnings)]))]
    view = await approval_view(s, doc.number)
    what = await _about(s, doc)
    await ask_to_sign(ctx, view, headline=f"{ctx.sender.name} 提交了{name}单{what}，请审批")
    who = await approvers(s, view.roles_to_ask(), ctx.sender.id)
    products, codes = await _names(s, doc)
    pairs = sorted({f"{products[ln.product_id].sku}@{codes[w]}" for ln in doc.lines
                    for w in (ln.warehouse_id, doc.to_warehouse_id) if w is not None})
    head = f"{name}单 {doc.number}{what}已提交，等待 {who}审批，通过后过账"
    card = approval_card(view, ctx.settings.timezone, headline=head)
    extra = [f"审批完成前，{'、'.join(pairs)} 的其他库存变动会被拦截。需要撤回请发送「撤回 {doc.number}」。",
             *_warnings(found)]
    return [Message("card", title=f"{name}单 {doc.number} 待审批", text=card.text + "\n" + "\n".join(extra))]


async def _about(session: AsyncSession, doc: Document) -> str:
    """「（CW → S01）」 for a transfer, 「（原因：包装破损）」 for one with a reason: what the card leaves out."""
    parts = []
    if doc.to_warehouse_id is not None and doc.warehouse_id is not None:
        codes = dict((await session.execute(select(Warehouse.id, Warehouse.code).where(
            Warehouse.id.in_((doc.warehouse_id, doc.to_warehouse_id))))).tuples().all())
        parts.append(f"{codes[doc.warehouse_id]} → {codes[doc.to_warehouse_id]}")
    if doc.note:
        parts.append(f"原因：{doc.note}")
    return f"（{'，'.join(parts)}）" if parts else ""


async def _again(ctx: Context, kind: Kind, number: str) -> list[Message]:
    """「入库 RK…」: a draft of this command's type (refused earlier, or withdrawn) is submitted again."""
    doc = await get_document(ctx.unit, number.upper(), lock=True)
    if doc.type not in kind.types:
        raise DomainError("WRONG_TYPE",
                          f"单据 {doc.number} 是{doc_type(doc.type).name_zh}单，不能用「{kind.name}」提交",
                          f"发送「单据 {doc.number}」查看它")
    if doc.status != "draft":
        raise DomainError("BAD_STATUS", f"单据 {doc.number} 当前状态为「{STATUS_ZH[doc.status]}」，不是草稿",
                          f"发送「单据 {doc.number}」查看进度"
                          + ("；被驳回的单据改好后请用「重新提交」" if doc.status == "rejected" else ""))
    return await _go(ctx, kind, doc)


async def _go(ctx: Context, kind: Kind, doc: Document) -> list[Message]:
    if policy_for(ctx.settings, doc.type) is None and kind in (RECEIVE, ISSUE):
        return await _post_now(ctx, kind, doc)
    return await _send_for_approval(ctx, kind, doc)


async def _mark_entry(doc: Document, entry: str) -> None:
    for ln in doc.lines:
        ln.entry = entry


async def _create(ctx: Context, kind: Kind, args: str) -> Document:
    """The draft a message describes (nothing is kept when any word is wrong)."""
    segments = _segments(args)
    head, rest = await _header(ctx.unit, kind, segments[0] if segments else [])
    typed = _typed(kind, ([rest] if rest else []) + segments[1:])
    code = ("sales_issue" if head.customer else "other_issue") if kind is ISSUE else kind.types[0]
    lines = await _lines(ctx, kind, code, head, typed)
    reasons = [p.reason for p in lines if p.reason]
    if kind is ADJUST and not reasons:
        raise DomainError("NO_REASON", "调整必须写原因", "在数量后写明原因，例如：调整 CW RM-CREAM -1.5kg 称重误差")
    doc = await create_document(
        ctx.unit, ctx.settings, code, [p.line for p in lines], warehouse=head.warehouse.code,
        to_warehouse=head.to_warehouse.code if head.to_warehouse else None,
        customer=head.customer.code if head.customer else None,
        supplier=head.supplier.code if head.supplier else None,
        created_by=ctx.sender.name, note="；".join(dict.fromkeys(reasons)), now=ctx.now)
    await _mark_entry(doc, "text")
    return doc


async def _run(ctx: Context, kind: Kind, args: str) -> list[Message]:
    words = args.split()
    if len(words) == 1 and _DOC_NUMBER.match(words[0]) and await _warehouse(ctx.unit, words[0]) is None:
        return await _again(ctx, kind, words[0])
    doc = await _create(ctx, kind, args)
    return await _go(ctx, kind, doc)


# ---------------------------------------------------------------------------------------------------- commands


@command("入库", "receive", summary="采购入库，立即过账并回复最新库存",
         usage=RECEIVE_USAGE, roles=ROLES, writes=True)
async def receive(ctx: Context, args: str) -> list[Message]:
    """入库 <仓库> [供应商] <商品> <数量>[单位] [批次] [到期日] [单价]；… — a purchase receipt, posted now."""
    return await _run(ctx, RECEIVE, args)


@command("出库", "issue", summary="出库（写客户为销售出库），扫码或输完整条码，立即过账",
         usage=ISSUE_USAGE, roles=ROLES, writes=True)
async def issue(ctx: Context, args: str) -> list[Message]:
    """出库 <仓库> [客户] <条码> <数量> [批次]；出库 <仓库> then scans；出库 提交 — an issue, posted now."""
    words = args.split()
    if words[:1] in (["提交"], ["submit"]):
        return await _submit_scanned(ctx)
    if not words:
        return [await _scanned_sheet(ctx, await _open_issue(ctx))]
    if len(words) == 1 and _QTY.match(words[0]) and await _warehouse(ctx.unit, words[0]) is None:
        return await _set_last_qty(ctx, words[0])
    segments = _segments(args)
    if len(segments) == 1 and not (len(words) == 1 and _DOC_NUMBER.match(words[0])):
        head, rest = await _header(ctx.unit, ISSUE, segments[0])
        if not rest:  # 出库 <仓库> [客户]: open a draft for the scans
            return await _start_scanning(ctx, head)
    return await _run(ctx, ISSUE, args)


@command("调拨", "move", summary="仓库间调拨，主管审批后过账",
         usage=TRANSFER_USAGE, roles=ROLES, writes=True)
async def transfer(ctx: Context, args: str) -> list[Message]:
    """调拨 <调出仓库> <调入仓库> <商品> <数量>[单位] [批次]；… — submitted for the manager."""
    return await _run(ctx, TRANSFER, args)


@command("报损", "loss", summary="报损（损坏、过期），主管审批后过账",
         usage=LOSS_USAGE, roles=ROLES, writes=True)
async def loss(ctx: Context, args: str) -> list[Message]:
    """报损 <仓库> <商品> <数量>[单位] [批次] [原因] — submitted for the manager."""
    return await _run(ctx, LOSS, args)


@command("调整", "adjust", summary="手工调整库存（±数量，写原因），主管审批后过账",
         usage=ADJUST_USAGE, roles=ROLES, writes=True)
async def adjust(ctx: Context, args: str) -> list[Message]:
    """调整 <仓库> <商品> <±数量>[单位] [批次] <原因> — submitted for the manager."""
    return await _run(ctx, ADJUST, args)


# ---------------------------------------------------------------------------------------------------- scanning


async def _open_issue(ctx: Context) -> Document:
    """The sender's newest draft other issue (the one scans go to)."""
    doc = await ctx.unit.scalar(
        select(Document).where(Document.created_by_id == ctx.sender.id, Document.status == "draft",
                               Document.type == "other_issue")
        .order_by(Document.created_at.desc(), Document.id.desc()).limit(1))
    if doc is None:
        raise DomainError("NO_DRAFT", "你没有正在扫码的出库单", "先发送「出库 <仓库>」，例如：出库 CW，再扫码")
    return await get_document(ctx.unit, doc.number)


async def _scanned_sheet(ctx: Context, doc: Document) -> Message:
    products, codes = await _names(ctx.unit, doc)
    wh = codes.get(doc.warehouse_id or 0, "")
    rows = [_line_text(ln, products[ln.product_id], codes) for ln in doc.lines]
    body = [f"**其他出库单 {doc.number}**（{wh}，草稿）", *rows,
            "扫完发送「出库 提交」过账。" if rows else "请用「扫码」逐件扫描商品条码（含批次的码会带上批次）。"]
    return Message("markdown", title=f"出库 {doc.number}", text="\n".join(body))


async def _start_scanning(ctx: Context, head: Header) -> list[Message]:
    """「出库 <仓库>」 alone: an empty draft other issue of the sender's that the scans fill."""
    if head.customer is not None:
        raise DomainError("SCAN_SALES", "扫码出库单只用于其他出库；销售出库请输入完整条码和批次",
                          "发送：出库 <仓库> <客户> <条码> <数量> <批次>，"
                          "例如：出库 CW C002 6930180079197 2kg CR20261101")
    open_ = await ctx.unit.scalar(
        select(Document.number).where(Document.created_by_id == ctx.sender.id, Document.status == "draft",
                                      Document.type == "other_issue", Document.warehouse_id == head.warehouse.id)
        .order_by(Document.id.desc()).limit(1))
    if open_ is not None:
        sheet = await _scanned_sheet(ctx, await get_document(ctx.unit, open_))
        return [text(f"你在 {head.warehouse.code} 已有未提交的出库单 {open_}，继续扫码即可。"), sheet]
    dt = doc_type("other_issue")
    draft = Document(number=await next_number(ctx.unit, dt.prefix, ctx.now, ctx.settings.timezone),
                     type=dt.code, status="draft", warehouse_id=head.warehouse.id, created_by_id=ctx.sender.id,
                     validation_mode=dt.validation_mode(ctx.settings.validation), note="", created_at=ctx.now)
    doc = await insert_document(ctx.unit, draft, [])
    return [text(f"已开出库单 {doc.number}（{head.warehouse.code} {head.warehouse.name}，其他出库）。"
                 "请用「扫码」逐件扫描商品条码和批次，每扫一次记 1 个库存单位"
                 "（扫完一件可发「出库 <数量>」改这一行的数量，例如 出库 2箱）；扫完发送「出库 提交」。")]


async def _set_last_qty(ctx: Context, word: str) -> list[Message]:
    """「出库 5」 after a scan: the last scanned line's quantity becomes 5 (in its unit, e.g. 5箱 or 2.5kg)."""
    doc = await _open_issue(ctx)
    if not doc.lines:
        raise DomainError("NO_LINES", f"出库单 {doc.number} 还没有扫到商品", "请先用「扫码」扫描商品条码，再发数量")
    last = doc.lines[-1]
    product = await ctx.unit.get_one(Product, last.product_id)
    qty, unit = parse_qty(word, product)
    wh = await ctx.unit.get_one(Warehouse, last.warehouse_id)
    row = line_row(doc_type(doc.type), last.line_no,
                   LineInput(product.sku, qty, unit, batch=last.batch_code, expiry=last.expiry), product, wh,
                   ctx.now.astimezone(ctx.settings.timezone).date())
    last.qty, last.unit, last.factor, last.stock_qty = row["qty"], row["unit"], row["factor"], row["stock_qty"]
    await ctx.unit.flush()
    return [await _scanned_sheet(ctx, doc)]


async def _submit_scanned(ctx: Context) -> list[Message]:
    doc = await _open_issue(ctx)
    if not doc.lines:
        raise DomainError("NO_LINES", f"出库单 {doc.number} 还没有扫到商品", "请先用「扫码」扫描商品条码")
    return await _post_now(ctx, ISSUE, doc)


@scan_target("other_issue")
async def scanned_issue_line(ctx: Context, doc: Document, scanned: Scanned) -> list[Message]:
    """A scan on the sender's draft other issue: one stock unit of the scanned product (and batch) more."""
    s = ctx.unit
    product = await product_of(s, scanned)
    doc = await get_document(s, doc.number, lock=True)
    same = next((ln for ln in doc.lines if ln.product_id == product.id and ln.batch_code == scanned.batch), None)
    if same is not None:
        same.qty += 1
        same.stock_qty += 1
    else:
        wh = await s.get_one(Warehouse, doc.warehouse_id)
        row = line_row(doc_type(doc.type), len(doc.lines) + 1,
                       LineInput(product.sku, 1, product.stock_unit, batch=scanned.batch, expiry=scanned.expiry),
                       product, wh, ctx.now.astimezone(ctx.settings.timezone).date())
        s.add(DocumentLine(document_id=doc.id, entry="scan", **row))
    await s.flush()
    lines = list(await s.scalars(select(DocumentLine).where(DocumentLine.document_id == doc.id)
                                 .order_by(DocumentLine.line_no)))
    set_committed_value(doc, "lines", lines)
    return [await _scanned_sheet(ctx, doc)]
