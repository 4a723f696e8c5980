"""Messaging tables: inbound events de-duplicated by key, and the durable outbox of messages to send."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, utcnow
from core.types import UTCDateTime

KEY_LENGTH = 255
INBOUND_STATUSES = ("new", "done", "failed")
OUTBOX_STATUSES = ("pending", "sending", "sent", "dead")


def fit_key(key: str) -> str:
    """A dedupe key as stored: unchanged up to KEY_LENGTH characters, else a stable sha256 digest of it."""
    if not key:
        raise ValueError("a dedupe key must not be empty")
    if len(key) <= KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _in(values: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class InboundEvent(Base):
    """One accepted platform callback; the unique key turns a platform retry into a no-op, and the handled mark
    (a compare-and-set on status "new") lets one handling of it take effect."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        CheckConstraint(_in(INBOUND_STATUSES), name="status"),
        Index("ix_inbound_open", "status", "lease_until"),  # resume: open events whose lease ran out
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(128))
    chat_id: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(8), default="new")
    error: Mapped[str | None] = mapped_column(Text)
    # While status is "new": the instance handling it holds it until then; after that, resume may claim it.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """One message to deliver to one target, written in the transaction of the change it reports.

    status "pending" waits for next_attempt_at; "sending" is claimed by a sender until next_attempt_at
    (the lease); "sent" and "dead" are final. attempts counts claims (the fencing token of a claim)."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_in(OUTBOX_STATUSES), name="status"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_target_sent", "target", "sent_at"),  # sends per target in a window (shared limits)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(KEY_LENGTH), unique=True)
    target: Mapped[str] = mapped_column(Text)  # JSON of bot.transport.Target
    message: Mapped[str] = mapped_column(Text)  # JSON of cards.model.Message
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
