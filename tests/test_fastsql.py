"""core/fastsql.Fast and core/orm_rows: the raw SQLite path returns, writes and fails exactly as SQLAlchemy would.

Every equivalence test also runs on PostgreSQL (JXCBOT_TEST_DATABASE_URL), where Fast goes through its fallback."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, event, func, insert, inspect, or_, select, text, tuple_, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError, StatementError

from core.models import Batch, Document, DocumentLine, Freeze, Product, StockBalance, Warehouse
from core.storage.fastsql import Fast
from core.storage.orm_rows import attach, loaded, with_defaults

ON_SQLITE = not os.environ.get("JXCBOT_TEST_DATABASE_URL")

S, B, D, L, F, W = (m.__table__ for m in (StockBalance, Batch, Document, DocumentLine, Freeze, Warehouse))
TZ8 = timezone(timedelta(hours=8))
T0 = datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=TZ8)  # not UTC on purpose: it must read back as UTC
QTYS = [Decimal(x) for x in ("0", "1.5", "-2.123456", "1000000.000001", "0.000001", "12345678901.5", "-0.5", "3")]


@dataclass
class Ids:
    """Primary keys of the seeded rows."""

    products: list[int]
    warehouses: list[int]
    balances: list[StockBalance]  # (detached) objects: id, key and values
    documents: list[int]


async def _seed(s) -> Ids:
    whs = [Warehouse(code="W1", name="一号仓"),
           Warehouse(code="W2", name="二号仓", allow_negative=True, negative_floor=Decimal("-5.5"))]
    prods = [Product(sku=f"P{i}", name=f"产品{i}", stock_unit="kg", purchase_unit="kg") for i in range(1, 5)]
    s.add_all([*whs, *prods])
    await s.flush()
    batches = []
    for i, p in enumerate(prods, 1):
        batches += [Batch(product_id=p.id, code="", expiry=None), Batch(product_id=p.id, code="B1",
                                                                        expiry=date(2030, i, 15))]
    s.add_all(batches)
    await s.flush()
    bals = [
        StockBalance(product_id=b.product_id, warehouse_id=w.id, batch_id=b.id, qty=QTYS[n % 8],
                     on_loan=QTYS[(n + 3) % 8], max_move=abs(QTYS[n % 8]), move_count=n,
                     updated_at=T0 + timedelta(hours=n, microseconds=7 * n))
        for n, (b, w) in enumerate(itertools.product(batches, whs)) if n % 5 != 4  # some keys have no row
    ]
    docs = [
        Document(number=f"D{n}", type=("opening", "purchase_receipt", "sales_issue")[n % 3],
                 status=("draft", "submitted", "posted", "cancelled")[n % 4],
                 warehouse_id=whs[0].id if n % 2 else None, needs_review=bool(n % 2), returned=n == 3,
                 delivery_date=date(2031, 1, n + 1) if n % 3 else None, created_at=T0 + timedelta(days=n),
                 submitted_at=T0 + timedelta(days=n, minutes=5) if n % 4 else None, note=f"备注 {n}")
        for n in range(8)
    ]
    freezes = [
        Freeze(product_id=prods[0].id, warehouse_id=whs[0].id, reason="盘点", active=True, created_at=T0),
        Freeze(product_id=prods[1].id, warehouse_id=whs[1].id, reason="已解除", active=False, created_at=T0,
               lifted_at=T0 + timedelta(days=1)),
        Freeze(product_id=prods[2].id, warehouse_id=whs[0].id, reason="质检", active=True,
               created_at=T0 + timedelta(seconds=1)),
    ]
    s.add_all([*bals, *docs, *freezes])
    await s.flush()
    return Ids([p.id for p in prods], [w.id for w in whs], bals, [d.id for d in docs])


@pytest.fixture
async def ids(db) -> Ids:
    """The seeded database's keys."""
    return await db.write(_seed)


def typed(rows: Any) -> list[tuple]:
    """Rows as (type, repr) per value: Decimal('1.5') and Decimal('1.500000') differ, so do tz-aware and naive."""
    return [tuple((type(v), repr(v)) for v in r) for r in rows]


def columns(obj: object) -> dict[str, Any]:
    """An ORM object's column attributes."""
    return {a.key: getattr(obj, a.key) for a in inspect(type(obj)).column_attrs}


def _check_types(rows: list[tuple]) -> set[type]:
    """Every Decimal has 6 places and every datetime is aware UTC; the value types seen."""
    seen = set()
    for r in rows:
        for v in r:
            seen.add(type(v))
            if isinstance(v, Decimal):
                assert v.as_tuple().exponent == -6, v
            if isinstance(v, datetime):
                assert v.tzinfo is not None and v.utcoffset() == timedelta(0), v
    return seen


# --- 1. the same rows as session.execute -------------------------------------------------------------------

_BAL_COLS = (S.c.id, S.c.product_id, S.c.warehouse_id, S.c.batch_id, S.c.qty, S.c.on_loan, S.c.max_move,
             S.c.move_count, S.c.updated_at, B.c.code, B.c.expiry)
_BAL_JOIN = S.join(B, B.c.id == S.c.batch_id)
_DOC_COLS = (D.c.id, D.c.number, D.c.status, D.c.needs_review, D.c.returned, D.c.delivery_date, D.c.due_date,
             D.c.created_at, D.c.submitted_at, D.c.warehouse_id, D.c.note)
NONE = type(None)


def _balances_by_product(ids: Ids):
    stmt = (select(*_BAL_COLS).select_from(_BAL_JOIN)
            .where(S.c.product_id.in_(bindparam("pids", expanding=True))).order_by(S.c.id))
    p = ids.products
    params = [{"pids": x} for x in ([p[0]], [p[0], p[1], p[2]], [], [p[3], p[1]], [*p, 999], [p[1]], [p[2]])]
    return stmt, params, {int, str, Decimal, datetime, date, NONE}


def _balances_by_key_tuples(ids: Ids):
    stmt = (select(*_BAL_COLS).select_from(_BAL_JOIN)
            .where(S.c.product_id.in_(bindparam("pids", expanding=True)),
                   tuple_(S.c.product_id, S.c.warehouse_id, S.c.batch_id).in_(bindparam("keys", expanding=True)))
            .order_by(S.c.product_id, S.c.warehouse_id, S.c.batch_id))
    keys = [(b.product_id, b.warehouse_id, b.batch_id) for b in ids.balances]
    params = []
    for chosen in (keys[:1], keys[2:5], [], [keys[7], (keys[7][0], 999, 999)], keys[::3], keys[5:6]):
        params.append({"pids": sorted({k[0] for k in chosen}), "keys": chosen})
    return stmt, params, {int, str, Decimal, datetime, date, NONE}


def _tuple_of_dec_and_datetime(ids: Ids):
    """A row-value IN whose items need the Dec and UTCDateTime bind processors (given unquantised, not in UTC)."""
    stmt = (select(S.c.id, S.c.qty, S.c.updated_at)
            .where(tuple_(S.c.qty, S.c.updated_at).in_(bindparam("vals", expanding=True))).order_by(S.c.id))
    vals = [(b.qty.normalize(), b.updated_at.astimezone(TZ8)) for b in ids.balances]
    miss = (vals[1][0], vals[1][1] + timedelta(microseconds=1))
    params = [{"vals": x} for x in (vals[1:2], vals[1:4], [miss], [*vals[4:6], miss], vals[6:7], vals[1:4])]
    return stmt, params, {int, Decimal, datetime}


def _documents_with_literals(ids: Ids):
    stmt = (select(*_DOC_COLS)
            .where(D.c.status.in_(("draft", "submitted")), D.c.type != "opening",
                   D.c.id.in_(bindparam("ids", expanding=True)))
            .order_by(D.c.id))
    d = ids.documents
    params = [{"ids": x} for x in (d, d[:2], [], d[4:], d[1:2], d)]
    return stmt, params, {int, str, bool, date, datetime, NONE}


def _freezes_with_literals(ids: Ids):
    stmt = (select(F.c.id, F.c.product_id, F.c.warehouse_id, F.c.reason, F.c.active, F.c.created_at, F.c.lifted_at)
            .where(F.c.active.is_(True), F.c.product_id.in_(bindparam("pids", expanding=True)),
                   tuple_(F.c.product_id, F.c.warehouse_id).in_(bindparam("pairs", expanding=True)))
            .order_by(F.c.id))
    p, w = ids.products, ids.warehouses
    pairs = [(pi, wi) for pi in p for wi in w]
    params = [{"pids": sorted({a for a, _ in x}), "pairs": x} for x in (pairs, pairs[:1], pairs[2:4], pairs[4:5])]
    return stmt, params, {int, str, bool, datetime, NONE}


def _literal_values(ids: Ids):
    """Literal Dec, Date and UTCDateTime values inside the statement go through their bind processors too."""
    stmt = (select(S.c.id, S.c.qty, S.c.updated_at, B.c.expiry).select_from(_BAL_JOIN)
            .where(S.c.qty > Decimal("0.5"), or_(B.c.expiry.is_(None), B.c.expiry < date(2030, 3, 1)),
                   S.c.updated_at >= T0 + timedelta(hours=1), S.c.product_id.in_(bindparam("pids", expanding=True)))
            .order_by(S.c.id))
    p = ids.products
    params = [{"pids": x} for x in (p, p[:1], p[1:3], [], p)]
    return stmt, params, {int, Decimal, datetime, date, NONE}


def _aggregates(ids: Ids):
    stmt = (select(S.c.product_id, func.sum(S.c.qty).label("total"), func.max(S.c.updated_at).label("latest"),
                   func.count().label("n"))
            .where(S.c.product_id.in_(bindparam("pids", expanding=True)))
            .group_by(S.c.product_id).order_by(S.c.product_id))
    p = ids.products
    params = [{"pids": x} for x in (p, p[:1], p[2:], p[1:2])]
    return stmt, params, {int, Decimal, datetime}


def _no_list(ids: Ids):
    stmt = select(*_DOC_COLS).where(D.c.number == bindparam("number"))
    return stmt, [{"number": f"D{n}"} for n in (0, 1, 2, 3, 9)], {int, str, bool, date, datetime, NONE}


CASES = {f.__name__.lstrip("_"): f for f in (_balances_by_product, _balances_by_key_tuples, _tuple_of_dec_and_datetime,
                                            _documents_with_literals, _freezes_with_literals, _literal_values,
                                            _aggregates, _no_list)}


@pytest.mark.parametrize("case", list(CASES))
async def test_all_returns_what_session_execute_returns(db, ids, case):
    """Same values, same types (6-place Decimal, aware UTC datetime, date, bool, None), same names, in order —
    with one Fast object across several list lengths (its shapes), in a write and in a read transaction."""
    stmt, param_sets, must_see = CASES[case](ids)
    fast = Fast(stmt)

    async def compare(s) -> list[int]:
        counts = []
        for params in param_sets:
            got = await fast.all(s, params)
            result = await s.execute(stmt, params)
            want = result.all()
            assert typed(got) == typed(want), params
            assert [r._fields for r in got] == [tuple(result.keys())] * len(want)
            assert [r._asdict() for r in got] == [r._asdict() for r in want]
            counts.append(len(want))
        return counts

    counts = await db.write(compare)
    async with db.read() as s:
        assert await compare(s) == counts
    assert sum(counts) > 0 and len(set(counts)) > 1  # not vacuous: rows came back, and not the same number each time
    async with db.read() as s:
        seen = set().union(*[_check_types(await fast.all(s, p)) for p in param_sets])
    assert must_see <= seen


# --- 2. many -------------------------------------------------------------------------------------------------

def _line(doc_id: int, n: int, **kw: Any) -> dict[str, Any]:
    return {"document_id": doc_id, "line_no": n, "product_id": kw.pop("product_id"),
            "warehouse_id": kw.pop("warehouse_id"), "unit": "kg", **kw}


def _line_rows(ids: Ids, doc_id: int) -> list[dict[str, Any]]:
    p, w = ids.products[0], ids.warehouses[0]
    return [
        # every column with a default given; the nullable ones (expiry, counted_qty, book_qty) left out
        _line(doc_id, 1, product_id=p, warehouse_id=w, qty=Decimal("1.23456789"), stock_qty=Decimal("2"),
              unit_price=Decimal("0.1234565"), tax_rate=Decimal("0.0000005"), reserved_qty=Decimal("7.1"),
              batch_code="B1", factor=24, discrepancy_type=""),
        _line(doc_id, 2, product_id=p, warehouse_id=w, qty=Decimal("-3"), stock_qty=Decimal("12345678.9999995"),
              unit_price=Decimal(0), tax_rate=Decimal("0.13"), reserved_qty=Decimal(0), batch_code="",
              factor=1, discrepancy_type="surplus"),
    ]


_LINE_VALUES = select(*[c for c in L.c if c.key not in ("id", "document_id")]).order_by(L.c.line_no)


async def test_many_inserts_what_a_plain_insert_inserts(db, ids):
    """Dec rounds to 6 places as the type does; columns left out read back as after session.execute(insert)."""
    fast = Fast(insert(L))

    async def work(s) -> tuple[list, list]:
        await fast.many(s, _line_rows(ids, ids.documents[0]))
        await s.execute(insert(L), _line_rows(ids, ids.documents[1]))
        # the raw INSERTs are in the session's own transaction: its statements see them
        mine = (await s.execute(_LINE_VALUES.where(L.c.document_id == ids.documents[0]))).all()
        return typed(mine), typed((await s.execute(_LINE_VALUES.where(L.c.document_id == ids.documents[1]))).all())

    in_txn, plain_in_txn = await db.write(work)
    assert in_txn == plain_in_txn
    async with db.read() as s:
        via_fast = (await s.execute(_LINE_VALUES.where(L.c.document_id == ids.documents[0]))).all()
        via_plain = (await s.execute(_LINE_VALUES.where(L.c.document_id == ids.documents[1]))).all()
    assert typed(via_fast) == typed(via_plain) == in_txn
    first = via_fast[0]._asdict()
    assert first["qty"] == Decimal("1.234568") and str(first["qty"]) == "1.234568"
    assert str(first["stock_qty"]) == "2.000000"
    assert str(first["unit_price"]) == "0.123456"  # half-even, as q6
    assert str(first["tax_rate"]) == "0.000000"
    assert str(via_fast[1]._asdict()["stock_qty"]) == "12345679.000000"
    assert first["expiry"] is None and first["counted_qty"] is None and first["book_qty"] is None


async def test_many_with_with_defaults_matches_an_insert_that_leaves_defaults_out(db, ids):
    """The posting path's way: with_defaults(table, row) fills Python-side defaults as a plain insert would."""
    fast = Fast(insert(L))
    p, w = ids.products[0], ids.warehouses[0]
    bare = [{"document_id": None, "line_no": n, "product_id": p, "warehouse_id": w, "qty": Decimal(n),
             "unit": "kg", "stock_qty": Decimal(n)} for n in (1, 2)]

    docs = [{"number": n, "type": "sales_order", "warehouse_id": None} for n in ("F", "P")]

    async def work(s) -> None:
        await fast.many(s, [with_defaults(L, {**r, "document_id": ids.documents[0]}) for r in bare])
        await s.execute(insert(L), [{**r, "document_id": ids.documents[1]} for r in bare])
        await Fast(insert(D)).many(s, [with_defaults(D, docs[0])])  # callable default: created_at=utcnow()
        await s.execute(insert(D), [docs[1]])

    before = datetime.now(UTC)
    await db.write(work)
    async with db.read() as s:
        via_fast = (await s.execute(_LINE_VALUES.where(L.c.document_id == ids.documents[0]))).all()
        via_plain = (await s.execute(_LINE_VALUES.where(L.c.document_id == ids.documents[1]))).all()
        doc_cols = [c for c in D.c if c.key not in ("id", "number")]
        docs = [r._asdict() for r in await s.execute(select(*doc_cols).where(D.c.number.in_(["F", "P"])))]
    assert typed(via_fast) == typed(via_plain)
    assert via_fast[0]._asdict()["batch_code"] == "" and via_fast[0]._asdict()["factor"] == 1
    created = [d.pop("created_at") for d in docs]
    assert typed([docs[0].values()]) == typed([docs[1].values()])
    assert all(before <= t <= datetime.now(UTC) and t.tzinfo is UTC for t in created)


async def test_many_applies_column_defaults_like_a_plain_insert(db, ids):
    p, w = ids.products[0], ids.warehouses[0]
    bare = {"line_no": 1, "product_id": p, "warehouse_id": w, "qty": Decimal(1), "unit": "kg",
            "stock_qty": Decimal(1)}

    async def work(s) -> None:
        await Fast(insert(L)).many(s, [{**bare, "document_id": ids.documents[0]}])
        await s.execute(insert(L), [{**bare, "document_id": ids.documents[1]}])

    await db.write(work)
    async with db.read() as s:
        via_fast = (await s.execute(_LINE_VALUES.where(L.c.document_id == ids.documents[0]))).all()
        via_plain = (await s.execute(_LINE_VALUES.where(L.c.document_id == ids.documents[1]))).all()
    assert typed(via_fast) == typed(via_plain)


async def test_many_update_binds_through_the_column_types(db, ids):
    """An executemany UPDATE with bindparams in SET (the posting path's balance update) stores what
    session.execute would: Dec rounded to 6 places, datetimes converted to UTC."""
    stmt = update(S).where(S.c.id == bindparam("b_id")).values(
        qty=bindparam("b_qty"), on_loan=bindparam("b_on_loan"), move_count=bindparam("b_n"),
        updated_at=bindparam("b_at"))
    fast = Fast(stmt)
    a, b, c, d = (bal.id for bal in ids.balances[:4])

    def rows(*keys: int) -> list[dict[str, Any]]:
        return [{"b_id": k, "b_qty": Decimal("1.23456789"), "b_on_loan": Decimal(-7) / 3, "b_n": 5 + i,
                 "b_at": T0 + timedelta(days=i, microseconds=1)} for i, k in enumerate(keys)]

    async def work(s) -> None:
        await fast.many(s, rows(a, b))
        await s.execute(stmt, rows(c, d))

    await db.write(work)
    async with db.read() as s:
        got = (await s.execute(select(S.c.qty, S.c.on_loan, S.c.move_count, S.c.updated_at)
                               .where(S.c.id.in_([a, b, c, d])).order_by(S.c.id))).all()
    assert typed(got[:2]) == typed(got[2:])
    assert tuple(got[0]) == (Decimal("1.234568"), Decimal("-2.333333"), 5,
                             datetime(2024, 3, 1, 0, 30, 15, 123457, tzinfo=UTC))
    assert str(got[0].qty) == "1.234568"


async def test_many_refuses_a_naive_datetime(db, ids):
    """The UTCDateTime bind processor runs on the raw path too (sqlite3 would store a naive value silently)."""
    fast = Fast(update(S).where(S.c.id == bindparam("b_id")).values(updated_at=bindparam("b_at")))
    bal = ids.balances[0]

    async def work(s) -> None:
        await fast.many(s, [{"b_id": bal.id, "b_at": datetime(2024, 1, 1)}])

    with pytest.raises((ValueError, StatementError), match="naive"):
        await db.write(work)
    async with db.read() as s:
        assert (await s.execute(select(S.c.updated_at).where(S.c.id == bal.id))).scalar_one() == T0


# --- 3. rowcount ---------------------------------------------------------------------------------------------

async def test_rowcount_counts_matched_rows(db, ids):
    by_type = Fast(update(D).where(D.c.type == bindparam("t")).values(note=bindparam("v_note")))
    by_range = Fast(update(D).where(D.c.id >= bindparam("lo"), D.c.id < bindparam("hi")).values(note="range"))
    d = ids.documents

    async def work(s) -> list[int]:
        counts = [await by_type.rowcount(s, {"t": t, "v_note": "x"}) for t in ("nope", "stock_count", "opening")]
        await s.execute(update(D).where(D.c.number == "D0").values(type="stock_count"))
        counts.append(await by_type.rowcount(s, {"t": "stock_count", "v_note": "one"}))  # sees the session's write
        for lo, hi in ((d[1], d[1]), (d[1], d[2]), (d[1], d[5]), (999, 1000)):
            counts.append(await by_range.rowcount(s, {"lo": lo, "hi": hi}))
        counts.append((await s.execute(update(D).where(D.c.type == "sales_issue").values(note="y"))).rowcount)
        counts.append(await by_type.rowcount(s, {"t": "sales_issue", "v_note": "z"}))
        counts.append(await by_type.rowcount(s, {"t": "opening", "v_note": "x"}))  # D6 already 'x': still counted
        return counts

    assert await db.write(work) == [0, 0, 3, 1, 0, 1, 4, 0, 2, 2, 2]
    async with db.read() as s:
        notes = dict((await s.execute(select(D.c.number, D.c.note))).all())
    assert notes == {"D0": "one", "D1": "range", "D2": "z", "D3": "x", "D4": "range", "D5": "z", "D6": "x",
                     "D7": "备注 7"}


async def test_update_with_an_expanding_in(db, ids):
    """Fast does not offer a list parameter inside INSERT/UPDATE/DELETE on SQLite (DML cannot take .params()):
    it says so before anything runs; on PostgreSQL the fallback runs it through session.execute."""
    by_ids = Fast(update(D).where(D.c.id.in_(bindparam("ids", expanding=True))).values(note="batch"))
    d = ids.documents

    async def work(s) -> list[int]:
        return [await by_ids.rowcount(s, {"ids": x}) for x in ([], d[:1], d[:5], [999], [*d[5:], 999])]

    if ON_SQLITE:
        with pytest.raises(NotImplementedError, match=r"session\.execute"):
            await db.write(work)
        async with db.read() as s:
            assert (await s.execute(select(func.count()).where(D.c.note == "batch"))).scalar_one() == 0
    else:
        assert await db.write(work) == [0, 1, 5, 0, 3]


# --- 4. errors -----------------------------------------------------------------------------------------------

def _warehouse(code: str) -> dict[str, Any]:
    return with_defaults(W, {"code": code, "name": f"仓 {code}"})


@pytest.mark.parametrize("via", ["many", "all"])
async def test_unique_violation_is_integrity_error_and_rolls_the_write_back(db, ids, via):
    fast_many = Fast(insert(W))
    fast_one = Fast(insert(W).returning(W.c.id))

    async def work(s) -> None:
        s.add(Warehouse(code="ORM", name="ORM 写入"))
        await s.flush()
        await fast_many.many(s, [_warehouse("RAW")])
        await s.execute(update(D).values(note="changed"))
        if via == "many":
            await fast_many.many(s, [_warehouse("NEW"), _warehouse("W1")])
        else:
            await fast_one.all(s, _warehouse("W1"))

    async def plain(s) -> None:
        await s.execute(insert(W), [_warehouse("W1")])

    for _ in range(3):  # the connection goes back clean: the next transactions begin and fail the same way
        with pytest.raises(IntegrityError, match=r"(?i)unique") as raised:
            await db.write(work)
        with pytest.raises(IntegrityError) as expected:
            await db.write(plain)
        assert type(raised.value) is type(expected.value)
        assert type(raised.value.orig) is type(expected.value.orig)
    async with db.read() as s:
        assert sorted((await s.execute(select(W.c.code))).scalars()) == ["W1", "W2"]
        assert "changed" not in set((await s.execute(select(D.c.note))).scalars())
    assert (await db.write(lambda s: fast_one.all(s, _warehouse("W3"))))[0][0] > 0  # and later writes commit
    async with db.read() as s:
        assert sorted((await s.execute(select(W.c.code))).scalars()) == ["W1", "W2", "W3"]


async def test_other_database_errors_keep_sqlalchemys_classes(db, ids):
    stmt = text("SELECT x FROM no_such_table")

    async def fast(s) -> None:
        await Fast(stmt).all(s)

    async def plain(s) -> None:
        await s.execute(stmt)

    with pytest.raises(DBAPIError) as raised:
        await db.write(fast)
    with pytest.raises(DBAPIError) as expected:
        await db.write(plain)
    assert type(raised.value) is type(expected.value)  # OperationalError on SQLite, ProgrammingError on PostgreSQL


# --- 5. objects / attach -------------------------------------------------------------------------------------

_DOC_BY_IDS = select(D).where(D.c.id.in_(bindparam("ids", expanding=True))).order_by(D.c.id)


async def test_objects_returns_the_sessions_object_untouched(db, ids):
    fast = Fast(_DOC_BY_IDS)
    d0, d1 = ids.documents[:2]

    async def work(s) -> None:
        doc = await s.get(Document, d0)
        doc.note = "local change"
        before = columns(doc)
        got = await fast.objects(s, Document, {"ids": [d0, d1]})
        assert got[0] is doc
        assert columns(doc) == before and s.is_modified(doc) and doc in s.dirty
        assert inspect(doc).attrs.note.history.added == ["local change"]
        assert got[1] is not doc and got[1].id == d1
        again = await fast.objects(s, Document, {"ids": [d1, d0]})
        assert again[0] is got[0] and again[1] is got[1]

    await db.write(work)


async def test_objects_builds_clean_persistent_objects_that_flush_later_changes(db, ids):
    fast = Fast(_DOC_BY_IDS)
    async with db.read() as s:
        orm = (await s.execute(select(Document).where(Document.id.in_(ids.documents)).order_by(Document.id)))
        orm = orm.scalars().all()
    want = [typed([columns(o).values()]) for o in orm]
    unloaded = inspect(orm[0]).unloaded

    async def work(s) -> list:
        objs = await fast.objects(s, Document, {"ids": ids.documents})
        for o in objs:
            st = inspect(o)
            assert st.persistent and not st.modified and st.unloaded == unloaded
            assert not s.is_modified(o) and o not in s.new and o not in s.dirty
            assert await s.get(Document, o.id) is o  # in the identity map: no second load
        got = [typed([columns(o).values()]) for o in objs]
        objs[1].note, objs[1].needs_review, objs[1].delivery_date = "flushed", True, date(2032, 2, 29)
        assert s.is_modified(objs[1]) and objs[1] in s.dirty
        await s.flush()
        assert not s.dirty
        row = (await s.execute(select(D.c.note, D.c.needs_review, D.c.delivery_date).where(D.c.id == objs[1].id)))
        assert tuple(row.one()) == ("flushed", True, date(2032, 2, 29))
        return got

    assert await db.write(work) == want
    async with db.read() as s:
        assert (await s.get(Document, ids.documents[1])).note == "flushed"
        assert (await s.get(Document, ids.documents[2])).note == "备注 2"


async def test_objects_fills_expired_attributes_like_the_orm_loader(db, ids):
    a, b = ids.balances[1].id, ids.balances[2].id

    async def work(s) -> None:
        orm_obj, fast_obj = await s.get(StockBalance, a), await s.get(StockBalance, b)
        s.expire(orm_obj, ["qty", "updated_at"])
        s.expire(fast_obj, ["qty", "updated_at"])
        await s.execute(select(StockBalance).where(StockBalance.id == a))  # the ORM refreshes what expired
        assert not inspect(orm_obj).unloaded
        [got] = await Fast(select(S).where(S.c.id == bindparam("id"))).objects(s, StockBalance, {"id": b})
        assert got is fast_obj
        assert not inspect(fast_obj).unloaded

    await db.write(work)


# --- 6. loaded -----------------------------------------------------------------------------------------------

async def test_loaded_objects_equal_a_fresh_orm_load(db, ids):
    insert_doc = Fast(insert(D).returning(D.c.id))
    insert_lines = Fast(insert(L))
    line_ids = Fast(select(L.c.line_no, L.c.id).where(L.c.document_id == bindparam("doc_id")))
    values = with_defaults(D, {
        **{c.key: None for c in D.c if c.key != "id"},
        "number": "N-LOADED", "type": "purchase_receipt", "status": "submitted", "warehouse_id": ids.warehouses[0],
        "needs_review": True, "delivery_date": date(2031, 2, 3), "submitted_at": T0,
        "created_at": T0 - timedelta(microseconds=1), "note": "loaded",
    })
    assert values["validation_mode"] == "strict" and values["returned"] is False

    async def work(s) -> tuple[dict, list[dict]]:
        doc_id = (await insert_doc.all(s, values))[0][0]
        rows = [with_defaults(L, {c.key: None for c in L.c if c.key != "id"} | r)
                for r in _line_rows(ids, doc_id)]
        await insert_lines.many(s, rows)
        line_id = dict(await line_ids.all(s, {"doc_id": doc_id}))
        doc = loaded(s, Document, {**values, "id": doc_id})
        lines = [loaded(s, DocumentLine, {**r, "id": line_id[r["line_no"]]}) for r in rows]
        for o in (doc, *lines):
            st = inspect(o)
            assert st.persistent and not st.modified and not s.is_modified(o)
            assert o not in s.new and o not in s.dirty
            assert await s.get(type(o), o.id) is o
        assert doc.submitted_at == T0 and doc.submitted_at.tzinfo is UTC
        assert str(lines[0].qty) == "1.234568"
        out = columns(doc), [columns(o) for o in lines]
        lines[1].counted_qty = Decimal("3.3333333")  # later changes are flushed
        await s.flush()
        assert (await s.execute(select(L.c.counted_qty).where(L.c.id == lines[1].id))).scalar_one() == Decimal(
            "3.333333")
        return out

    doc_values, line_values = await db.write(work)
    async with db.read() as s:
        doc = (await s.execute(select(Document).where(Document.number == "N-LOADED"))).scalar_one()
        fresh_lines = (await s.execute(select(DocumentLine).where(DocumentLine.document_id == doc.id)
                                       .order_by(DocumentLine.line_no))).scalars().all()
        fresh_doc = columns(doc)
    assert typed([doc_values.values()]) == typed([fresh_doc.values()])
    line_values[1]["counted_qty"] = Decimal("3.333333")
    assert [typed([v.values()]) for v in line_values] == [typed([columns(o).values()]) for o in fresh_lines]


async def test_loaded_normalises_negative_zero_as_it_reads_back(db, ids):
    fast = Fast(insert(W).returning(W.c.id))
    values = with_defaults(W, {"code": "NZ", "name": "负零", "allow_negative": True,
                               "negative_floor": Decimal("-0.0000004"), "ships_to_stores": True})

    async def work(s) -> str:
        wid = (await fast.all(s, values))[0][0]
        return str(loaded(s, Warehouse, {**values, "id": wid}).negative_floor)

    got = await db.write(work)
    async with db.read() as s:
        fresh = (await s.execute(select(Warehouse).where(Warehouse.code == "NZ"))).scalar_one()
    assert got == str(fresh.negative_floor) == "0.000000"


async def test_attach_and_loaded_keep_an_existing_object(db, ids):
    """attach: the identity map wins; a row read for an object not yet in the session makes a new one."""
    async def work(s) -> None:
        doc = await s.get(Document, ids.documents[0])
        doc.note = "mine"
        values = (await s.execute(select(D).where(D.c.id == doc.id))).one()._asdict()
        assert attach(s, Document, values) is doc and doc.note == "mine"
        other = (await s.execute(select(D).where(D.c.id == ids.documents[1]))).one()._asdict()
        obj = attach(s, Document, other)
        assert obj.number == "D1" and not s.is_modified(obj) and attach(s, Document, other) is obj

    await db.write(work)


# --- 7. missing parameters -----------------------------------------------------------------------------------

async def test_a_missing_parameter_is_an_error_not_null(db, ids):
    by_number = Fast(select(D.c.id).where(D.c.number == bindparam("number")))
    by_ids = Fast(select(D.c.id).where(D.c.id.in_(bindparam("ids", expanding=True)), D.c.type == bindparam("t")))
    set_note = Fast(update(D).where(D.c.id == bindparam("t_id")).values(note=bindparam("v_note")))
    add_lines = Fast(insert(L))
    error = KeyError if ON_SQLITE else StatementError  # StatementError: SQLAlchemy's own check on PostgreSQL
    # with a list parameter SQLAlchemy's compiler (render_postcompile) makes the same check on SQLite
    listed_error = InvalidRequestError if ON_SQLITE else StatementError
    line_rows = _line_rows(ids, ids.documents[0])
    del line_rows[1]["factor"]

    async def work(s) -> None:
        with pytest.raises(error, match="number"):
            await by_number.all(s, {})
        with pytest.raises(listed_error, match="'t'"):
            await by_ids.all(s, {"ids": ids.documents})
        with pytest.raises(error, match="v_note"):
            await set_note.rowcount(s, {"t_id": ids.documents[0]})
        with pytest.raises(error, match="factor"):
            await add_lines.many(s, line_rows)
        # nothing ran, and the failed shapes were not remembered half-built
        assert (await s.execute(select(func.count()).select_from(L))).scalar_one() == 0
        assert await by_number.all(s, {"number": "D0"}) == [(ids.documents[0],)]
        assert await by_number.all(s, {"number": None}) == []  # an explicit None binds NULL
        assert len(await by_ids.all(s, {"ids": ids.documents, "t": "opening"})) == 3
        assert await set_note.rowcount(s, {"t_id": ids.documents[0], "v_note": "ok"}) == 1

    await db.write(work)
    async with db.read() as s:
        assert (await s.get(Document, ids.documents[0])).note == "ok"


# --- 8. the raw path -----------------------------------------------------------------------------------------

async def test_fast_skips_sqlalchemys_execution_on_sqlite(db, ids):
    if not db.is_sqlite:
        pytest.skip("SQLite raw driver path; on PostgreSQL Fast runs its fallback through session.execute")
    stmt = select(D.c.id).where(D.c.id.in_(bindparam("ids", expanding=True)))
    fast, fast_update = Fast(stmt), Fast(update(D).where(D.c.id == bindparam("t_id")).values(note="raw"))
    fast_insert = Fast(insert(W))

    def watch(engine) -> list[str]:
        sent: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
        return sent

    async def run(s, sent: list[str], code: str) -> None:
        await s.execute(text("SELECT 1"))  # the transaction has begun
        sent.clear()
        assert len(await fast.all(s, {"ids": ids.documents[:3]})) == 3
        assert await fast_update.rowcount(s, {"t_id": ids.documents[0]}) == 1
        await fast_insert.many(s, [_warehouse(code)])
        assert sent == []
        await s.execute(stmt, {"ids": ids.documents[:3]})
        assert len(sent) == 1 and sent[0].startswith("SELECT documents.id")

    written = watch(db.write_engine)  # sqlite+jxcinline in the writer thread
    await db.write(lambda s: run(s, written, "R1"))
    session_sent = watch(db.engine)  # sqlite+jxcsqlite on this loop
    async with db.session() as s:
        await run(s, session_sent, "R2")
    read_sent = watch(db.read_engine)
    async with db.read(snapshot=False) as s:
        assert len(await fast.all(s, {"ids": ids.documents})) == len(ids.documents)
    assert read_sent == []


# --- divergences found (see the reasons) ---------------------------------------------------------------------

async def test_literal_in_list_without_list_parameters(db, ids):
    stmt = select(D.c.id).where(D.c.status.in_(("draft", "submitted")), D.c.type == bindparam("t")).order_by(D.c.id)

    async def work(s) -> None:
        assert await Fast(stmt).all(s, {"t": "opening"}) == (await s.execute(stmt, {"t": "opening"})).all()

    await db.write(work)


async def test_expanding_parameter_named_like_its_column(db, ids):
    stmt = select(D.c.id).where(D.c.id.in_(bindparam("id", expanding=True)), D.c.id != ids.documents[0])

    async def work(s) -> None:
        params = {"id": ids.documents[:3]}
        assert await Fast(stmt).all(s, params) == (await s.execute(stmt, params)).all()

    await db.write(work)


async def test_expanding_parameter_given_as_a_set(db, ids):
    stmt = select(D.c.id).where(D.c.id.in_(bindparam("ids", expanding=True))).order_by(D.c.id)

    async def work(s) -> None:
        params = {"ids": set(ids.documents[:3])}
        assert await Fast(stmt).all(s, params) == (await s.execute(stmt, params)).all()

    await db.write(work)


@pytest.mark.parametrize("kind", ["function", "expression", "repeated_name"])
async def test_row_field_names_of_unlabelled_columns(db, ids, kind):
    cols = {"function": (func.max(S.c.qty), func.count()), "expression": (S.c.product_id, S.c.product_id + 0),
            "repeated_name": (S.c.id, B.c.id)}[kind]
    stmt = select(*cols).select_from(_BAL_JOIN).where(S.c.id == ids.balances[0].id)

    async def work(s) -> None:
        got, want = await Fast(stmt).all(s), await s.execute(stmt)
        assert got[0]._fields == tuple(want.keys())

    await db.write(work)
