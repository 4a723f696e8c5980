"""单据 <单号>: a document's status, lines, sign-off, photos, trail and related documents; 单据: my recent ones."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from cards.model import Message
from core.approvals.views import DocumentDetail, document_detail, recent_documents
from core.ledger.doctypes import STATUS_ZH, doc_type
from handlers.approval_cards import line_text, steps_text, trail_text
from handlers.approvals import person
from handlers.registry import Context, command

MAX_RECENT = 10


def _related(rows: list[tuple[str, str, str]]) -> str:
    return "、".join(f"{doc_type(t).name_zh} {n}（{STATUS_ZH[s]}）" for n, t, s in rows)


def detail_text(d: DocumentDetail, tz: ZoneInfo) -> str:
    """The text of 单据 <单号> (markdown, as WeCom and DingTalk show it)."""
    doc = d.view.document.doc
    out = [f"**{doc_type(doc.type).name_zh} {doc.number}** · {STATUS_ZH[doc.status]}"
           + (f" · 提交人 {d.view.requester}" if d.view.requester else "")]
    when = [f"创建 {doc.created_at.astimezone(tz):%m-%d %H:%M}"]
    if doc.submitted_at:
        when.append(f"提交 {doc.submitted_at.astimezone(tz):%m-%d %H:%M}")
    if doc.posted_at:
        when.append(f"过账 {doc.posted_at.astimezone(tz):%m-%d %H:%M}")
    out.append("，".join(when))
    out += [f"> {x}" for x in line_text(d.view, limit=50)]
    if d.view.steps:
        out.append(f"签核（第 {d.view.approval.round if d.view.approval else 1} 轮）：" + steps_text(d.view, tz))
    if doc.reject_reason and doc.status in ("rejected", "draft"):
        out.append(f"驳回原因：{doc.reject_reason}")
    if d.attachments:
        out.append(f"凭证照片 {len(d.attachments)} 张：" + "；".join(
            f"#{a.id} {a.uploaded_by or '—'} {a.at.astimezone(tz):%m-%d %H:%M}（{a.size // 1024 or 1} KB）"
            for a in d.attachments))
    if d.refers_to:
        out.append("关联单据：" + _related(d.refers_to))
    if d.referred_by:
        out.append("由此产生：" + _related(d.referred_by))
    if d.trail:
        out.append("审批记录：")
        out += [f"- {x}" for x in trail_text(d.trail, tz)]
    return "\n".join(out)


@command("单据", "doc", "查单", summary="查看单据的状态、明细、签核进度和审批记录；不带单号列出我最近的单据",
         usage="单据 <单号>，例如：单据 CY20261206001；或只发「单据」")
async def show(ctx: Context, args: str) -> list[Message]:
    """One document in full, or the sender's recent documents (a newcomer finds their numbers here)."""
    tz = ctx.settings.timezone
    number = args.split()[0] if args.split() else ""
    async with ctx.db.read() as s:
        if number:
            return [Message("markdown", title=f"单据 {number}", text=detail_text(await document_detail(s, number), tz))]
        docs = await recent_documents(s, person(ctx), MAX_RECENT)
    if not docs:
        return [Message("text", text="你还没有经手过单据。盘点请发「盘点 开始 <仓库>」，发送「帮助」查看全部命令。")]
    lines = [f"**你最近的 {len(docs)} 张单据**（发送「单据 <单号>」查看详情）："]
    lines += [f"- {d.number} {doc_type(d.type).name_zh} · {STATUS_ZH[d.status]} · "
              f"{d.created_at.astimezone(tz):%m-%d %H:%M}" for d in docs]
    return [Message("markdown", title="我的单据", text="\n".join(lines))]
