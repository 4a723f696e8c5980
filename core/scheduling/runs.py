"""Claiming a job's period: one INSERT wins per (job, period); a crashed run (its lease ran out) or a failed one is
taken over by a conditional UPDATE, so two instances, a restart, a catch-up and a manual re-run run it once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import JobRun
from core.types import UTCDateTime

LEASE = timedelta(minutes=10)

_CLAIM = text(
    "INSERT INTO job_runs (job, period, status, owner, attempts, claimed_at, lease_until, result) "
    "VALUES (:job, :period, 'running', :owner, 1, :now, :lease_until, '') "
    "ON CONFLICT (job, period) DO NOTHING RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("lease_until", type_=UTCDateTime())).columns(id=Integer)


@dataclass(frozen=True)
class Claim:
    """A claimed run: its row id, the owner that holds it and how many attempts it took (1: first)."""

    run_id: int
    owner: str
    attempt: int


async def claim(session: AsyncSession, job: str, period: str, owner: str, now: datetime,
                lease: timedelta = LEASE) -> Claim | None:
    """The run of (job, period) for `owner`, or None when it is done or another owner holds a live lease."""
    new = (await session.execute(_CLAIM, {"job": job, "period": period, "owner": owner, "now": now,
                                          "lease_until": now + lease})).scalar_one_or_none()
    if new is not None:
        return Claim(new, owner, 1)
    taken = (await session.execute(
        update(JobRun).where(JobRun.job == job, JobRun.period == period,
                             or_(JobRun.status == "failed",
                                 (JobRun.status == "running") & (JobRun.lease_until < now)))
        .values(status="running", owner=owner, claimed_at=now, lease_until=now + lease,
                attempts=JobRun.attempts + 1, finished_at=None)
        .returning(JobRun.id, JobRun.attempts))).one_or_none()
    return Claim(taken[0], owner, taken[1]) if taken is not None else None


async def extend(session: AsyncSession, run: Claim, now: datetime, lease: timedelta = LEASE) -> bool:
    """Keep holding a long run; False when the lease was lost (another owner took it over)."""
    done = await session.execute(update(JobRun).where(JobRun.id == run.run_id, JobRun.owner == run.owner,
                                                      JobRun.status == "running")
                                 .values(lease_until=now + lease).returning(JobRun.id))
    return done.first() is not None


async def finish(session: AsyncSession, run: Claim, now: datetime, *, ok: bool, result: str) -> bool:
    """Record the outcome (done or failed with the error); False when another owner holds the run now."""
    done = await session.execute(update(JobRun).where(JobRun.id == run.run_id, JobRun.owner == run.owner)
                                 .values(status="done" if ok else "failed", finished_at=now, result=result[:2000])
                                 .returning(JobRun.id))
    return done.first() is not None


async def state(session: AsyncSession, job: str, period: str) -> JobRun | None:
    """The run of (job, period), if any."""
    return await session.scalar(select(JobRun).where(JobRun.job == job, JobRun.period == period))


async def last_runs(session: AsyncSession) -> dict[str, JobRun]:
    """Each job's most recently claimed run."""
    newest = select(func.max(JobRun.id)).group_by(JobRun.job).scalar_subquery()
    return {run.job: run for run in await session.scalars(select(JobRun).where(JobRun.id.in_(newest)))}
