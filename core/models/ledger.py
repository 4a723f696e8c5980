"""The stock ledger: append-only movements and one balance row per (product, warehouse, batch)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, utcnow
from core.types import Dec, UTCDateTime

ON_HAND = "stock"
ON_LOAN = "loan"


class StockMove(Base):
    """One signed movement of one bucket (on hand or on loan); never updated or deleted."""

    __tablename__ = "stock_moves"
    __table_args__ = (
        # Covering: a product's moves in time order with everything the whole-ledger reads need (stock-out days,
        # keys that reached zero, integrity sums, risk windows) answered from the index alone, without a table
        # lookup per move.
        Index("ix_stock_moves_product_time", "product_id", "posted_at", "id", "warehouse_id", "bucket", "batch_id",
              "document_id", "qty", "balance_after"),
        Index("ix_stock_moves_document", "document_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))
    line_id: Mapped[int | None] = mapped_column(ForeignKey("document_lines.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    bucket: Mapped[str] = mapped_column(String(8), default=ON_HAND)
    qty: Mapped[Decimal] = mapped_column(Dec)
    balance_after: Mapped[Decimal] = mapped_column(Dec)
    reversal_of_id: Mapped[int | None] = mapped_column(ForeignKey("stock_moves.id"))
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockBalance(Base):
    """Cached balance of one (product, warehouse, batch); rebuildable from the moves."""

    __tablename__ = "stock_balances"
    __table_args__ = (UniqueConstraint("product_id", "warehouse_id", "batch_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    qty: Mapped[Decimal] = mapped_column(Dec, default=Decimal(0))
    on_loan: Mapped[Decimal] = mapped_column(Dec, default=Decimal(0))
    max_move: Mapped[Decimal] = mapped_column(Dec, default=Decimal(0))
    move_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A move was posted on this key at a time before its previous move (history entered out of order), so its
    # moves' balance_after no longer follows time order: stock-out days read this key's moves in full.
    unordered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
