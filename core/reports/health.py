"""The monthly stock-health diagnosis (the seed's 库存健康度诊断 / 账实一致性评分报告), per department of the person who
created each document (User.department; none: 未分部门).

Metrics of month M (local dates in the configured timezone), each a fraction 0–1:

* closure (单据闭环率): documents created in M that reached posted or cancelled by the report time ÷ documents
  created in M (every type).
* scan (扫码执行率): lines entered by scan (DocumentLine.entry == "scan") ÷ all lines, over the posted documents
  created in M whose type is in `[scan] required`.
* discrepancy (差异闭环时长): discrepancy documents posted in M, hours from submitted to posted; median and p90 shown;
  the metric is min(1, `[health] discrepancy_hours` ÷ p90) (full points while nine in ten close within the target).
  Those still open at the report time are counted beside it.
* borrow (借货归还率): quantity returned by the due date ÷ quantity lent, over the posted borrow slips due in M and
  already past due at the report time (the rules of core.ledger.borrow.return_rates, grouped by the slip writer's
  department instead of the customer).

score = Σ weight × metric ÷ Σ weight × 100 over the metrics the department has data for (`[health] weights`, 100 in
all): a department that lent nothing is scored on the other three, reweighted.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import HEALTH_METRICS_ZH, Settings
from core.ledger.borrow import BORROW, RETURN, RateRow, month_bounds
from core.models import Document, DocumentLine, User
from core.models.masters import parse_roles

NO_DEPARTMENT = "未分部门"
DISCREPANCY = "discrepancy"
ZERO = Decimal(0)


@dataclass
class DepartmentHealth:
    """One department's figures for the month."""

    department: str
    documents: int = 0
    closed: int = 0
    scan_lines: int = 0
    scanned: int = 0
    hours: list[float] = field(default_factory=list)  # discrepancy closure times (posted in the month)
    open_discrepancies: int = 0
    borrow: RateRow = field(default_factory=lambda: RateRow("", ""))
    score: Decimal | None = None
    metrics: dict[str, Decimal | None] = field(default_factory=dict)

    @property
    def closure_rate(self) -> Decimal | None:
        """Closed ÷ created (None without documents)."""
        return Decimal(self.closed) / self.documents if self.documents else None

    @property
    def scan_rate(self) -> Decimal | None:
        """Scanned lines ÷ lines of scan-required types (None without such lines)."""
        return Decimal(self.scanned) / self.scan_lines if self.scan_lines else None

    @property
    def median_hours(self) -> float | None:
        """Median discrepancy closure time in hours."""
        return statistics.median(self.hours) if self.hours else None

    @property
    def p90_hours(self) -> float | None:
        """90th percentile (nearest rank) of the discrepancy closure times in hours."""
        if not self.hours:
            return None
        ordered = sorted(self.hours)
        return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


@dataclass(frozen=True)
class HealthReport:
    """The month's report: departments by score (lowest first), the weights and threshold used."""

    month: date  # its first day
    departments: list[DepartmentHealth]
    weights: dict[str, int]
    threshold: int
    target_hours: int

    def below(self) -> list[DepartmentHealth]:
        """Departments scored under the threshold."""
        return [d for d in self.departments if d.score is not None and d.score < self.threshold]


def month_window(month: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[first day 00:00, next month's first day 00:00) local, as aware datetimes."""
    first, last = month_bounds(month)
    return datetime.combine(first, time(0), tz), datetime.combine(last + timedelta(days=1), time(0), tz)


def _dept(name: str | None) -> str:
    return name or NO_DEPARTMENT


async def _closure(session: AsyncSession, rows: dict[str, DepartmentHealth], start: datetime, end: datetime,
                   as_of: datetime) -> None:
    d, u = Document.__table__.c, User.__table__.c
    closed = case(((d.status == "posted") & (d.posted_at <= as_of), 1),
                  ((d.status == "cancelled") & (d.cancelled_at <= as_of), 1), else_=0)
    result = await session.execute(
        select(u.department, func.count(), func.sum(closed))
        .select_from(Document.__table__).outerjoin(User.__table__, u.id == d.created_by_id)
        .where(d.created_at >= start, d.created_at < end).group_by(u.department))
    for dept, n, done in result.all():
        row = rows.setdefault(_dept(dept), DepartmentHealth(_dept(dept)))
        row.documents += n
        row.closed += int(done or 0)


async def _scan(session: AsyncSession, rows: dict[str, DepartmentHealth], settings: Settings, start: datetime,
                end: datetime) -> None:
    if not settings.scan_required:
        return
    d, ln, u = Document.__table__.c, DocumentLine.__table__.c, User.__table__.c
    result = await session.execute(
        select(u.department, func.count(), func.sum(case((ln.entry == "scan", 1), else_=0)))
        .select_from(DocumentLine.__table__).join(Document.__table__, d.id == ln.document_id)
        .outerjoin(User.__table__, u.id == d.created_by_id)
        .where(d.type.in_(sorted(settings.scan_required)), d.status == "posted", d.created_at >= start,
               d.created_at < end).group_by(u.department))
    for dept, n, scanned in result.all():
        row = rows.setdefault(_dept(dept), DepartmentHealth(_dept(dept)))
        row.scan_lines += n
        row.scanned += int(scanned or 0)


async def _discrepancies(session: AsyncSession, rows: dict[str, DepartmentHealth], start: datetime, end: datetime,
                         as_of: datetime) -> None:
    d, u = Document.__table__.c, User.__table__.c
    result = await session.execute(
        select(u.department, d.status, d.submitted_at, d.posted_at)
        .select_from(Document.__table__).outerjoin(User.__table__, u.id == d.created_by_id)
        .where(d.type == DISCREPANCY, d.submitted_at.is_not(None), d.submitted_at < end,
               ((d.posted_at >= start) & (d.posted_at < end)) | (d.status == "submitted")))
    for dept, status, submitted, posted in result.all():
        row = rows.setdefault(_dept(dept), DepartmentHealth(_dept(dept)))
        if posted is not None and start <= posted < end:
            row.hours.append((posted - submitted).total_seconds() / 3600)
        elif status == "submitted" and submitted <= as_of:
            row.open_discrepancies += 1


async def _borrow(session: AsyncSession, rows: dict[str, DepartmentHealth], tz: ZoneInfo, month: date,
                  as_of: date) -> None:
    first, last = month_bounds(month)
    last = min(last, as_of - timedelta(days=1))  # a slip due today may still come back today
    d, ln, u = Document.__table__.c, DocumentLine.__table__.c, User.__table__.c
    slips = (await session.execute(
        select(d.id, d.number, d.due_date, u.department, func.sum(ln.stock_qty))
        .select_from(Document.__table__).join(DocumentLine.__table__, ln.document_id == d.id)
        .outerjoin(User.__table__, u.id == d.created_by_id)
        .where(d.type == BORROW, d.status == "posted", d.due_date >= first, d.due_date <= last)
        .group_by(d.id, d.number, d.due_date, u.department))).all()
    back: dict[int, list[tuple[date, Decimal]]] = defaultdict(list)
    ids = [s[0] for s in slips]
    for start in range(0, len(ids), 500):
        returns = await session.execute(
            select(d.ref_document_id, d.posted_at, func.sum(ln.stock_qty))
            .join(DocumentLine.__table__, ln.document_id == d.id)
            .where(d.type == RETURN, d.status == "posted", d.ref_document_id.in_(ids[start:start + 500]))
            .group_by(d.id, d.ref_document_id, d.posted_at))
        for sid, at, q in returns.all():
            back[sid].append((at.astimezone(tz).date(), q))
    for sid, number, due, dept, lent in slips:
        row = rows.setdefault(_dept(dept), DepartmentHealth(_dept(dept))).borrow
        row.name = _dept(dept)
        on_time = sum((q for day, q in back[sid] if day <= due), ZERO)
        late = sum((q for day, q in back[sid] if day > due), ZERO)
        row.lent += lent
        row.on_time += on_time
        row.late += late
        row.slips += 1
        if on_time + late < lent:
            row.unreturned.append(number)


def score(row: DepartmentHealth, weights: dict[str, int], target_hours: int) -> None:
    """Fill the department's metrics (0–1, None without data) and its score out of 100 (one decimal)."""
    p90 = row.p90_hours
    row.metrics = {
        "closure": row.closure_rate,
        "scan": row.scan_rate,
        "discrepancy": None if p90 is None else min(Decimal(1), Decimal(target_hours) / Decimal(repr(p90)))
        if p90 > 0 else Decimal(1),
        "borrow": row.borrow.rate,
    }
    have = {k: v for k, v in row.metrics.items() if v is not None and weights.get(k, 0) > 0}
    total = sum(weights[k] for k in have)
    if not total:
        row.score = None
        return
    raw = sum((weights[k] * v for k, v in have.items()), ZERO) * 100 / total
    row.score = raw.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


async def health_report(session: AsyncSession, settings: Settings, month: date, as_of: datetime) -> HealthReport:
    """The report for the month of `month` as it stands at `as_of` (one read session)."""
    tz = settings.timezone
    start, end = month_window(month, tz)
    rows: dict[str, DepartmentHealth] = {}
    await _closure(session, rows, start, end, as_of)
    await _scan(session, rows, settings, start, end)
    await _discrepancies(session, rows, start, end, as_of)
    await _borrow(session, rows, tz, month, as_of.astimezone(tz).date())
    weights = dict(settings.health_weights)
    for row in rows.values():
        score(row, weights, settings.health_discrepancy_hours)
    ordered = sorted(rows.values(), key=lambda r: (r.score is None, r.score or ZERO, r.department))
    return HealthReport(month.replace(day=1), ordered, weights, settings.health_threshold,
                        settings.health_discrepancy_hours)


async def department_heads(session: AsyncSession, departments: list[str]) -> dict[str, int]:
    """Each department's head: its first user (by id) holding the manager role; departments without one are left
    out (their task goes to the managers)."""
    heads: dict[str, int] = {}
    for user in await session.scalars(select(User).where(User.department.in_(departments)).order_by(User.id)):
        if "manager" in parse_roles(user.roles):
            heads.setdefault(user.department, user.id)
    return heads


def pct(value: Decimal | None) -> str:
    """A fraction as a percentage for people ("—" without data)."""
    return "—" if value is None else f"{(value * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def weights_zh(weights: dict[str, int]) -> str:
    """The weights as the report states them: 单据闭环率 30、扫码执行率 30、…"""
    return "、".join(f"{HEALTH_METRICS_ZH[k]} {w}" for k, w in weights.items())
