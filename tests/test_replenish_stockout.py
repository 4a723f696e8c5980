"""Stock-out days read in the database against the rule followed move by move in Python, on random ledgers."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import select

from core.models import ON_HAND, ON_LOAN, Batch, Document, Product, StockMove, Warehouse
from core.replenish import history
from core.replenish.history import Window, load_products, stockout_days
from tests.factories import seed

TODAY = date(2026, 11, 20)
DAYS = 20


def reference(moves: list[tuple[int, int, int, str, Decimal, datetime, int]], pid: int, window: Window,
              wid: int | None) -> np.ndarray:
    """The module rule, literally: postings (document, time) netted, in time order; a day is out when the level is
    ≤ 0 at its start, after any posting in it, or at its end."""
    postings: dict[tuple[int, datetime], list[int | Decimal]] = {}
    for mid, p, w, bucket, qty, at, doc in sorted(moves, key=lambda m: (m[5], m[0])):
        if p != pid or bucket != ON_HAND or (wid is not None and w != wid):
            continue
        postings.setdefault((doc, at), [mid, Decimal(0)])[1] += qty
    ordered = sorted(((at, first, q) for (_doc, at), (first, q) in postings.items()), key=lambda x: (x[0], x[1]))
    out = np.zeros(window.days, dtype=bool)
    level, k = Decimal(0), 0
    for d in range(window.days):
        day_start = datetime.combine(window.start + timedelta(days=d), time(0), window.tz)
        day_end = day_start + timedelta(days=1)
        while k < len(ordered) and ordered[k][0] < day_start:
            level += ordered[k][2]
            k += 1
        hit = level <= 0
        while k < len(ordered) and ordered[k][0] < day_end:
            level += ordered[k][2]
            hit = hit or level <= 0
            k += 1
        out[d] = hit
    return out


async def _random_ledger(db, settings, rng: random.Random) -> list[tuple]:
    """Moves written straight into the ledger: receipts, issues, loans, transfers (one document, two warehouses),
    simultaneous postings of two documents, moves before the window; levels often at or around zero."""
    tz = settings.timezone
    async with db.session() as s:
        await seed(s)
        s.add_all(Product(sku=f"P{i}", name=f"商品{i}", category="原料", stock_unit="个", purchase_unit="个",
                          purchase_factor=1) for i in range(5))
        await s.flush()
        pids = [p for p in await s.scalars(select(Product.id).order_by(Product.id))]
        wids = [w for w in await s.scalars(select(Warehouse.id).order_by(Warehouse.id))]
        batches = {}
        for p in pids:
            b = Batch(product_id=p, code="")
            s.add(b)
            await s.flush()
            batches[p] = b.id
        moves, n_doc = [], 0
        first = datetime.combine(TODAY - timedelta(days=DAYS + 5), time(0), tz)
        for _ in range(160):
            n_doc += 1
            doc = Document(number=f"R{n_doc:04d}", type="adjustment", status="posted", validation_mode="strict")
            s.add(doc)
            await s.flush()
            at = first + timedelta(minutes=rng.randrange(0, (DAYS + 5) * 24 * 60))
            at = at.replace(minute=0) if rng.random() < 0.2 else at  # collisions between documents
            p = rng.choice(pids)
            kind = rng.random()
            if kind < 0.25:  # a transfer: out of one warehouse, into another, same posting
                a, b = rng.sample(wids, 2)
                q = Decimal(rng.randint(1, 4))
                legs = [(p, a, ON_HAND, -q), (p, b, ON_HAND, q)]
            elif kind < 0.35:
                legs = [(p, rng.choice(wids), ON_LOAN, Decimal(rng.randint(1, 3)))]
            else:
                legs = [(p, rng.choice(wids), ON_HAND, Decimal(rng.randint(-4, 4)) or Decimal(1))]
            for pid, wid, bucket, qty in legs:
                m = StockMove(document_id=doc.id, product_id=pid, warehouse_id=wid, batch_id=batches[pid],
                              bucket=bucket, qty=qty, balance_after=Decimal(0), posted_at=at)
                s.add(m)
                await s.flush()
                moves.append((m.id, pid, wid, bucket, qty, at, doc.id))
        return moves


@pytest.mark.parametrize("seed_value", [1, 2, 3])
async def test_stockout_days_match_the_rule_followed_move_by_move(db, settings, monkeypatch, seed_value):
    moves = await _random_ledger(db, settings, random.Random(seed_value))
    monkeypatch.setattr(history, "STOCKOUT_CHUNK", 2)  # several chunks, products split across them
    window = Window.ending_yesterday(TODAY, DAYS, settings.timezone)
    async with db.read() as s:
        index = await load_products(s)
        wids = [w for w in await s.scalars(select(Warehouse.id).order_by(Warehouse.id))]
        some = await load_products(s, index.ids[1::2].tolist())
        for wid in [None, *wids]:
            got = await stockout_days(s, index, window, wid)
            for i, pid in enumerate(index.ids.tolist()):
                assert (got[i] == reference(moves, pid, window, wid)).all(), (pid, wid)
        got = await stockout_days(s, some, window)
        for i, pid in enumerate(some.ids.tolist()):
            assert (got[i] == reference(moves, pid, window, None)).all(), pid
    flagged = sum(reference(moves, pid, window, None).sum() for pid in index.ids.tolist())
    assert 0 < flagged < len(index) * DAYS  # the ledger has days both in and out of stock


async def _posted_ledger(db, settings, rng: random.Random, shuffled: bool) -> list[tuple]:
    """Receipts and sales through the real posting path (the store S01 may go to −5), posted in time
    order or in a shuffled order (history entered late); the moves as the ledger wrote them."""
    from core.errors import DomainError
    from tests.factories import line
    from tests.ledger_history import dated

    tz = settings.timezone
    first = datetime.combine(TODAY - timedelta(days=DAYS + 3), time(0), tz)
    plan = []
    for _ in range(70):
        at = first + timedelta(minutes=rng.randrange(0, (DAYS + 3) * 24 * 60))
        sku, kind = rng.choice(["CREAM", "SUGAR"]), rng.random()
        unit = "kg"
        if kind < 0.35:
            plan.append((at, "purchase_receipt", sku, unit, rng.randint(1, 5), rng.choice(["WH1", "S01"]), None))
        else:
            plan.append((at, "sales_issue", sku, unit, rng.randint(1, 3), rng.choice(["WH1", "S01"]), None))
    for _ in range(4):  # FLOUR is only received: above zero from its first receipt on (answered without its moves)
        at = first + timedelta(minutes=rng.randrange(0, (DAYS + 3) * 24 * 60))
        plan.append((at, "purchase_receipt", "FLOUR", "kg", rng.randint(1, 5), "WH1", None))
    plan.sort(key=lambda x: x[0])
    if shuffled:
        rng.shuffle(plan)
    async with db.session() as s:
        await seed(s)
        s.add(Product(sku="FLOUR", name="面粉", category="原料", stock_unit="kg", purchase_unit="kg"))
        await s.flush()
        for at, kind, sku, unit, qty, wh, to in plan:
            try:
                async with s.begin_nested():
                    await dated(s, settings, kind, [line(sku, qty, unit)], at, warehouse=wh,
                                **({"to_warehouse": to} if to else {}),
                                **({"supplier": "SUP1"} if kind == "purchase_receipt" else {}),
                                **({"customer": "C2"} if kind == "sales_issue" else {}))
            except DomainError:
                continue  # refused (not enough stock in WH1, or S01 below −5): nothing posted
        rows = (await s.execute(select(StockMove.id, StockMove.product_id, StockMove.warehouse_id, StockMove.bucket,
                                       StockMove.qty, StockMove.posted_at, StockMove.document_id))).all()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("seed_value", [4, 5])
async def test_stockout_days_through_the_posting_path_in_and_out_of_time_order(db, settings, seed_value, shuffled):
    """Products whose keys never reached zero are answered from their first move alone; a key posted out of time
    order (flagged on its balance) or one that reached zero has its moves read: both agree with the rule."""
    from dataclasses import replace

    from core.models import StockBalance

    settings = replace(settings, allow_backdating=True)  # what lets history be entered out of order
    moves = await _posted_ledger(db, settings, random.Random(seed_value), shuffled)
    assert len(moves) > 40
    window = Window.ending_yesterday(TODAY, DAYS, settings.timezone)
    async with db.read() as s:
        index = await load_products(s)
        unordered = set((await s.scalars(select(StockBalance.product_id).where(StockBalance.unordered))).all())
        wids = [w for w in await s.scalars(select(Warehouse.id).order_by(Warehouse.id))]
        for wid in [None, *wids]:
            got = await stockout_days(s, index, window, wid)
            for i, pid in enumerate(index.ids.tolist()):
                assert (got[i] == reference(moves, pid, window, wid)).all(), (pid, wid)
    assert bool(unordered) == shuffled  # shuffled postings are flagged, time-ordered ones are not
