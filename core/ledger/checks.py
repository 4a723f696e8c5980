"""Posting checks as one ordered list (ORDER) that run_all iterates; a failure is a CheckResult with a Chinese fix."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import CheckResult, DomainError
from core.ledger.doctypes import DOC_TYPES, LOOSE, codes_where, doc_type
from core.ledger.plan import Plan
from core.ledger.units import to_stock_qty
from core.models import ON_HAND, Document, DocumentLine, Freeze, StockBalance
from core.models.masters import ROLE_ZH
from core.storage import Fast
from core.types import fq

ZERO = Decimal(0)
# Submitted but unapproved documents of these types lock their product+warehouse (DocType.locks).
_LOCKING = codes_where("locks")
# Draft or submitted documents of these types block postings on their product+warehouse (DocType.unposted_blocks).
_BLOCKING = codes_where("unposted_blocks")


@dataclass(slots=True)
class CheckRun:
    """What the checks of one posting read; the open-documents query is made at most once and shared."""

    session: AsyncSession
    settings: Settings
    plan: Plan
    _open: list[tuple] | None = None

    async def open_lines(self) -> list[tuple]:
        """Lines of other unapproved openings and pending locking documents (see open_lines)."""
        if self._open is None:
            self._open = await open_lines(self.session, self.plan)
        return self._open


def _names(plan: Plan, pid: int, wid: int) -> tuple[str, str]:
    return plan.products[pid].sku, plan.warehouses[wid].code


async def check_units(run: CheckRun) -> list[CheckResult]:
    """Every line's unit is the stock or purchase unit, whole where it must be, factor unchanged."""
    plan = run.plan
    if plan.reversal:
        return []
    out: list[CheckResult] = []
    for ln in plan.doc.lines:
        product = plan.products[ln.product_id]
        try:
            factor, stock_qty = to_stock_qty(product, ln.unit, abs(ln.qty))
        except DomainError as e:
            out.append(CheckResult(e.code, e.message_zh, e.fix_zh, {**e.fields, "line": ln.line_no}))
            continue
        if factor != ln.factor or stock_qty != abs(ln.stock_qty):
            out.append(
                CheckResult(
                    "UNIT_FACTOR_CHANGED",
                    f"第 {ln.line_no} 行换算系数 {ln.factor} 与商品档案 {factor} 不一致",
                    "商品的采购单位换算已被修改，请按新换算重新填写该行数量",
                    {"line": ln.line_no, "sku": product.sku},
                )
            )
    return out


_D = Document.__table__.c
_DL = DocumentLine.__table__.c


def _type_in(codes: tuple[str, ...]) -> ColumnElement[bool]:
    """documents.type is one of codes (a plain = for one code, as the statement was written before)."""
    return _D.type == codes[0] if len(codes) == 1 else _D.type.in_(codes)


# Open documents first (few, by the type/status index), then their lines; "+ 0" keeps the planner from
# walking every historical line of the products through the product index instead.
_OPEN_LINES = Fast(
    select(_DL.product_id, _DL.warehouse_id, _D.to_warehouse_id, _D.number, _D.type, _D.id)
    .join(Document.__table__, _D.id == _DL.document_id)
    .where(
        or_(
            and_(_type_in(_BLOCKING), _D.status.in_(("draft", "submitted"))),
            and_(_D.type.in_(_LOCKING), _D.status == "submitted"),
        ),
        _D.id != bindparam("doc_id"),
        (_DL.product_id + 0).in_(bindparam("pids", expanding=True)),
    )
)


async def open_lines(session: AsyncSession, plan: Plan) -> list[tuple]:
    """Lines of other unapproved openings and pending locking documents on the plan's products."""
    if plan.reversal:
        return []
    params = {"doc_id": plan.doc.id, "pids": sorted({p for p, _ in plan.pairs()})}
    return await _OPEN_LINES.all(session, params)


async def check_opening(run: CheckRun) -> list[CheckResult]:
    """An unapproved opening for the product+warehouse blocks postings (it does not count yet)."""
    plan = run.plan
    if doc_type(plan.doc.type).unposted_blocks or plan.reversal:
        return []
    lines = await run.open_lines()
    pairs = set(plan.pairs())
    out = []
    for pid, wid, _to, number, dtype, _id in lines:
        if dtype not in _BLOCKING or (pid, wid) not in pairs:
            continue
        sku, wh = _names(plan, pid, wid)
        out.append(
            CheckResult(
                "OPENING_NOT_APPROVED",
                f"{sku} 在 {wh} 的期初库存单 {number} 尚未审核，未审核的期初数不参与库存计算",
                f"请先审核期初单 {number}（或作废后重新录入），再提交本单",
                {"sku": sku, "warehouse": wh, "opening": number},
            )
        )
    return out


async def check_pending(run: CheckRun) -> list[CheckResult]:
    """Submitted but unapproved transfer/loss/adjustment documents lock their product+warehouse."""
    plan = run.plan
    if plan.reversal:
        return []
    lines = await run.open_lines()
    doc = plan.doc
    oldest_first = doc.type in _LOCKING  # the oldest pending locking document may go first
    pairs = set(plan.pairs())
    out, seen = [], set()
    for pid, wid, to_wid, number, dtype, other_id in lines:
        if dtype not in _LOCKING or (oldest_first and other_id > doc.id):
            continue
        for w in (wid, to_wid):
            if (pid, w) in pairs and (pid, w, number) not in seen:
                seen.add((pid, w, number))
                sku, wh = _names(plan, pid, w)
                policy = run.settings.approvals.get(dtype, DOC_TYPES[dtype].approval)
                who = "、".join(ROLE_ZH[r] for r in policy.roles) if policy else "审核人"
                out.append(
                    CheckResult(
                        "PENDING_LOCK",
                        f"{sku} 在 {wh} 有未审核的{DOC_TYPES[dtype].name_zh}单 {number}（等待{who}审批），"
                        "库存变动被锁定",
                        f"请{who}先审批或驳回 {number}（发送「同意 {number}」或「驳回 {number} <原因>」），再提交本单",
                        {"sku": sku, "warehouse": wh, "pending": number},
                    )
                )
    return out


def _after(plan: Plan) -> tuple[dict, dict]:
    """Balance per key and per pair after the plan, for on-hand and on-loan buckets."""
    key_after: dict[tuple[int, int, int, str], Decimal] = {}
    delta_key: dict[tuple[int, int, int, str], Decimal] = defaultdict(lambda: ZERO)
    for m in plan.moves:
        delta_key[(m.product_id, m.warehouse_id, m.batch_id, m.bucket)] += m.qty
    for (p, w, b, bucket), d in delta_key.items():
        bal = plan.balances[(p, w, b)]
        key_after[(p, w, b, bucket)] = (bal.qty if bucket == ON_HAND else bal.on_loan) + d
    return key_after, delta_key


async def check_negative(run: CheckRun) -> list[CheckResult]:
    """No balance of a strict warehouse goes below 0; allowed ones stay above their floor; loans ≥ 0."""
    plan = run.plan
    key_after, delta_key = _after(plan)
    out: list[CheckResult] = []
    pair_delta: dict[tuple[int, int], Decimal] = defaultdict(lambda: ZERO)
    for (p, w, _b, bucket), d in delta_key.items():
        if bucket == ON_HAND:
            pair_delta[(p, w)] += d
    for (p, w), d in sorted(pair_delta.items()):
        if d >= 0:
            continue
        wh = plan.warehouses[w]
        total = sum((bal.qty for k, bal in plan.balances.items() if k[0] == p and k[1] == w), ZERO) + d
        product = plan.products[p]
        short_batches = [k for k, v in key_after.items() if k[0] == p and k[1] == w and k[3] == ON_HAND and v < 0
                         and delta_key[k] < 0]
        if not wh.allow_negative and (total < 0 or short_batches):
            have = total - d
            out.append(
                CheckResult(
                    "NEGATIVE_STOCK",
                    f"{product.sku}「{product.name}」在 {wh.code} 可用 {fq(have)}{product.stock_unit}，"
                    f"本单需要 {fq(-d)}{product.stock_unit}，缺 {fq(-total if total < 0 else -d)}{product.stock_unit}，"
                    f"仓库 {wh.code} 未启用负库存",
                    "请先入库或调拨补足库存，或核对数量与单位；确需负库存时由管理员为该仓库开启负库存并设置下限",
                    {"sku": product.sku, "warehouse": wh.code, "available": fq(have), "needed": fq(-d)},
                )
            )
        elif wh.allow_negative and total < wh.negative_floor:
            out.append(
                CheckResult(
                    "NEGATIVE_FLOOR",
                    f"{product.sku} 在 {wh.code} 过账后为 {fq(total)}{product.stock_unit}，低于负库存下限 "
                    f"{fq(wh.negative_floor)}",
                    "请先补足库存，或由管理员调整该仓库的负库存下限",
                    {"sku": product.sku, "warehouse": wh.code, "after": fq(total), "floor": fq(wh.negative_floor)},
                )
            )
    for (p, w, _b, bucket), v in sorted(key_after.items()):
        if bucket != ON_HAND and v < 0:
            product = plan.products[p]
            out.append(
                CheckResult(
                    "NEGATIVE_LOAN",
                    f"{product.sku} 在 {plan.warehouses[w].code} 的借出数量不足，归还后将为 {fq(v)}",
                    "请核对归还数量是否超过借出数量，或选择正确的借条/批次",
                    {"sku": product.sku, "warehouse": plan.warehouses[w].code},
                )
            )
    return out


_F = Freeze.__table__.c
_ACTIVE_FREEZES = Fast(select(_F.id, _F.product_id, _F.warehouse_id, _F.reason).where(
    _F.active.is_(True),
    _F.product_id.in_(bindparam("pids", expanding=True)),
    tuple_(_F.product_id, _F.warehouse_id).in_(bindparam("pairs", expanding=True)),
))


async def check_freeze(run: CheckRun) -> list[CheckResult]:
    """A frozen product+warehouse accepts no movement until it is unfrozen."""
    plan = run.plan
    pairs = plan.pairs()
    params = {"pids": sorted({p for p, _ in pairs}), "pairs": pairs}
    out = []
    for fr in await _ACTIVE_FREEZES.all(run.session, params):
        sku, wh = _names(plan, fr.product_id, fr.warehouse_id)
        out.append(
            CheckResult(
                "FROZEN",
                f"{sku} 在 {wh} 已冻结（{fr.reason}），禁止任何变动",
                f"请用「诊断 {sku} {wh}」查看冻结日志，修正原因后由管理员解冻",
                {"sku": sku, "warehouse": wh, "freeze_id": fr.id},
            )
        )
    return out


async def check_expired(run: CheckRun) -> list[CheckResult]:
    """No issue from, or receipt into, a batch already past its expiry date (except by types that remove expired
    goods, such as loss)."""
    plan = run.plan
    if plan.reversal or doc_type(plan.doc.type).issues_expired:
        return []
    out, seen = [], set()
    for m in plan.moves:
        exp = plan.expiry.get(m.batch_id)
        if exp is None or plan.today is None or exp >= plan.today or m.bucket != ON_HAND:
            continue
        if m.batch_id in seen:
            continue
        seen.add(m.batch_id)
        product = plan.products[m.product_id]
        code = m.line.batch_code if m.line is not None else ""
        out.append(
            CheckResult(
                "BATCH_EXPIRED",
                f"{product.sku} 批次 {code or m.batch_id} 已于 {exp} 过期",
                "过期批次不能出入库：请改选未过期批次（留空批次将按先到期先出自动选取），过期品请走报损流程",
                {"sku": product.sku, "batch": code, "expiry": str(exp)},
            )
        )
    return out


_B = StockBalance.__table__.c
_HISTORY = Fast(
    select(_B.product_id, func.max(_B.max_move), func.sum(_B.move_count))
    .where(_B.product_id.in_(bindparam("pids", expanding=True)))
    .group_by(_B.product_id)
)


async def check_magnitude(run: CheckRun) -> list[CheckResult]:
    """A line far beyond the product's history (the g-vs-kg mistake) is held, not posted."""
    plan, settings = run.plan, run.settings
    if plan.reversal:
        return []
    pids = {ln.product_id for ln in plan.doc.lines}
    rows = await _HISTORY.all(run.session, {"pids": sorted(pids)})
    history = {p: (mx, n) for p, mx, n in rows}
    out = []
    for ln in plan.doc.lines:
        mx, n = history.get(ln.product_id, (None, 0))
        if not mx or (n or 0) < 3:
            continue
        limit = mx * settings.magnitude_factor
        if abs(ln.stock_qty) > limit:
            product = plan.products[ln.product_id]
            out.append(
                CheckResult(
                    "MAGNITUDE_GUARD",
                    f"第 {ln.line_no} 行 {product.sku} 数量 {fq(abs(ln.stock_qty))}{product.stock_unit} "
                    f"远超历史最大单笔 {fq(mx)}{product.stock_unit}"
                    f"（超过 {settings.magnitude_factor} 倍），已暂扣未过账",
                    "请核对单位是否填错（如 g 与 kg、瓶与箱）；确认无误请拆分单据或由管理员调整 magnitude_factor",
                    {"sku": product.sku, "line": ln.line_no, "qty": fq(ln.stock_qty), "history_max": fq(mx),
                     "product_id": ln.product_id, "warehouse_id": ln.warehouse_id},
                )
            )
    return out


# A posting takes its time before it waits for the pair's lock, so under concurrency (or with two instances whose
# clocks differ a little) it may find a move committed a moment "after" it: that is not back-dating.
BACKDATING_GRACE = timedelta(minutes=5)


async def check_backdating(run: CheckRun) -> list[CheckResult]:
    """No posting earlier than the last movement of a product+warehouse, beyond BACKDATING_GRACE (back-dating is
    off by default)."""
    plan = run.plan
    if run.settings.allow_backdating:
        return []
    out = []
    for p, w in plan.pairs():
        last = max((b.updated_at for k, b in plan.balances.items() if k[0] == p and k[1] == w and b.move_count),
                   default=None)
        if last is not None and plan.now is not None and plan.now < last - BACKDATING_GRACE:
            sku, wh = _names(plan, p, w)
            out.append(
                CheckResult(
                    "BACKDATED",
                    f"{sku} 在 {wh} 最近一笔流水时间为 {last:%Y-%m-%d %H:%M} UTC，不能补录更早的单据",
                    "请按当前时间过账；确需补录历史单据请由管理员开启 [ledger] allow_backdating",
                    {"sku": sku, "warehouse": wh},
                )
            )
    return out


CheckFn = Callable[[CheckRun], Awaitable[list[CheckResult]]]


@dataclass(frozen=True)
class Check:
    """One posting check: its name, the function, the result codes it reports and whether it is soft."""

    name: str
    run: CheckFn
    codes: tuple[str, ...]
    soft: bool = False  # in loose validation mode its failures become warnings


# The documented order: run_all (and so diagnosis, which re-runs every check) goes through it as listed.
ORDER: tuple[Check, ...] = (
    Check("unit", check_units, ("UNIT_MISSING", "UNIT_UNKNOWN", "UNIT_NOT_WHOLE", "UNIT_FACTOR_CHANGED")),
    Check("opening", check_opening, ("OPENING_NOT_APPROVED",), soft=True),
    Check("pending", check_pending, ("PENDING_LOCK",), soft=True),
    Check("negative", check_negative, ("NEGATIVE_STOCK", "NEGATIVE_FLOOR", "NEGATIVE_LOAN")),
    Check("freeze", check_freeze, ("FROZEN",)),
    Check("expired", check_expired, ("BATCH_EXPIRED",)),
    Check("magnitude", check_magnitude, ("MAGNITUDE_GUARD",)),
    Check("backdating", check_backdating, ("BACKDATED",)),
)


async def run_all(session: AsyncSession, settings: Settings, plan: Plan) -> list[CheckResult]:
    """Every check of ORDER in order; in loose mode the failures of soft checks become warnings."""
    run = CheckRun(session, settings, plan)
    loose = plan.doc.validation_mode == LOOSE
    results: list[CheckResult] = []
    for check in ORDER:
        found = await check.run(run)
        if loose and check.soft:
            found = [CheckResult(r.code, r.message_zh, r.fix_zh, r.fields, warning=True) for r in found]
        results += found
    return results
