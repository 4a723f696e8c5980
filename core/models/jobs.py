"""Scheduled job runs: one row per (job, business period), claimed with a lease so a period runs once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, utcnow
from core.types import UTCDateTime

JOB_STATUSES = ("running", "done", "failed")


class JobRun(Base):
    """A job's run for one period (e.g. risk_report 2026-12-07): the unique key lets exactly one claim win; a
    running row whose lease ran out (a crashed instance) or a failed one may be taken over."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(48))
    period: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(8), default="running")
    owner: Mapped[str] = mapped_column(String(64), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str] = mapped_column(Text, default="")  # what it did, or the error
