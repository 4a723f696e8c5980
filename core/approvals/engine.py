"""The approval engine: open a round on submit, decide a step (compare-and-set), post on the last approval,
reject, withdraw, hand a step on; every action goes to the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.approvals.evidence import has_signature, missing_for_sign_off
from core.approvals.policy import policy_for
from core.config import Settings
from core.errors import DomainError
from core.ledger.doctypes import ApprovalPolicy, doc_type
from core.ledger.documents import get_document, post_document, reject_document, reopen_document, submit_document
from core.ledger.finance import document_amount
from core.ledger.freeze import freeze_held
from core.messaging.people import Person, by_id
from core.models import Document
from core.models.approvals import Approval, ApprovalEvent, ApprovalStep
from core.models.masters import ROLE_ZH
from core.storage import savepoint

DECISION_ZH = {"approved": "通过", "rejected": "驳回", "closed": "关闭"}


@dataclass(frozen=True)
class Actor:
    """Who acts, from where: the person, the platform and the inbound event (for the audit trail)."""

    person: Person
    platform: str = ""
    event_key: str = ""


@dataclass(frozen=True)
class Outcome:
    """What a decision did. kind: "step" (this role signed, others pending), "posted" (the last approval posted
    the document), "post_failed" (posting refused: nothing changed but the audit trail; `error` says why),
    "rejected" (back to the requester)."""

    kind: str
    approval: Approval
    document: Document
    step: ApprovalStep
    error: DomainError | None = None


def _fmt(at: datetime | None, settings: Settings) -> str:
    return f"{at.astimezone(settings.timezone):%m-%d %H:%M}" if at else ""


async def _event(session: AsyncSession, approval: Approval, action: str, actor: Actor | None, now: datetime, *,
                 role: str = "", note: str = "") -> None:
    session.add(ApprovalEvent(approval_id=approval.id, action=action, role=role,
                              user_id=actor.person.id if actor else None, platform=actor.platform if actor else "",
                              event_key=(actor.event_key if actor else "")[:191], note=note, at=now))


async def open_round(session: AsyncSession, doc: Document, policy: ApprovalPolicy, actor: Actor | None,
                     now: datetime) -> Approval:
    """A new round of sign-off for a submitted document: one pending step per required role. A discrepancy
    goes only with a type on every line and a photo (DomainError naming what is missing)."""
    if doc.type == "discrepancy" and (missing := await missing_for_sign_off(session, doc)):
        raise DomainError("NOT_READY", f"差异单 {doc.number} 还不能送签：{'；'.join(missing)}",
                          f"选类型：差异 {doc.number} <行号> <类型>；传照片：先发「凭证 {doc.number}」再发图片")
    last = await latest(session, doc.id)
    roles, sequential = policy.roles_for(document_amount(doc))
    approval = Approval(document_id=doc.id, round=(last.round + 1) if last else 1, status="pending",
                        requester_id=actor.person.id if actor else doc.created_by_id,
                        sequential=sequential, created_at=now)
    session.add(approval)
    await session.flush()
    session.add_all(ApprovalStep(approval_id=approval.id, role=role, seq=i, status="pending")
                    for i, role in enumerate(roles))
    await _event(session, approval, "submit", actor, now)
    await session.flush()
    return approval


async def submit_for_approval(session: AsyncSession, settings: Settings, doc: Document, actor: Actor | None,
                              now: datetime) -> Approval | None:
    """draft → submitted and a round of sign-off when the type needs one (None when it needs none)."""
    if doc_type(doc.type).signed and not await has_signature(session, doc):
        raise DomainError("NO_SIGNATURE", f"{doc_type(doc.type).name_zh} {doc.number} 还没有有效的客户签字，不能送审",
                          f"请先发送「签字 {doc.number}」，再发客户签字的照片（改过明细后需重新签字）")
    await submit_document(session, settings, doc, now)
    policy = policy_for(settings, doc.type)
    if policy is None:
        return None
    return await open_round(session, doc, policy, actor, now)


async def latest(session: AsyncSession, document_id: int, *, lock: bool = False) -> Approval | None:
    """The document's latest round (locked FOR UPDATE on PostgreSQL when asked: decisions on one approval then
    run one after another, so exactly one of three concurrent last approvals sees all three and posts)."""
    stmt = select(Approval).where(Approval.document_id == document_id).order_by(Approval.round.desc()).limit(1)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def _locked(session: AsyncSession, approval_id: int) -> Approval:
    stmt = select(Approval).where(Approval.id == approval_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    approval = (await session.scalars(stmt.execution_options(populate_existing=True))).first()
    if approval is None:
        raise DomainError("NO_APPROVAL", "找不到这个审批", "卡片可能已过期，请发送「待办」查看最新的待办")
    return approval


async def steps_of(session: AsyncSession, approval_id: int) -> list[ApprovalStep]:
    """The steps of an approval in order (fresh from the database)."""
    stmt = (select(ApprovalStep).where(ApprovalStep.approval_id == approval_id).order_by(ApprovalStep.seq)
            .execution_options(populate_existing=True))
    return list(await session.scalars(stmt))


async def _decided_text(session: AsyncSession, settings: Settings, step: ApprovalStep) -> str:
    who = await by_id(session, step.decided_by_id) if step.decided_by_id else None
    return (f"{who.name if who else '他人'} 已于 {_fmt(step.decided_at, settings)} "
            f"{DECISION_ZH.get(step.status, step.status)}")


async def _already(session: AsyncSession, settings: Settings, step: ApprovalStep, doc: Document) -> DomainError:
    """The loser of a race is told who decided the step and when ("陈经理 已于 12-06 10:32 通过")."""
    return DomainError("STEP_DECIDED", f"「{ROLE_ZH[step.role]}」这一步{await _decided_text(session, settings, step)}",
                       f"发送「单据 {doc.number}」查看审批进度")


async def _not_pending(session: AsyncSession, settings: Settings, approval: Approval, doc: Document) -> DomainError:
    """A decision on a closed approval: what closed it, and by whom and when ("陈经理 已于 12-06 10:32 通过")."""
    state = {"approved": "已审批通过并过账", "rejected": "已被驳回", "withdrawn": "已被提交人撤回"}[approval.status]
    decided = [s for s in await steps_of(session, approval.id) if s.decided_at is not None and s.status != "pending"]
    last = max(decided, key=lambda s: s.decided_at, default=None) if approval.status != "withdrawn" else None
    who = f"（{await _decided_text(session, settings, last)}）" if last is not None else ""
    return DomainError("APPROVAL_CLOSED", f"单据 {doc.number} {state}{who}，无需再处理",
                       f"发送「单据 {doc.number}」查看审批记录")


async def _pick_step(session: AsyncSession, settings: Settings, approval: Approval, steps: Sequence[ApprovalStep],
                     person: Person, role: str | None, doc: Document) -> ApprovalStep:
    """The step `person` decides: the named role's, else the first pending one they may take. DomainError
    saying why not (no such role, decided already — by whom and when —, someone else's, out of order)."""
    mine = [s for s in steps if s.decided_by_id == person.id]
    if role is not None:
        found = [s for s in steps if s.role == role]
        if not found:
            raise DomainError("NO_STEP", f"单据 {doc.number} 不需要「{ROLE_ZH.get(role, role)}」签核",
                              f"发送「单据 {doc.number}」查看需要哪些角色签核")
        step = found[0]
        if step.status != "pending":
            raise await _already(session, settings, step, doc)
    else:
        candidates = [s for s in steps if s.status == "pending" and _may_take(s, person)]
        if not candidates:
            handed = [s for s in steps if s.role in person.roles and s.status == "pending" and s.assignee_id]
            held = [s for s in steps if s.role in person.roles and s.status != "pending"]
            if handed and not held:
                candidates = handed  # refused below, naming whom it was handed to
            elif held:
                raise await _already(session, settings, held[0], doc)
            else:
                needed = "、".join(ROLE_ZH[s.role] for s in steps if s.status == "pending")
                raise DomainError("NOT_APPROVER", f"单据 {doc.number} 等待 {needed} 签核，你没有这些角色",
                                  "请让持有该角色的同事处理，或请管理员为你开通角色")
        step = candidates[0]
    if not _may_take(step, person):
        if step.assignee_id is not None:
            who = await by_id(session, step.assignee_id)
            raise DomainError("ASSIGNED", f"「{ROLE_ZH[step.role]}」这一步已转交给 {who.name if who else '他人'}",
                              "请由被转交人处理")
        raise DomainError("NOT_APPROVER", f"「{ROLE_ZH[step.role]}」这一步需要{ROLE_ZH[step.role]}角色签核，"
                          "你没有这个角色", "请让持有该角色的同事处理，或请管理员为你开通角色")
    if mine:
        raise DomainError("ONE_ROLE_EACH", f"你已经以「{ROLE_ZH[mine[0].role]}」身份签核了单据 {doc.number}，"
                          f"同一张单据的「{ROLE_ZH[step.role]}」必须由另一个人签核",
                          f"请让另一位{ROLE_ZH[step.role]}处理")
    if approval.requester_id == person.id and not policy_for(settings, doc.type).requester_may_sign:
        raise DomainError("OWN_REQUEST", f"单据 {doc.number} 是你提交的，不能由你自己审批",
                          f"请让另一位{ROLE_ZH[step.role]}处理")
    if approval.sequential and any(s.status == "pending" and s.seq < step.seq for s in steps):
        first = next(s for s in steps if s.status == "pending")
        raise DomainError("NOT_YET", f"单据 {doc.number} 需要先由{ROLE_ZH[first.role]}签核",
                          "请等待前一步完成后再处理")
    return step


def _may_take(step: ApprovalStep, person: Person) -> bool:
    if step.assignee_id is not None:
        return step.assignee_id == person.id
    return step.role in person.roles


async def _cas(session: AsyncSession, step: ApprovalStep, status: str, person: Person, now: datetime,
               note: str) -> bool:
    t = ApprovalStep.__table__.c
    done = await session.execute(update(ApprovalStep.__table__)
                                 .where(t.id == step.id, t.status == "pending")
                                 .values(status=status, decided_by_id=person.id, decided_at=now, note=note))
    return done.rowcount == 1


async def decide(session: AsyncSession, settings: Settings, number: str, actor: Actor, *, approve: bool,
                 now: datetime, role: str | None = None, reason: str = "", approval_id: int | None = None) -> Outcome:
    """Decide the actor's step of the document's current approval (a card click names the approval and the
    role; a text command names only the document). Approving the last step posts the document in this
    transaction; when posting is refused, the decision is undone (a savepoint), recorded as post_failed, and
    the approval stays open. DomainError when the actor may not decide (the reason and its fix)."""
    doc = await get_document(session, number, lock=True)
    found = await latest(session, doc.id)
    if found is None or (approval_id is not None and found.id != approval_id):
        raise DomainError("STALE_CARD", f"这张卡片对应的审批已结束（单据 {doc.number} 已重新提交或已处理）",
                          f"发送「单据 {doc.number}」查看最新状态，或发送「待办」查看你的待办")
    approval = await _locked(session, found.id)
    if approval.status != "pending":
        raise await _not_pending(session, settings, approval, doc)
    steps = await steps_of(session, approval.id)
    step = await _pick_step(session, settings, approval, steps, actor.person, role, doc)
    if not approve:
        return await _reject(session, settings, approval, doc, step, actor, reason, now)
    nested = await savepoint(session)
    if not await _cas(session, step, "approved", actor.person, now, reason):
        await nested.rollback()
        await session.refresh(step)
        raise await _already(session, settings, step, doc)
    await session.refresh(step)
    if any(s.status == "pending" for s in await steps_of(session, approval.id)):
        await nested.commit()
        await _event(session, approval, "approve", actor, now, role=step.role, note=reason)
        return Outcome("step", approval, doc, step)
    try:
        await post_document(session, settings, doc, now)
    except DomainError as error:
        await nested.rollback()
        await session.refresh(step)
        await freeze_held(session, error, now, actor.person.name)  # a held quantity freezes its pair
        await _event(session, approval, "post_failed", actor, now, role=step.role,
                     note=f"{error.code}: {error.message_zh}")
        return Outcome("post_failed", approval, doc, step, error)
    await nested.commit()
    approval.status, approval.decided_at = "approved", now
    await _event(session, approval, "approve", actor, now, role=step.role, note=reason)
    await _event(session, approval, "posted", actor, now)
    await session.flush()
    return Outcome("posted", approval, doc, step)


async def _reject(session: AsyncSession, settings: Settings, approval: Approval, doc: Document, step: ApprovalStep,
                  actor: Actor, reason: str, now: datetime) -> Outcome:
    if not reason.strip():
        raise DomainError("NO_REASON", "驳回必须填写原因", f"请发送：驳回 {doc.number} <原因>")
    if not await _cas(session, step, "rejected", actor.person, now, reason.strip()):
        await session.refresh(step)
        raise await _already(session, settings, step, doc)
    await _close_round(session, approval, "rejected", now)
    await reject_document(session, doc, reason)
    await _event(session, approval, "reject", actor, now, role=step.role, note=reason.strip())
    await session.refresh(step)
    return Outcome("rejected", approval, doc, step)


async def _close_round(session: AsyncSession, approval: Approval, status: str, now: datetime) -> None:
    t = ApprovalStep.__table__.c
    await session.execute(update(ApprovalStep.__table__).where(t.approval_id == approval.id, t.status == "pending")
                          .values(status="closed"))
    approval.status, approval.decided_at = status, now
    await session.flush()


async def _pending(session: AsyncSession, settings: Settings, number: str) -> tuple[Document, Approval]:
    """The document and its pending approval, locked; DomainError when it has none pending."""
    doc = await get_document(session, number, lock=True)
    found = await latest(session, doc.id)
    if found is None:
        raise DomainError("NO_APPROVAL", f"单据 {doc.number} 没有进行中的审批", f"发送「单据 {doc.number}」查看状态")
    approval = await _locked(session, found.id)
    if approval.status != "pending":
        raise await _not_pending(session, settings, approval, doc)
    return doc, approval


async def withdraw(session: AsyncSession, settings: Settings, number: str, actor: Actor, now: datetime) -> Document:
    """The requester takes a pending document back (→ draft, to fix and submit again)."""
    doc, approval = await _pending(session, settings, number)
    if approval.requester_id != actor.person.id:
        raise DomainError("NOT_REQUESTER", f"只有提交人可以撤回单据 {doc.number}", "请联系提交人撤回，或由审批人驳回")
    await _close_round(session, approval, "withdrawn", now)
    await reject_document(session, doc, "提交人撤回")
    await reopen_document(session, doc)
    await _event(session, approval, "withdraw", actor, now)
    return doc


async def resubmit(session: AsyncSession, settings: Settings, number: str, actor: Actor, now: datetime) -> Approval:
    """A rejected (or withdrawn) document, fixed, goes to a new round; the old decisions stay in the trail."""
    doc = await get_document(session, number, lock=True)
    if doc.status == "rejected":
        await reopen_document(session, doc)
    approval = await submit_for_approval(session, settings, doc, actor, now)
    if approval is None:
        raise DomainError("NO_APPROVAL_NEEDED", f"单据 {doc.number} 不需要审批", "")
    return approval


async def transfer(session: AsyncSession, settings: Settings, number: str, actor: Actor, to: Person,
                   now: datetime) -> ApprovalStep:
    """Hand the actor's pending step on to another holder of the same role (转交)."""
    doc, approval = await _pending(session, settings, number)
    steps = await steps_of(session, approval.id)
    mine = [s for s in steps if s.status == "pending" and _may_take(s, actor.person)]
    if not mine:
        raise DomainError("NOT_APPROVER", f"单据 {doc.number} 没有等你签核的步骤", "只能转交等你签核的步骤")
    step = mine[0]
    if step.role not in to.roles:
        raise DomainError("TRANSFER_ROLE", f"{to.name} 没有「{ROLE_ZH[step.role]}」角色，不能接手这一步",
                          f"请转交给另一位{ROLE_ZH[step.role]}")
    if to.id == actor.person.id:
        raise DomainError("TRANSFER_SELF", "不能转交给自己", f"请转交给另一位{ROLE_ZH[step.role]}")
    step.assignee_id = to.id
    await _event(session, approval, "transfer", actor, now, role=step.role, note=to.name)
    await session.flush()
    return step
