"""Documents (one table with a type) and their lines; number counters per prefix and day."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base, utcnow
from core.types import Dec, UTCDateTime


class Document(Base):
    """A business document with lifecycle draft → submitted → posted → cancelled (rejected → draft)."""

    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_type_status", "type", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    warehouse_id: Mapped[int | None] = mapped_column(ForeignKey("warehouses.id"))
    to_warehouse_id: Mapped[int | None] = mapped_column(ForeignKey("warehouses.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("suppliers.id"))
    ref_document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    validation_mode: Mapped[str] = mapped_column(String(8), default="strict")
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    review_notes: Mapped[str] = mapped_column(Text, default="")
    returned: Mapped[bool] = mapped_column(Boolean, default=False)
    delivery_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    reject_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    lines: Mapped[list[DocumentLine]] = relationship(
        back_populates="document", order_by="DocumentLine.line_no", cascade="all, delete-orphan"
    )


class DocumentLine(Base):
    """One line: quantity in the line's own unit with its factor to the stock unit."""

    __tablename__ = "document_lines"
    __table_args__ = (
        UniqueConstraint("document_id", "line_no"),
        Index("ix_document_lines_product", "product_id", "warehouse_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    batch_code: Mapped[str] = mapped_column(String(64), default="")
    expiry: Mapped[date | None] = mapped_column(Date)
    qty: Mapped[Decimal] = mapped_column(Dec)
    unit: Mapped[str] = mapped_column(String(16))
    factor: Mapped[int] = mapped_column(Integer, default=1)
    stock_qty: Mapped[Decimal] = mapped_column(Dec)
    unit_price: Mapped[Decimal] = mapped_column(Dec, default=Decimal(0))
    tax_rate: Mapped[Decimal] = mapped_column(Dec, default=Decimal(0))
    counted_qty: Mapped[Decimal | None] = mapped_column(Dec)
    book_qty: Mapped[Decimal | None] = mapped_column(Dec)
    reserved_qty: Mapped[Decimal] = mapped_column(Dec, default=Decimal(0))
    discrepancy_type: Mapped[str] = mapped_column(String(16), default="")
    entry: Mapped[str] = mapped_column(String(8), default="")  # how the line was entered: "scan", "text" or ""

    document: Mapped[Document] = relationship(back_populates="lines")


class DocCounter(Base):
    """The last number handed out per (prefix, day); taken under a row lock."""

    __tablename__ = "doc_counters"

    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)
