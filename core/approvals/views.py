"""Approvals as people read them: a document's sign-off with who signed when, my pending steps, the trail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.approvals.engine import latest, steps_of
from core.approvals.policy import policy_for
from core.config import Settings
from core.ledger.counts import book_quantities
from core.ledger.doctypes import MANAGER
from core.ledger.document_view import DocumentView, document_view
from core.messaging.people import Person
from core.models import Approval, ApprovalEvent, ApprovalStep, Attachment, Document, User


@dataclass(frozen=True)
class StepView:
    """One role's step: pending, or decided by whom and when (with the note: a reject's reason)."""

    role: str
    status: str
    decided_by: str
    decided_at: datetime | None
    assignee: str
    note: str


@dataclass(frozen=True)
class ApprovalView:
    """A document with its current round of sign-off (approval None: the document needs none or has none yet)."""

    document: DocumentView
    approval: Approval | None
    requester: str
    steps: list[StepView]
    book_now: dict[int, Decimal] = field(default_factory=dict)  # discrepancy: line no → book quantity now
    photos: int = 0

    def pending_roles(self) -> list[str]:
        """The roles still to sign, in order."""
        return [s.role for s in self.steps if s.status == "pending"]

    def roles_to_ask(self) -> list[str]:
        """The roles whose turn it is: every pending one, or in a sequential approval the first pending."""
        pending = self.pending_roles()
        return pending[:1] if self.approval is not None and self.approval.sequential else pending


@dataclass(frozen=True)
class TrailEntry:
    """One line of the audit trail."""

    round: int
    action: str
    role: str
    user: str
    platform: str
    event_key: str
    note: str
    at: datetime


async def _names(session: AsyncSession, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict((await session.execute(select(User.id, User.name).where(User.id.in_(wanted)))).tuples().all())


async def approval_view(session: AsyncSession, number: str) -> ApprovalView:
    """The document numbered `number` and its latest round of sign-off (DomainError for an unknown number)."""
    doc = await document_view(session, number)
    approval = await latest(session, doc.doc.id)
    steps = await steps_of(session, approval.id) if approval else []
    names = await _names(session, {approval.requester_id if approval else doc.doc.created_by_id}
                         | {s.decided_by_id for s in steps} | {s.assignee_id for s in steps})
    requester_id = approval.requester_id if approval else doc.doc.created_by_id
    book_now: dict[int, Decimal] = {}
    if doc.doc.type == "discrepancy" and doc.doc.status == "submitted":  # has stock moved since the count?
        book = await book_quantities(session, sorted({(ln.product_id, ln.warehouse_id) for ln in doc.doc.lines}))
        book_now = {ln.line_no: book[(ln.product_id, ln.warehouse_id)] for ln in doc.doc.lines}
    photos = await session.scalar(select(func.count()).select_from(Attachment)
                                  .where(Attachment.document_id == doc.doc.id))
    return ApprovalView(doc, approval, names.get(requester_id or 0, ""), [
        StepView(s.role, s.status, names.get(s.decided_by_id or 0, ""), s.decided_at,
                 names.get(s.assignee_id or 0, ""), s.note) for s in steps], book_now, photos or 0)


async def pending_for(session: AsyncSession, settings: Settings, person: Person) -> list[tuple[str, str]]:
    """(document number, role) of every pending step `person` may decide now: their roles' (not handed to
    someone else) or handed to them; a step of an approval they already signed, or requested (unless the
    type's policy lets the requester sign), is left out; in a sequential approval only the step whose turn it is."""
    stmt = (select(Document.number, ApprovalStep.role, ApprovalStep.assignee_id, Approval.id, Approval.requester_id,
                   Approval.sequential, ApprovalStep.seq, Document.type)
            .join(Approval, Approval.id == ApprovalStep.approval_id).join(Document, Document.id == Approval.document_id)
            .where(Approval.status == "pending", ApprovalStep.status == "pending")
            .order_by(Approval.created_at, Approval.id, ApprovalStep.seq))
    rows = (await session.execute(stmt)).all()
    signed = set((await session.execute(select(ApprovalStep.approval_id).where(
        ApprovalStep.decided_by_id == person.id))).scalars())
    first_pending: dict[int, int] = {}
    for _, _, _, aid, _, _, seq, _ in rows:
        first_pending.setdefault(aid, seq)
    out = []
    for number, role, assignee, aid, requester, sequential, seq, code in rows:
        mine = assignee == person.id if assignee is not None else role in person.roles
        own = requester == person.id and not (policy_for(settings, code) or MANAGER).requester_may_sign
        if not mine or aid in signed or own or (sequential and seq != first_pending[aid]):
            continue
        if all(n != number for n, _ in out):
            out.append((number, role))
    return out


async def trail(session: AsyncSession, document_id: int) -> list[TrailEntry]:
    """Every approval action on the document, all rounds, oldest first."""
    stmt = (select(ApprovalEvent, Approval.round).join(Approval, Approval.id == ApprovalEvent.approval_id)
            .where(Approval.document_id == document_id).order_by(ApprovalEvent.id))
    rows = (await session.execute(stmt)).all()
    names = await _names(session, {e.user_id for e, _ in rows})
    return [TrailEntry(rnd, e.action, e.role, names.get(e.user_id or 0, ""), e.platform, e.event_key, e.note, e.at)
            for e, rnd in rows]


async def recent_documents(session: AsyncSession, person: Person, limit: int = 10) -> list[Document]:
    """The documents `person` created, requested or decided, newest first."""
    signed = select(Approval.document_id).join(ApprovalStep, ApprovalStep.approval_id == Approval.id).where(
        ApprovalStep.decided_by_id == person.id)
    requested = select(Approval.document_id).where(Approval.requester_id == person.id)
    stmt = (select(Document).where((Document.created_by_id == person.id) | Document.id.in_(signed)
                                   | Document.id.in_(requested)).order_by(Document.id.desc()).limit(limit))
    return list(await session.scalars(stmt))


@dataclass(frozen=True)
class AttachmentView:
    """A photo kept with a document (without its bytes)."""

    id: int
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    at: datetime


@dataclass(frozen=True)
class DocumentDetail:
    """Everything 单据 <单号> shows: the sign-off, its audit trail, the photos, the documents it refers to and
    those referring to it (a count's discrepancy, a return's original)."""

    view: ApprovalView
    trail: list[TrailEntry]
    attachments: list[AttachmentView]
    refers_to: list[tuple[str, str, str]]  # (number, type, status)
    referred_by: list[tuple[str, str, str]]


async def attachments_of(session: AsyncSession, document_id: int) -> list[AttachmentView]:
    """The document's photos, oldest first."""
    rows = (await session.execute(
        select(Attachment.id, Attachment.content_type, Attachment.size, Attachment.sha256, User.name, Attachment.at)
        .outerjoin(User, User.id == Attachment.uploaded_by_id)
        .where(Attachment.document_id == document_id).order_by(Attachment.id))).all()
    return [AttachmentView(i, ct, size, sha, name or "", at) for i, ct, size, sha, name, at in rows]


async def document_detail(session: AsyncSession, number: str) -> DocumentDetail:
    """The whole story of one document (DomainError DOC_NOT_FOUND for an unknown number)."""
    view = await approval_view(session, number)
    doc = view.document.doc
    cols = (Document.number, Document.type, Document.status)
    refers = [] if doc.ref_document_id is None else [tuple(r) for r in (await session.execute(
        select(*cols).where(Document.id == doc.ref_document_id))).all()]
    referred = [tuple(r) for r in (await session.execute(
        select(*cols).where(Document.ref_document_id == doc.id).order_by(Document.id))).all()]
    return DocumentDetail(view, await trail(session, doc.id), await attachments_of(session, doc.id),
                          refers, referred)
