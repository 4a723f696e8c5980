"""Approvals: one per document and round, one step per required role, and the audit trail of every decision."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, utcnow
from core.types import UTCDateTime

APPROVAL_STATUSES = ("pending", "approved", "rejected", "withdrawn")
STEP_STATUSES = ("pending", "approved", "rejected", "closed")


class Approval(Base):
    """A document's sign-off, round by round (a rejected document fixed and submitted again opens round 2).

    status pending → approved (the document posted), rejected (back to the requester) or withdrawn."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("document_id", "round"),
        Index("ix_approvals_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))
    round: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    sequential: Mapped[bool] = mapped_column(default=False)  # steps decided in seq order, else in parallel
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApprovalStep(Base):
    """One required role of an approval. A decision is a compare-and-set on status "pending"; one person decides
    at most one step of an approval (unique approval + decided_by: NULLs, the undecided, do not collide)."""

    __tablename__ = "approval_steps"
    __table_args__ = (
        UniqueConstraint("approval_id", "role"),
        UniqueConstraint("approval_id", "decided_by_id"),
        Index("ix_approval_steps_open", "status", "role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approvals.id"))
    role: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # handed on (转交) to this person
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")


class ApprovalEvent(Base):
    """The audit trail: who did what to which approval, when, on which platform, from which inbound event."""

    __tablename__ = "approval_events"
    __table_args__ = (Index("ix_approval_events_approval", "approval_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approvals.id"))
    action: Mapped[str] = mapped_column(String(16))  # submit approve reject withdraw transfer post_failed posted
    role: Mapped[str] = mapped_column(String(16), default="")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    platform: Mapped[str] = mapped_column(String(16), default="")
    event_key: Mapped[str] = mapped_column(String(191), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Attachment(Base):
    """A photo kept with a document (count evidence, a customer's signature): content checked, hashed, stored."""

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("document_id", "sha256"), Index("ix_attachments_document", "document_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))
    kind: Mapped[str] = mapped_column(String(16), default="evidence")  # evidence | signature
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    platform: Mapped[str] = mapped_column(String(16), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
