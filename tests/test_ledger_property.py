"""Property: for random postings and cancellations, balances equal their moves and strict stock never goes negative."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from core.config import load_config
from core.errors import DomainError
from core.ledger.documents import cancel_document, create_document, get_document, post_document, submit_document
from core.ledger.posting import sum_moves
from core.models import StockBalance, StockMove, Warehouse
from core.storage import Database
from tests.conftest import reset_schema, test_database_url
from tests.factories import line, seed

SETTINGS = load_config(None, env={})
EXP = date.today() + timedelta(days=90)

op = st.one_of(
    st.tuples(st.just("purchase_receipt"), st.sampled_from(["WH1", "S01", "S02"]), st.integers(1, 20),
              st.sampled_from(["", "B1", "B2"])),
    st.tuples(st.just("sales_issue"), st.sampled_from(["WH1", "S01", "S02"]), st.integers(1, 15), st.just("")),
    st.tuples(st.just("loss"), st.sampled_from(["WH1", "S02"]), st.integers(1, 5), st.just("")),
    st.tuples(st.just("adjustment"), st.sampled_from(["WH1", "S01"]), st.integers(-8, 8).filter(bool), st.just("")),
    st.tuples(st.just("transfer"), st.sampled_from(["WH1", "S02"]), st.integers(1, 10), st.just("")),
    st.tuples(st.just("borrow"), st.sampled_from(["WH1", "S01"]), st.integers(1, 6), st.just("")),
    st.tuples(st.just("borrow_return"), st.sampled_from(["WH1", "S01"]), st.integers(1, 6), st.just("")),
    st.tuples(st.just("cancel"), st.just(""), st.integers(0, 30), st.just("")),
)


async def _apply(db: Database, posted: list[str], kind: str, wh: str, qty: int, batch: str) -> None:
    async def work(session):
        if kind == "cancel":
            if not posted:
                return
            number = posted[qty % len(posted)]
            await cancel_document(session, SETTINGS, await get_document(session, number))
            posted.remove(number)
            return
        sku = "MILK" if batch else "CREAM"
        unit = "瓶" if batch else "kg"
        kw = {"warehouse": wh}
        if kind == "transfer":
            kw["to_warehouse"] = "S01" if wh != "S01" else "WH1"
        li = line(sku, qty, unit, batch=batch, expiry=EXP if batch else None)
        doc = await create_document(session, SETTINGS, kind, [li], **kw)
        await submit_document(session, SETTINGS, doc)
        await post_document(session, SETTINGS, doc)
        posted.append(doc.number)

    try:
        await db.write(work)
    except DomainError:
        pass  # refused postings must change nothing; the invariants below check that


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=25))
async def test_balances_equal_moves_and_strict_never_negative(ops):
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(test_database_url(Path(tmp)))
        try:
            await reset_schema(db)
            async with db.session() as s:
                await seed(s)
            posted: list[str] = []
            for kind, wh, qty, batch in ops:
                await _apply(db, posted, kind, wh, qty, batch)
            async with db.read() as s:
                sums = await sum_moves(s)
                strict = {w.id for w in await s.scalars(select(Warehouse).where(Warehouse.allow_negative.is_(False)))}
                balances = list(await s.scalars(select(StockBalance)))
                for b in balances:
                    assert b.qty == sums.get((b.product_id, b.warehouse_id, b.batch_id, "stock"), Decimal(0))
                    assert b.on_loan == sums.get((b.product_id, b.warehouse_id, b.batch_id, "loan"), Decimal(0))
                    assert b.on_loan >= 0
                    if b.warehouse_id in strict:
                        assert b.qty >= 0
                keys = {(b.product_id, b.warehouse_id, b.batch_id) for b in balances}
                assert {k[:3] for k in sums} <= keys
                # every move's balance_after equals the running sum of its key and bucket
                running: dict[tuple, Decimal] = {}
                for m in await s.scalars(select(StockMove).order_by(StockMove.id)):
                    k = (m.product_id, m.warehouse_id, m.batch_id, m.bucket)
                    running[k] = running.get(k, Decimal(0)) + m.qty
                    assert m.balance_after == running[k]
        finally:
            await db.dispose()
