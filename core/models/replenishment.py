"""Replenishment settings: category strategies, monthly forecast anchors, their override log, promotion calendar."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, utcnow
from core.types import Dec, UTCDateTime

STRATEGIES = ("fixed", "static", "dynamic")

# Numeric ranges (service level, weight cap) are checked in code: Dec is a scaled integer on SQLite, so a
# CHECK comparing it with a literal would mean different things on the two backends.
_REASON_NOT_EMPTY = "length(trim(reason)) > 0"


class ReplenishStrategy(Base):
    """How one product category is replenished: a fixed quantity, the old static formula, or dynamic."""

    __tablename__ = "replenish_strategies"
    __table_args__ = (
        CheckConstraint("strategy IN ('fixed', 'static', 'dynamic')", name="strategy"),
        CheckConstraint("strategy <> 'fixed' OR fixed_qty IS NOT NULL", name="fixed_qty"),
        CheckConstraint("review_days >= 1", name="review_days"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(64), unique=True)
    strategy: Mapped[str] = mapped_column(String(8), default="dynamic")
    service_level: Mapped[Decimal] = mapped_column(Dec, default=Decimal("0.95"))
    fixed_qty: Mapped[Decimal | None] = mapped_column(Dec)  # fixed safety stock in stock units (fixed only)
    review_days: Mapped[int] = mapped_column(Integer, default=7)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ForecastAnchor(Base):
    """A planner's monthly demand figure for a core item, blended into the forecast with a capped weight.

    stat_qty is the statistical forecast of the month when the anchor was last set; actual_qty the
    realised demand, recorded after the month, so forecast value added can be reported."""

    __tablename__ = "forecast_anchors"
    __table_args__ = (
        UniqueConstraint("product_id", "month"),
        CheckConstraint(_REASON_NOT_EMPTY, name="reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    month: Mapped[date] = mapped_column(Date)  # first day of the month
    qty: Mapped[Decimal] = mapped_column(Dec)
    weight_cap: Mapped[Decimal] = mapped_column(Dec)
    reason: Mapped[str] = mapped_column(Text)
    stat_qty: Mapped[Decimal | None] = mapped_column(Dec)
    actual_qty: Mapped[Decimal | None] = mapped_column(Dec)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ForecastOverride(Base):
    """Append-only log of every anchor set or change: old and new values, who and why."""

    __tablename__ = "forecast_overrides"
    __table_args__ = (CheckConstraint(_REASON_NOT_EMPTY, name="reason"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    anchor_id: Mapped[int] = mapped_column(ForeignKey("forecast_anchors.id"), index=True)
    old_qty: Mapped[Decimal | None] = mapped_column(Dec)
    new_qty: Mapped[Decimal] = mapped_column(Dec)
    old_weight_cap: Mapped[Decimal | None] = mapped_column(Dec)
    new_weight_cap: Mapped[Decimal] = mapped_column(Dec)
    stat_qty: Mapped[Decimal | None] = mapped_column(Dec)
    reason: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Promotion(Base):
    """A planned (or past) promotion of one product on local days [start_date, end_date], both inclusive.

    Past promotions teach the forecaster the product's uplift; scheduled ones raise the forecast on their days."""

    __tablename__ = "promotions"
    __table_args__ = (
        CheckConstraint("end_date >= start_date", name="dates"),
        CheckConstraint(_REASON_NOT_EMPTY, name="reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)  # inclusive
    reason: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
