"""Report tables: files a scheduled report attached (downloaded by an unguessable link) and the improvement plans
the monthly health report asks of departments under the line."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, utcnow
from core.types import Dec, UTCDateTime


class ReportFile(Base):
    """One attached file (e.g. the risk report's .xlsx), stored once per report part and served at /files/<token>."""

    __tablename__ = "report_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # job:{job}:{period}:{part}
    token: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(128))
    content_type: Mapped[str] = mapped_column(String(96))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HealthPlan(Base):
    """A department's improvement plan (改进计划) owed for one month's health report: open until submitted."""

    __tablename__ = "health_plans"
    __table_args__ = (UniqueConstraint("period", "department"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(7))  # the report's month, 2026-11
    department: Mapped[str] = mapped_column(String(64))
    score: Mapped[Decimal] = mapped_column(Dec)
    head_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the managers
    plan: Mapped[str] = mapped_column(Text, default="")
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
