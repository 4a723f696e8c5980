"""Freezes of a product+warehouse with their event log; finance entries (payables, receivables)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, utcnow
from core.types import Dec, UTCDateTime


class Freeze(Base):
    """An active or lifted freeze of the smallest scope: one product in one warehouse."""

    __tablename__ = "freezes"
    __table_args__ = (Index("ix_freezes_scope", "product_id", "warehouse_id", "active"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    reason: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FreezeEvent(Base):
    """Log of freeze triggers and lifts (first trigger time, reason, scope)."""

    __tablename__ = "freeze_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    freeze_id: Mapped[int] = mapped_column(ForeignKey("freezes.id"), index=True)
    event: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FinanceEntry(Base):
    """A payable (receipts) or receivable (sales issues, negative for returns) with its quantity."""

    __tablename__ = "finance_entries"
    __table_args__ = (Index("ix_finance_entries_key", "product_id", "warehouse_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("document_lines.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("suppliers.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    qty: Mapped[Decimal] = mapped_column(Dec)
    amount: Mapped[Decimal] = mapped_column(Dec)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
