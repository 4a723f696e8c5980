"""Chat state that outlives one message: the copies of a card sent to people, and a picture a user was asked for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, utcnow
from core.types import UTCDateTime


class CardCopy(Base):
    """One delivered copy of a card, so that every copy can be updated after a decision.

    group: what the card is about (e.g. "approval:12"); platform/address: where it was delivered (a user id);
    ref: the platform's handle to update it — WeCom's response_code (single use, 72 h), DingTalk's outTrackId,
    the console's card id; spent: a WeCom code used up (the next update is a fresh card)."""

    __tablename__ = "card_copies"
    __table_args__ = (UniqueConstraint("group_key", "platform", "address"), Index("ix_card_copies_group", "group_key"))

    id: Mapped[int] = mapped_column(primary_key=True)
    group_key: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(191))
    ref: Mapped[str] = mapped_column(String(255), default="")
    spent: Mapped[bool] = mapped_column(default=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingUpload(Base):
    """A user asked to send a photo for a document (凭证 <单号>): their next picture is kept with it."""

    __tablename__ = "pending_uploads"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))
    kind: Mapped[str] = mapped_column(String(16), default="evidence")
    until: Mapped[datetime] = mapped_column(UTCDateTime)
