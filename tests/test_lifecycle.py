"""Cancellation, finance hooks, borrow slips, transfers, counts, reservations and stock as of a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from core.errors import DomainError
from core.ledger.documents import (
    cancel_document,
    create_document,
    post_document,
    reject_document,
    reopen_document,
    submit_document,
)
from core.ledger.stock import find_products, stock_levels
from core.models import Batch, Document, FinanceEntry, StockMove
from tests.factories import line, post, seed
from tests.test_posting_checks import on_hand

D = Decimal


async def test_cancel_restores_balances_with_reversal_moves(db, settings):
    async with db.session() as s:
        await seed(s)
        rk = await post(s, settings, "purchase_receipt", [line("CREAM", 10, "kg", unit_price=20, tax_rate="0.13")],
                        warehouse="WH1", supplier="SUP1")
        ck = await post(s, settings, "sales_issue", [line("CREAM", 4, "kg", unit_price=50)], warehouse="WH1",
                        customer="C2")
        with pytest.raises(DomainError) as e:  # would drive a strict warehouse negative
            await cancel_document(s, settings, rk)
        assert e.value.code == "NEGATIVE_STOCK" and "作废" in e.value.message_zh
        await cancel_document(s, settings, ck)
        await cancel_document(s, settings, rk)
        assert await on_hand(s, "CREAM", "WH1") == 0
        moves = list(await s.scalars(select(StockMove).order_by(StockMove.id)))
        assert len(moves) == 4 and sum(m.qty for m in moves) == 0
        assert moves[2].reversal_of_id == moves[1].id
        fin = await s.scalar(select(func.sum(FinanceEntry.amount)))
        assert D(fin) == 0
        assert rk.status == "cancelled"


async def test_payable_receivable_and_sales_return(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("SUGAR", 2, "袋", unit_price=100, tax_rate="0.13")],
                   warehouse="WH1", supplier="SUP1")
        payable = await s.scalar(select(FinanceEntry).where(FinanceEntry.kind == "payable"))
        assert payable.amount == D("226") and payable.qty == D(50)
        ck = await post(s, settings, "sales_issue", [line("SUGAR", 10, "kg", unit_price=8)], warehouse="WH1",
                        customer="C2")
        rec = await s.scalar(select(FinanceEntry).where(FinanceEntry.kind == "receivable"))
        assert rec.amount == D(80)
        with pytest.raises(DomainError):
            await create_document(s, settings, "sales_return", [line("SUGAR", 1, "kg")], warehouse="WH1")
        await post(s, settings, "sales_return", [line("SUGAR", 4, "kg", unit_price=8)], warehouse="WH1",
                   customer="C2", ref_number=ck.number)
        assert await on_hand(s, "SUGAR", "WH1") == D(44)
        total = await s.scalar(select(func.sum(FinanceEntry.amount)).where(FinanceEntry.kind == "receivable"))
        assert D(total) == D(48)
        await s.refresh(ck)
        assert ck.returned is True


async def test_borrow_slip_moves_stock_on_loan_and_back(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 10, "kg")], warehouse="WH1")
        await post(s, settings, "borrow", [line("CREAM", 3, "kg")], warehouse="WH1", customer="C1",
                   due_date=date.today() + timedelta(days=7))
        [row] = await stock_levels(s, await find_products(s, "CREAM"))
        assert (row.on_hand, row.on_loan) == (D(7), D(3))
        with pytest.raises(DomainError) as e:
            await post(s, settings, "borrow_return", [line("CREAM", 4, "kg")], warehouse="WH1", customer="C1")
        assert e.value.code == "NEGATIVE_LOAN"
        await post(s, settings, "borrow_return", [line("CREAM", 2, "kg")], warehouse="WH1", customer="C1")
        [row] = await stock_levels(s, await find_products(s, "CREAM"))
        assert (row.on_hand, row.on_loan) == (D(9), D(1))


async def test_transfer_keeps_batches_and_respects_direct_ship_switch(db, settings):
    exp = date.today() + timedelta(days=30)
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("MILK", 1, "箱", batch="B1", expiry=exp)], warehouse="WH1")
        await post(s, settings, "transfer", [line("MILK", 10, "瓶")], warehouse="WH1", to_warehouse="S02")
        levels = {r.warehouse: r for r in await stock_levels(s, await find_products(s, "MILK"))}
        assert levels["WH1"].on_hand == 14 and levels["S02"].on_hand == 10
        assert levels["S02"].batches[0].batch == "B1" and levels["S02"].batches[0].expiry == exp
        from core.models import Warehouse
        wh = await s.scalar(select(Warehouse).where(Warehouse.code == "WH1"))
        wh.ships_to_stores = False
        with pytest.raises(DomainError) as e:
            await create_document(s, settings, "transfer", [line("MILK", 1, "瓶")], warehouse="WH1",
                                  to_warehouse="S02")
        assert e.value.code == "NO_DIRECT_SHIP" and "门店 S02" in e.value.message_zh
        s02 = await s.scalar(select(Warehouse).where(Warehouse.code == "S02"))
        s02.kind = "other"  # the rule is about stores: to a warehouse that is not a store it may still send
        await create_document(s, settings, "transfer", [line("MILK", 1, "瓶")], warehouse="WH1", to_warehouse="S02")


async def test_stock_count_creates_discrepancy_which_posts_the_difference(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 10, "kg")], warehouse="WH1")
        count = await create_document(s, settings, "stock_count",
                                      [line("CREAM", 0, "kg", counted_qty="8.5", discrepancy_type="自然损耗")],
                                      warehouse="WH1")
        await submit_document(s, settings, count)
        assert count.lines[0].book_qty == D(10)
        diff = await s.scalar(
            select(Document).where(Document.type == "discrepancy").options(selectinload(Document.lines))
        )
        assert diff.status == "submitted" and diff.lines[0].stock_qty == D("-1.5")
        await post_document(s, settings, diff)
        assert await on_hand(s, "CREAM", "WH1") == D("8.5")


async def test_reject_and_reopen(db, settings):
    async with db.session() as s:
        await seed(s)
        doc = await create_document(s, settings, "loss", [line("CREAM", 1, "kg")], warehouse="WH1")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError):
            await reject_document(s, doc, "  ")
        await reject_document(s, doc, "数量不对")
        await reopen_document(s, doc)
        assert doc.status == "draft"


async def test_strategic_sales_order_reserves_until_fulfilled(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 100, "kg")], warehouse="WH1")
        so = await create_document(s, settings, "sales_order", [line("CREAM", 40, "kg")], warehouse="WH1",
                                   customer="C1", delivery_date=date.today() + timedelta(days=3))
        await submit_document(s, settings, so)
        plain = await create_document(s, settings, "sales_order", [line("CREAM", 40, "kg")], warehouse="WH1",
                                      customer="C2")
        await submit_document(s, settings, plain)
        [row] = await stock_levels(s, await find_products(s, "淡奶"))
        assert row.reserved == D(6) and row.available == D(94)
        await post(s, settings, "sales_issue", [line("CREAM", 40, "kg")], warehouse="WH1", customer="C1",
                   ref_number=so.number)
        await s.refresh(so)
        assert so.status == "posted"
        [row] = await stock_levels(s, await find_products(s, "CREAM"))
        assert row.reserved == 0 and row.on_hand == 60


async def test_stock_at_matches_replay_of_moves(db, settings):
    times = []
    async with db.session() as s:
        await seed(s)
    base = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    for i, (kind, qty) in enumerate([("purchase_receipt", 10), ("sales_issue", 3), ("purchase_receipt", 5),
                                     ("loss", 2), ("sales_issue", 4)]):
        now = base + timedelta(hours=i)
        times.append(now)
        async with db.session() as s:
            doc = await create_document(s, settings, kind, [line("CREAM", qty, "kg")], warehouse="WH1", now=now)
            await submit_document(s, settings, doc, now=now)
            await post_document(s, settings, doc, now=now)
    async with db.read() as s:
        moves = list(await s.scalars(select(StockMove).order_by(StockMove.id)))
        products = await find_products(s, "CREAM")
        for t in [base - timedelta(minutes=1), *[x + timedelta(minutes=30) for x in times]]:
            replay = sum((m.qty for m in moves if m.posted_at <= t), D(0))
            rows = await stock_levels(s, products, at=t)
            got = rows[0].on_hand if rows else D(0)
            assert got == replay
        assert (await stock_levels(s, products, "WH1", at=times[2]))[0].on_hand == D(12)


async def test_find_products_by_sku_barcode_and_fragment(db, settings):
    async with db.session() as s:
        await seed(s)
        assert [p.sku for p in await find_products(s, "6900000000028")] == ["MILK"]
        assert [p.sku for p in await find_products(s, "奶")] == ["CREAM", "MILK"]
        assert [p.sku for p in await find_products(s, "SUGAR")] == ["SUGAR"]
        assert await find_products(s, "100%") == []
        with pytest.raises(DomainError):
            await find_products(s, "  ")


async def test_batches_unique_under_concurrent_receipts(db, settings):
    async with db.session() as s:
        await seed(s)

    async def receive(i: int) -> None:
        async def work(session):
            doc = await create_document(session, settings, "purchase_receipt",
                                        [line("MILK", 1, "瓶", batch="SAME")], warehouse="WH1")
            await submit_document(session, settings, doc)
            await post_document(session, settings, doc)
        await db.write(work)

    await asyncio.gather(*(receive(i) for i in range(8)))
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Batch).where(Batch.code == "SAME")) == 1
        assert await on_hand(s, "MILK", "WH1") == 8
