"""Sign-off in chat: the approval card's buttons, 待办, 同意, 驳回, 撤回, 转交, and what everyone is told after."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cards.model import Message, text
from core.approvals import engine
from core.approvals.engine import Actor, Outcome
from core.approvals.views import ApprovalView, approval_view, pending_for
from core.errors import DomainError
from core.messaging.people import Person, by_name
from core.messaging.recipients import ToCopies, ToRole, ToUser
from core.models import Approval, Document
from core.models.masters import ROLE_ZH
from core.reports.plans import owed_by
from handlers.approval_cards import approval_card, copies_group
from handlers.registry import Context, action, command

MAX_TODO = 10

AfterPosting = Callable[[Context, Document], Awaitable[list[Message]]]
AFTER_POSTING: dict[str, AfterPosting] = {}  # document type → what its capability adds once an approval posted it


def after_posting(doc_type: str) -> Callable[[AfterPosting], AfterPosting]:
    """Declare what a capability does once an approval posts a document of `doc_type` (tell people, add lines to the
    decider's reply): e.g. an approved purchase request tells the purchaser its order's number."""

    def register(fn: AfterPosting) -> AfterPosting:
        if doc_type in AFTER_POSTING:
            raise ValueError(f"an after-posting handler for {doc_type!r} is already declared")
        AFTER_POSTING[doc_type] = fn
        return fn

    return register


def person(ctx: Context) -> Person:
    """The sender as messaging and the approval engine see them."""
    s = ctx.sender
    return Person(s.id, s.name, s.roles, s.department)


def actor(ctx: Context) -> Actor:
    """The sender, the platform and the event: who acted, for the audit trail."""
    return Actor(person(ctx), ctx.platform, ctx.event_key)


async def ask_to_sign(ctx: Context, view: ApprovalView, headline: str = "") -> None:
    """Send each role still to sign its card with buttons (every holder of the role gets one)."""
    for role in view.roles_to_ask():
        ctx.tell(ToRole(role), approval_card(view, ctx.settings.timezone, role, headline=headline))


async def announce(ctx: Context, outcome: Outcome) -> list[Message]:
    """After a decision: every copy of each role's card updated (ToCopies: in place where its handle still works,
    else a fresh card), the requester told, and on a refused posting everyone concerned; returns the reply to the
    decider — their copy (the clicked card, by the click's handle) updated."""
    tz, doc = ctx.settings.timezone, outcome.document
    view = await approval_view(ctx.unit, doc.number)
    requester = outcome.approval.requester_id
    signers = {u for u in (s for s in await engine.steps_of(ctx.unit, outcome.approval.id)) if u.decided_by_id}
    signer_ids = {s.decided_by_id for s in signers} - {ctx.sender.id}
    if outcome.kind == "post_failed":
        err = outcome.error
        assert err is not None
        why = f"单据 {doc.number} 签核完成但过账被拦截：{err.message_zh}\n处理办法：{err.fix_zh}\n" \
              f"发送「诊断 {doc.number}」查看全部检查。问题解决后再点「同意」即可过账。"
        for uid in ({requester} | signer_ids) - {ctx.sender.id, None}:
            ctx.tell(ToUser(uid), text(why))
        return [text(why)]
    headline = {"step": f"{ctx.sender.name} 已以「{ROLE_ZH[outcome.step.role]}」身份通过",
                "posted": "全部签核通过，已过账",
                "rejected": f"{ctx.sender.name} 已驳回：{outcome.step.note}"}[outcome.kind]
    card = approval_card(view, tz, headline=headline)
    decided = outcome.step.role
    for role in dict.fromkeys(s.role for s in view.steps):  # every copy of every role's card shows the decision
        skip = (ctx.sender.id, ctx.platform) if role == decided else None  # the decider's: by the reply below
        ctx.tell(ToCopies(copies_group(view, role), skip), approval_card(view, tz, role, headline=headline))
    if outcome.kind == "step" and view.approval is not None and view.approval.sequential:
        await ask_to_sign(ctx, view, headline=f"{ctx.sender.name} 已通过，轮到你签核")  # the next in order
    if requester is not None and requester != ctx.sender.id:
        ctx.tell(ToUser(requester), card)
    if outcome.kind == "rejected" and requester is not None:
        ctx.tell(ToUser(requester), text(f"单据 {doc.number} 被驳回：{outcome.step.note}\n修改后发送「重新提交 "
                                         f"{doc.number}」再次送审，或发送「单据 {doc.number}」查看详情。"))
    reply = approval_card(view, tz, decided, headline=headline, card_id=ctx.card_ref)
    then = AFTER_POSTING.get(doc.type) if outcome.kind == "posted" else None
    return [reply, *(await then(ctx, doc))] if then is not None else [reply]


async def _number_of(ctx: Context, approval_id: int) -> str:
    approval = await ctx.unit.get(Approval, approval_id)
    if approval is None:
        raise DomainError("STALE_CARD", "这张卡片对应的审批不存在", "请发送「待办」查看你的待办")
    doc = await ctx.unit.get(Document, approval.document_id)
    assert doc is not None
    return doc.number


@action("approval", summary="审批卡片的「同意 / 驳回」")
async def click(ctx: Context, rest: str) -> list[Message]:
    """approval:{approval id}:{role}:{approve|reject} — decide that role's step (reject asks for the reason)."""
    try:
        approval_id, role, decision = rest.split(":")
        aid = int(approval_id)
    except ValueError:
        raise DomainError("BAD_BUTTON", "这个按钮已失效或无法识别", "请发送「待办」查看你的待办") from None
    if role not in ROLE_ZH or decision not in ("approve", "reject"):
        raise DomainError("BAD_BUTTON", "这个按钮已失效或无法识别", "请发送「待办」查看你的待办")
    number = await _number_of(ctx, aid)
    if decision == "reject":
        return [text(f"驳回需要写明原因，请发送：驳回 {number} <原因>")]
    outcome = await engine.decide(ctx.unit, ctx.settings, number, actor(ctx), approve=True, now=ctx.now, role=role,
                                  approval_id=aid)
    return await announce(ctx, outcome)


@command("同意", "通过", "approve", summary="同意一张等你签核的单据",
         usage="同意 <单号> [意见]，例如：同意 CY20261206001", writes=True)
async def approve(ctx: Context, args: str) -> list[Message]:
    """The text alternative to the 同意 button."""
    number, _, note = args.partition(" ")
    if not number:
        raise DomainError("NO_NUMBER", "请告诉我要同意哪张单据", "用法：同意 <单号>；发送「待办」查看等你签核的单据")
    outcome = await engine.decide(ctx.unit, ctx.settings, number, actor(ctx), approve=True, now=ctx.now,
                                  reason=note.strip())
    return await announce(ctx, outcome)


@command("驳回", "reject", summary="驳回一张等你签核的单据（必须写原因）",
         usage="驳回 <单号> <原因>，例如：驳回 CY20261206001 数量不对", writes=True)
async def reject(ctx: Context, args: str) -> list[Message]:
    """Reject with a reason: the document goes back to the requester."""
    number, _, reason = args.partition(" ")
    if not number:
        raise DomainError("NO_NUMBER", "请告诉我要驳回哪张单据", "用法：驳回 <单号> <原因>")
    outcome = await engine.decide(ctx.unit, ctx.settings, number, actor(ctx), approve=False, now=ctx.now,
                                  reason=reason)
    return await announce(ctx, outcome)


@command("撤回", "withdraw", summary="撤回自己提交、还在审批中的单据",
         usage="撤回 <单号>，例如：撤回 TZ20261206001", writes=True)
async def withdraw(ctx: Context, args: str) -> list[Message]:
    """The requester takes the document back as a draft."""
    if not args:
        raise DomainError("NO_NUMBER", "请告诉我要撤回哪张单据", "用法：撤回 <单号>")
    doc = await engine.withdraw(ctx.unit, ctx.settings, args.split()[0], actor(ctx), ctx.now)
    view = await approval_view(ctx.unit, doc.number)
    for role in dict.fromkeys(s.role for s in view.steps):  # the copies lose their buttons; the holders are told
        ctx.tell(ToCopies(copies_group(view, role)),
                 approval_card(view, ctx.settings.timezone, role, headline=f"{ctx.sender.name} 已撤回"))
        ctx.tell(ToRole(role), text(f"{ctx.sender.name} 已撤回单据 {doc.number}，无需再签核。"))
    return [text(f"已撤回单据 {doc.number}，现为草稿。修改后发送「重新提交 {doc.number}」再次送审。")]


@command("重新提交", "resubmit", summary="把被驳回或撤回的单据改好后再次送审",
         usage="重新提交 <单号>，例如：重新提交 CY20261206001", writes=True)
async def resubmit(ctx: Context, args: str) -> list[Message]:
    """A new round of sign-off for a fixed document; the old decisions stay in the trail."""
    if not args:
        raise DomainError("NO_NUMBER", "请告诉我要重新提交哪张单据", "用法：重新提交 <单号>")
    approval = await engine.resubmit(ctx.unit, ctx.settings, args.split()[0], actor(ctx), ctx.now)
    doc = await ctx.unit.get(Document, approval.document_id)
    assert doc is not None
    view = await approval_view(ctx.unit, doc.number)
    await ask_to_sign(ctx, view, headline=f"{ctx.sender.name} 重新提交（第 {approval.round} 轮）")
    return [text(f"单据 {doc.number} 已重新提交（第 {approval.round} 轮），等待 "
                 f"{'、'.join(ROLE_ZH[r] for r in view.pending_roles())} 签核。")]


@command("转交", "transfer", summary="把等你签核的一步转交给同角色的同事",
         usage="转交 <单号> <姓名>，例如：转交 CY20261206001 王库管", writes=True)
async def transfer(ctx: Context, args: str) -> list[Message]:
    """Hand a pending step to another holder of the same role (someone on leave must not stall a sign-off)."""
    parts = args.split()
    if len(parts) != 2:
        raise DomainError("BAD_ARGS", "转交需要单号和同事的姓名", "用法：转交 <单号> <姓名>")
    to = await by_name(ctx.unit, parts[1])
    if to is None:
        raise DomainError("NO_USER", f"找不到用户「{parts[1]}」", "请写同事在 jxcbot 中登记的姓名")
    step = await engine.transfer(ctx.unit, ctx.settings, parts[0], actor(ctx), to, ctx.now)
    view = await approval_view(ctx.unit, parts[0])
    ctx.tell(ToUser(to.id), approval_card(view, ctx.settings.timezone, step.role,
                                          headline=f"{ctx.sender.name} 把「{ROLE_ZH[step.role]}」签核转交给你"))
    return [text(f"已把单据 {parts[0]} 的「{ROLE_ZH[step.role]}」签核转交给 {to.name}。")]


@command("待办", "todo", summary="列出等你签核的单据（每张一张卡片）", usage="待办", writes=False)
async def todo(ctx: Context, args: str) -> list[Message]:
    """My pending sign-offs, each as its card with buttons."""
    async with ctx.db.read() as s:
        found = await pending_for(s, ctx.settings, person(ctx))
        views = [(await approval_view(s, number), role) for number, role in found[:MAX_TODO]]
        plans = await owed_by(s, ctx.sender.id, ctx.sender.roles)  # improvement plans owed (handlers/health.py)
    owed = [text("待提交的改进计划：" + "；".join(f"{o.department} {o.period}（{o.score} 分）" for o in plans)
                 + "。发送：改进计划 <内容>")] if plans else []
    if not views:
        return [text("你目前没有待签核的单据。"), *owed]
    more = f"（先显示 {MAX_TODO} 张）" if len(found) > MAX_TODO else ""
    head = text(f"你有 {len(found)} 张待签核的单据{more}：")
    return [head, *(approval_card(v, ctx.settings.timezone, role) for v, role in views), *owed]
