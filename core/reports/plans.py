"""Improvement plans (改进计划) owed by departments under the health report's threshold: opened by the report,
submitted by the department's head (or a manager when it has none), reminded weekly while open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.models import HealthPlan, User
from core.models.masters import parse_roles

MAX_PLAN = 2000  # characters


@dataclass(frozen=True)
class Owed:
    """An open plan: its id, month, department, score and who must write it (None: the managers)."""

    id: int
    period: str
    department: str
    score: Decimal
    head_id: int | None


def _owed(p: HealthPlan) -> Owed:
    return Owed(p.id, p.period, p.department, p.score.quantize(Decimal("0.1")), p.head_id)


async def open_plan(session: AsyncSession, period: str, department: str, score: Decimal, head_id: int | None,
                    now: datetime) -> Owed:
    """The plan owed for `period` by `department` (opened now unless the report opened it already)."""
    found = await session.scalar(select(HealthPlan).where(HealthPlan.period == period,
                                                          HealthPlan.department == department))
    if found is None:
        found = HealthPlan(period=period, department=department, score=score, head_id=head_id, created_at=now)
        session.add(found)
        await session.flush()
    return _owed(found)


def responsible(plan: HealthPlan | Owed, user_id: int, roles: frozenset[str]) -> bool:
    """Whether the user writes this plan: its head, or a manager (or admin) when the department has no head."""
    if plan.head_id is not None:
        return plan.head_id == user_id or "admin" in roles
    return bool({"manager", "admin"} & roles)


async def owed_by(session: AsyncSession, user_id: int, roles: frozenset[str]) -> list[Owed]:
    """The open plans this user is to write, newest month first."""
    rows = await session.scalars(select(HealthPlan).where(HealthPlan.submitted_at.is_(None))
                                 .order_by(HealthPlan.period.desc(), HealthPlan.department))
    return [_owed(p) for p in rows if responsible(p, user_id, roles)]


async def latest_open(session: AsyncSession) -> list[Owed]:
    """The plans still open for the latest month a report asked plans for (older ones are not chased)."""
    latest = await session.scalar(select(func.max(HealthPlan.period)))
    if latest is None:
        return []
    rows = await session.scalars(select(HealthPlan).where(HealthPlan.period == latest,
                                                          HealthPlan.submitted_at.is_(None))
                                 .order_by(HealthPlan.department))
    return [_owed(p) for p in rows]


async def submit_plan(session: AsyncSession, user: User, text: str, now: datetime) -> tuple[Owed, str]:
    """Store the plan `text` for the user's open plan (the first word may name the department when they owe
    several); (the plan, the text stored). DomainError when there is nothing to submit or it is ambiguous."""
    roles = parse_roles(user.roles)
    owed = await owed_by(session, user.id, roles)
    if not owed:
        raise DomainError("NO_PLAN_OWED", "你目前没有需要提交的改进计划",
                          "月度库存健康度诊断中得分低于阈值的部门，由部门主管提交改进计划")
    body = text.strip()
    first, _, rest = body.partition(" ")
    named = [o for o in owed if o.department == first.strip()]
    if named and rest.strip():
        chosen, body = named[0], rest.strip()
    elif len(owed) == 1:
        chosen = owed[0]
    else:
        names = "、".join(f"{o.department}（{o.period}，{o.score} 分）" for o in owed)
        raise DomainError("PLAN_AMBIGUOUS", f"你有 {len(owed)} 份改进计划待提交：{names}",
                          f"请在内容前写上部门，例如：改进计划 {owed[0].department} 出库一律扫码，每周复盘差异单")
    if not body:
        raise DomainError("EMPTY_PLAN", "改进计划内容不能为空", "例如：改进计划 出库一律扫码，每周复盘差异单")
    if len(body) > MAX_PLAN:
        raise DomainError("PLAN_TOO_LONG", f"改进计划太长（{len(body)} 字，最多 {MAX_PLAN} 字）", "请精简后再提交")
    plan = await session.get_one(HealthPlan, chosen.id, with_for_update=True)
    if plan.submitted_at is not None:
        raise DomainError("PLAN_SUBMITTED", f"{plan.department} {plan.period} 的改进计划已经提交过了", "无需重复提交")
    plan.plan, plan.submitted_by_id, plan.submitted_at = body, user.id, now
    await session.flush()
    return chosen, body
