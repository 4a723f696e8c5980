"""The one posting path: plan moves, lock balances in key order, run the checks, write moves."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, bindparam, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from core.config import Settings
from core.errors import CheckResult, DomainError
from core.ledger import checks, master_rows
from core.ledger.batches import ensure_balance_rows, ensure_batches
from core.ledger.doctypes import COUNT_DIFF, IN, LEND, LEND_BACK, OUT, SIGNED, TRANSFER, doc_type
from core.ledger.plan import Bal, Key, Move, Plan
from core.models import (
    ON_HAND,
    ON_LOAN,
    Batch,
    Document,
    DocumentLine,
    Product,
    StockBalance,
    StockMove,
    Warehouse,
    utcnow,
)
from core.storage import Fast

ZERO = Decimal(0)


_BAL = StockBalance.__table__.c
_BAL_COLS = (_BAL.id, _BAL.product_id, _BAL.warehouse_id, _BAL.batch_id, _BAL.qty, _BAL.on_loan, _BAL.max_move,
             _BAL.move_count, _BAL.updated_at, _BAL.unordered)


def _lock_statement(*key_columns: Any) -> Select:
    """Balance rows (with batch expiry) whose key_columns are in the expanding parameter `keys`, in key order.

    The extra product_id IN lets SQLite use the index; a bare row-value IN is a full scan there."""
    return (
        select(*_BAL_COLS, Batch.__table__.c.expiry)
        .join(Batch.__table__, Batch.__table__.c.id == _BAL.batch_id)
        .where(
            _BAL.product_id.in_(bindparam("pids", expanding=True)),
            tuple_(*key_columns).in_(bindparam("keys", expanding=True)),
        )
        .order_by(_BAL.product_id, _BAL.warehouse_id, _BAL.batch_id)
    )


def _lock_pair(*key_columns: Any) -> tuple[Fast, Fast]:
    """(SQLite, PostgreSQL) forms: SQLite's BEGIN IMMEDIATE already holds the write lock; PostgreSQL locks rows."""
    stmt = _lock_statement(*key_columns)
    return Fast(stmt), Fast(stmt.with_for_update(of=StockBalance.__table__))


_LOCK_PAIRS = _lock_pair(_BAL.product_id, _BAL.warehouse_id)
_LOCK_KEYS = _lock_pair(_BAL.product_id, _BAL.warehouse_id, _BAL.batch_id)
_UPDATE_BAL = Fast(
    update(StockBalance.__table__)
    .where(_BAL.id == bindparam("b_id"))
    .values(qty=bindparam("b_qty"), on_loan=bindparam("b_on_loan"), max_move=bindparam("b_max_move"),
            move_count=bindparam("b_move_count"), updated_at=bindparam("b_updated_at"),
            unordered=bindparam("b_unordered"))
)
# RETURNING makes SQLAlchemy batch the rows into one multi-VALUES INSERT ("insertmanyvalues") on asyncpg,
# which would otherwise run an executemany, one round trip per row. SQLite takes a plain executemany.
_INSERT_MOVES = Fast(StockMove.__table__.insert(),
                     fallback=StockMove.__table__.insert().returning(StockMove.__table__.c.id))


async def _lock(session: AsyncSession, forms: tuple[Fast, Fast], **params: object) -> list:
    pg = session.bind.dialect.name == "postgresql"
    return await forms[1 if pg else 0].all(session, params)


async def load_masters(
    session: AsyncSession, lines: list[DocumentLine]
) -> tuple[dict[int, Product], dict[int, Warehouse]]:
    """Products and warehouses referenced by lines, by id (read-only rows; see core/master_rows.py)."""
    products = await master_rows.by_ids(session, Product, {ln.product_id for ln in lines})
    warehouses = await master_rows.by_ids(session, Warehouse, {ln.warehouse_id for ln in lines})
    return products, warehouses


async def plan_document(session: AsyncSession, doc: Document) -> Plan:
    """Turn a document's lines into planned moves (batches resolved or left for FEFO)."""
    effect = doc_type(doc.type).effect
    lines = list(doc.lines)
    to_wh = doc.to_warehouse_id
    extra_lines = []
    if effect == TRANSFER:
        if to_wh is None:
            raise DomainError("TRANSFER_TARGET", "调拨单缺少调入仓库", "请指定调入仓库", {"number": doc.number})
        extra_lines = [(ln, to_wh) for ln in lines]
    products, warehouses = await load_masters(session, lines)
    if to_wh is not None and to_wh not in warehouses:
        warehouses.update(await master_rows.by_ids(session, Warehouse, [to_wh]))
    wanted = {(ln.product_id, ln.batch_code, ln.expiry) for ln in lines}
    wanted |= {(ln.product_id, "", None) for ln in lines}
    batches = await ensure_batches(session, wanted)
    unbatched = {p: b.id for (p, code), b in batches.items() if code == ""}

    def bid(ln: DocumentLine) -> int:
        return batches[(ln.product_id, ln.batch_code)].id

    moves: list[Move] = []
    for ln in lines:
        q = ln.stock_qty
        named = bid(ln) if ln.batch_code else None
        if effect == IN:
            moves.append(Move(ln, ln.product_id, ln.warehouse_id, bid(ln), ON_HAND, q))
        elif effect == OUT:
            moves.append(Move(ln, ln.product_id, ln.warehouse_id, named, ON_HAND, -q))
        elif effect in (SIGNED, COUNT_DIFF):
            moves.append(Move(ln, ln.product_id, ln.warehouse_id, named if q < 0 else bid(ln), ON_HAND, q))
        elif effect == LEND:
            moves.append(Move(ln, ln.product_id, ln.warehouse_id, named, ON_HAND, -q))
            moves.append(Move(ln, ln.product_id, ln.warehouse_id, named, ON_LOAN, q))
        elif effect == LEND_BACK:
            moves.append(Move(ln, ln.product_id, ln.warehouse_id, named, ON_LOAN, -q))
            moves.append(Move(ln, ln.product_id, ln.warehouse_id, named, ON_HAND, q))
        elif effect == TRANSFER:
            moves.append(Move(ln, ln.product_id, ln.warehouse_id, named, ON_HAND, -q))
    for ln, wh in extra_lines:
        moves.append(Move(ln, ln.product_id, wh, None, ON_HAND, ln.stock_qty))
    return Plan(doc, moves, products, warehouses, unbatched=unbatched)


async def plan_reversal(session: AsyncSession, doc: Document) -> Plan:
    """Mirror moves of a posted document (cancellation never deletes or updates a move)."""
    originals = list(
        await session.scalars(
            select(StockMove).where(StockMove.document_id == doc.id).order_by(StockMove.id)
        )
    )
    products, warehouses = await load_masters(session, list(doc.lines))
    others = {m.warehouse_id for m in originals} - warehouses.keys()
    warehouses.update(await master_rows.by_ids(session, Warehouse, others))
    moves = [
        Move(None, m.product_id, m.warehouse_id, m.batch_id, m.bucket, -m.qty, reversal_of_id=m.id)
        for m in originals
        if m.reversal_of_id is None
    ]
    return Plan(doc, moves, products, warehouses, reversal=True)


async def lock_balances(session: AsyncSession, plan: Plan) -> None:
    """Create missing rows, then lock every balance row of the touched pairs in sorted key order."""
    lacking = {(p, "", None) for p, _ in plan.pairs() if p not in plan.unbatched}
    if lacking:
        plan.unbatched.update({p: b.id for (p, _), b in (await ensure_batches(session, lacking)).items()})
    keys: set[Key] = set()
    for m in plan.moves:
        keys.add((m.product_id, m.warehouse_id, m.batch_id or plan.unbatched[m.product_id]))
    pairs = plan.pairs()
    params = {"pids": sorted({p for p, _ in pairs}), "keys": pairs}
    rows = await _lock(session, _LOCK_PAIRS, **params)
    if not keys <= {(r[1], r[2], r[3]) for r in rows}:
        # First movement of a key: create its balance row, then lock the pairs again (rare path).
        await ensure_balance_rows(session, keys, plan.now)
        rows = await _lock(session, _LOCK_PAIRS, **params)
    _keep(plan, rows)


def _keep(plan: Plan, rows: list) -> None:
    for r in rows:
        plan.balances[(r[1], r[2], r[3])] = Bal(*r[:10])
        plan.expiry[r[3]] = r[10]


def allocate(plan: Plan) -> None:
    """Resolve FEFO moves into concrete batches, skipping expired ones; any shortfall lands unbatched."""
    running: dict[tuple[Key, str], Decimal] = {}

    def avail(key: Key, bucket: str) -> Decimal:
        if (key, bucket) not in running:
            bal = plan.balances[key]
            running[(key, bucket)] = bal.qty if bucket == ON_HAND else bal.on_loan
        return running[(key, bucket)]

    resolved: list[Move] = []
    for m in plan.moves:
        if m.batch_id is not None:
            key = (m.product_id, m.warehouse_id, m.batch_id)
            running[(key, m.bucket)] = avail(key, m.bucket) + m.qty
            resolved.append(m)
            continue
        if m.qty >= 0:  # incoming with no batch: the transfer target keeps FEFO picks' batches below
            resolved.append(m)
            continue
        need = -m.qty
        candidates = sorted(
            (k for k in plan.balances if k[0] == m.product_id and k[1] == m.warehouse_id),
            key=lambda k: (plan.expiry.get(k[2]) is None, plan.expiry.get(k[2]) or date.max, k[2]),
        )
        for key in candidates:
            exp = plan.expiry.get(key[2])
            if need <= 0:
                break
            if m.bucket == ON_HAND and exp is not None and plan.today and exp < plan.today:
                continue
            have = avail(key, m.bucket)
            if have <= 0:
                continue
            take = min(have, need)
            running[(key, m.bucket)] = have - take
            need -= take
            resolved.append(
                Move(m.line, m.product_id, m.warehouse_id, key[2], m.bucket, -take, m.reversal_of_id)
            )
        if need > 0:
            ub = plan.unbatched[m.product_id]
            key = (m.product_id, m.warehouse_id, ub)
            running[(key, m.bucket)] = avail(key, m.bucket) - need
            resolved.append(Move(m.line, m.product_id, m.warehouse_id, ub, m.bucket, -need, m.reversal_of_id))
    plan.moves = _place_transfer_ins(plan, resolved)


def _place_transfer_ins(plan: Plan, moves: list[Move]) -> list[Move]:
    """Give each unbatched incoming move (transfer in, loan, loan return) the batches its line's out picked."""
    outs: dict[int, list[Move]] = defaultdict(list)
    for m in moves:
        if m.line is not None and m.qty < 0:
            outs[id(m.line)].append(m)
    placed: list[Move] = []
    for m in moves:
        if m.batch_id is None and m.qty > 0:
            picked = outs[id(m.line)]
            if sum(-o.qty for o in picked) != m.qty:
                raise AssertionError("incoming move without a matching outgoing pick")
            placed += [Move(m.line, m.product_id, m.warehouse_id, o.batch_id, m.bucket, -o.qty) for o in picked]
        else:
            placed.append(m)
    return placed


async def _ensure_new_keys(session: AsyncSession, plan: Plan) -> None:
    """Lock rows for keys that appeared during allocation (transfer targets)."""
    missing = {
        (m.product_id, m.warehouse_id, m.batch_id)
        for m in plan.moves
        if (m.product_id, m.warehouse_id, m.batch_id) not in plan.balances
    }
    if not missing:
        return
    await ensure_balance_rows(session, missing, plan.now)
    keys = sorted(missing)
    _keep(plan, await _lock(session, _LOCK_KEYS, pids=sorted({k[0] for k in keys}), keys=keys))


async def prepare(session: AsyncSession, settings: Settings, plan: Plan, now: datetime) -> list[CheckResult]:
    """Lock, allocate and run every check; returns all failures (errors and warnings)."""
    plan.today = now.astimezone(settings.timezone).date()
    plan.now = now
    await lock_balances(session, plan)
    allocate(plan)
    await _ensure_new_keys(session, plan)
    return await checks.run_all(session, settings, plan)


def _apply(plan: Plan, now: datetime) -> tuple[list[dict], list[Bal]]:
    rows: list[dict] = []
    touched: dict[Key, Bal] = {}
    for m in plan.moves:
        if m.qty == 0:
            continue
        key = (m.product_id, m.warehouse_id, m.batch_id)
        bal = plan.balances[key]
        if bal.move_count and now < bal.updated_at:  # posted before the key's last move: history out of order
            bal.unordered = True
        if m.bucket == ON_HAND:
            bal.qty = bal.qty + m.qty
            after = bal.qty
        else:
            bal.on_loan = bal.on_loan + m.qty
            after = bal.on_loan
        if m.reversal_of_id is None:
            bal.max_move = max(bal.max_move, abs(m.qty))
            bal.move_count = bal.move_count + 1
        bal.updated_at = now
        touched[key] = bal
        rows.append(
            {
                "document_id": plan.doc.id,
                "line_id": m.line.id if m.line is not None else None,
                "product_id": m.product_id,
                "warehouse_id": m.warehouse_id,
                "batch_id": m.batch_id,
                "bucket": m.bucket,
                "qty": m.qty,
                "balance_after": after,
                "reversal_of_id": m.reversal_of_id,
                "posted_at": now,
            }
        )
    return rows, list(touched.values())


async def write_moves(session: AsyncSession, plan: Plan, now: datetime) -> int:
    """Insert the moves and update the balances; returns the number of moves written."""
    await session.flush()
    rows, touched = _apply(plan, now)
    if rows:
        await _INSERT_MOVES.many(session, rows)
        await _UPDATE_BAL.many(session, [
            {"b_id": b.id, "b_qty": b.qty, "b_on_loan": b.on_loan, "b_max_move": b.max_move,
             "b_move_count": b.move_count, "b_updated_at": b.updated_at, "b_unordered": b.unordered}
            for b in touched
        ])
        # ORM copies of these rows loaded earlier in this session are now stale.
        identity_map = session.sync_session.identity_map
        for b in touched:
            obj = identity_map.get(identity_key(StockBalance, b.id))
            if obj is not None:
                session.expire(obj)
    return len(rows)


async def sum_moves(session: AsyncSession) -> dict[tuple[int, int, int, str], Decimal]:
    """Σ moves per (product, warehouse, batch, bucket) — the truth balances must equal."""
    cols = (StockMove.product_id, StockMove.warehouse_id, StockMove.batch_id, StockMove.bucket)
    stmt = select(*cols, func.sum(StockMove.qty)).group_by(*cols)
    return {(p, w, b, k): s for p, w, b, k, s in (await session.execute(stmt)).all()}


def now_or(now: datetime | None) -> datetime:
    """now, or the current UTC time."""
    return now or utcnow()
