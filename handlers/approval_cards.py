"""The approval card: a document, its lines, who has signed, and — for a role still to sign — its two buttons."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from cards.model import Button, Message
from core.approvals.views import ApprovalView, TrailEntry
from core.ledger.doctypes import STATUS_ZH, doc_type
from core.models.masters import ROLE_ZH
from core.types import fq

MAX_LINES = 8
ACTION_ZH = {"submit": "提交", "approve": "通过", "reject": "驳回", "withdraw": "撤回", "transfer": "转交",
             "post_failed": "过账失败", "posted": "已过账"}
STEP_ZH = {"pending": "待签", "approved": "已通过", "rejected": "已驳回", "closed": "已关闭"}
PRICED = ("purchase_request", "purchase_order")  # types whose approver weighs the money: lines show price and amount


def approval_key(view: ApprovalView, role: str, decision: str) -> str:
    """The button key of a role's decision: approval:{approval id}:{role}:{approve|reject}."""
    assert view.approval is not None
    return f"approval:{view.approval.id}:{role}:{decision}"


def copies_group(view: ApprovalView, role: str) -> str:
    """The copy group of a role's cards of one approval (core.messaging.card_copies): approval:{id}:{role}."""
    assert view.approval is not None
    return f"approval:{view.approval.id}:{role}"


def line_text(view: ApprovalView, limit: int = MAX_LINES) -> list[str]:
    """The document's lines as people read them (a discrepancy: book / counted / difference / type)."""
    out = []
    doc = view.document.doc
    for ln in view.document.lines[:limit]:
        if doc.type == "discrepancy":
            raw = {x.line_no: x for x in doc.lines}[ln.line_no]
            book, counted = raw.book_qty, raw.counted_qty
            kind = raw.discrepancy_type or "未选类型"
            out.append(f"{ln.line_no}. {ln.name}（{ln.sku}）{ln.warehouse}：账面 {fq(book)} / 实盘 {fq(counted)} / "
                       f"差异 {fq(ln.stock_qty)}{ln.stock_unit}，{kind}")
            now = view.book_now.get(ln.line_no)
            if now is not None and book is not None and now != book:
                out.append(f"   ⚠ 盘点后库存有变动：账面现为 {fq(now)}{ln.stock_unit}（盘点时 {fq(book)}），"
                           f"按实盘计差异现为 {fq((counted or 0) - now)}{ln.stock_unit}；过账仍按盘点时的差异 "
                           f"{fq(ln.stock_qty)}{ln.stock_unit}，如需按新数重盘请驳回")
        else:
            batch = f" 批次 {ln.batch}" if ln.batch else ""
            price = ""
            if doc.type in PRICED:
                raw = {x.line_no: x for x in doc.lines}[ln.line_no]
                if raw.unit_price:
                    price = f" × 单价 {fq(raw.unit_price)} = 金额 {fq(raw.qty * raw.unit_price)}"
            out.append(f"{ln.line_no}. {ln.name}（{ln.sku}）{ln.warehouse}{batch}：{fq(ln.qty)}{ln.unit}{price}")
    if len(view.document.lines) > limit:
        out.append(f"… 另有 {len(view.document.lines) - limit} 行，发送「单据 {doc.number}」查看全部")
    return out


def steps_text(view: ApprovalView, tz: ZoneInfo) -> str:
    """Each role's step: pending, or decided by whom and when."""
    parts = []
    for s in view.steps:
        who = f" {s.decided_by} {s.decided_at.astimezone(tz):%m-%d %H:%M}" if s.decided_by and s.decided_at else ""
        handed = f"（已转交 {s.assignee}）" if s.assignee and s.status == "pending" else ""
        parts.append(f"{ROLE_ZH[s.role]}：{STEP_ZH[s.status]}{who}{handed}")
    return "；".join(parts)


def approval_card(view: ApprovalView, tz: ZoneInfo, role: str | None = None, *, card_id: str | None = None,
                  headline: str = "", group: str = "") -> Message:
    """The card of a document's sign-off. With `role` still pending: its 同意 / 驳回 buttons; otherwise a card
    without buttons (on WeCom, a clicked card is greyed out with the title). card_id updates a card in place.
    A role's card belongs to that role's copy group (every copy is updated after a decision); `group` overrides."""
    doc = view.document.doc
    name = doc_type(doc.type).name_zh
    status = STATUS_ZH[doc.status]
    lines = [headline] if headline else []
    lines += [f"{name} {doc.number} · {status}" + (f" · 提交人 {view.requester}" if view.requester else "")]
    lines += line_text(view)
    if doc.type == "discrepancy":
        lines.append(f"凭证照片：{view.photos} 张" if view.photos else "凭证照片：还没有")
    if doc.type in PRICED and doc.note:
        lines.append(f"原因：{doc.note}")
    if view.steps:
        lines.append("签核：" + steps_text(view, tz))
    if doc.reject_reason and doc.status in ("rejected", "draft"):
        lines.append(f"驳回原因：{doc.reject_reason}")
    buttons: tuple[Button, ...] = ()
    title = f"待签核：{name} {doc.number}"
    if role is not None and role in view.pending_roles():
        buttons = (Button("同意", approval_key(view, role, "approve"), "primary"),
                   Button("驳回", approval_key(view, role, "reject"), "danger"))
        lines.append(f"你以「{ROLE_ZH[role]}」身份签核。也可发送：同意 {doc.number} 或 驳回 {doc.number} <原因>")
    else:
        title = headline or f"{name} {doc.number} {status}"
    if not group and role is not None and view.approval is not None:
        group = copies_group(view, role)
    return Message("card", title=title, text="\n".join(lines), buttons=buttons, card_id=card_id, group=group)


def trail_text(entries: list[TrailEntry], tz: ZoneInfo) -> list[str]:
    """The audit trail as lines: when, round, who, what, on which platform, note."""
    out = []
    for e in entries:
        role = f"（{ROLE_ZH.get(e.role, e.role)}）" if e.role else ""
        note = f"：{e.note}" if e.note else ""
        where = f" · {e.platform}" if e.platform else ""
        out.append(f"{e.at.astimezone(tz):%m-%d %H:%M} 第{e.round}轮 {e.user or '系统'}{role} "
                   f"{ACTION_ZH.get(e.action, e.action)}{note}{where}")
    return out
