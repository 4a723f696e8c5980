"""Concurrent creators and posters: unique numbers, no oversell (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select

from core.errors import DomainError
from core.ledger.documents import create_document, post_document, submit_document
from core.ledger.numbering import next_number
from core.models import DocCounter, Document, StockBalance, StockMove
from tests.factories import line, post, seed


async def test_twenty_concurrent_creators_get_unique_numbers(db, settings):
    async with db.session() as s:
        await seed(s)

    async def create(i: int) -> str:
        async def work(session):
            doc = await create_document(session, settings, "purchase_receipt", [line("CREAM", 1, "kg")],
                                        warehouse="WH1")
            return doc.number
        return await db.write(work)

    numbers = await asyncio.gather(*(create(i) for i in range(20)))
    assert len(set(numbers)) == 20
    assert all(re.fullmatch(r"RK\d{8}\d{3}", n) for n in numbers)
    assert sorted(int(n[-3:]) for n in numbers) == list(range(1, 21))


async def test_thousandth_number_of_a_day_gets_four_digits(db, settings):
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    async with db.session() as s:
        s.add(DocCounter(prefix="RK", day="20261125", last=999))
        await s.flush()
        assert await next_number(s, "RK", now, settings.timezone) == "RK202611251000"
        assert await next_number(s, "CK", now, settings.timezone) == "CK20261125001"
        # the day is the local (Asia/Shanghai) day: 20:00 UTC is already the next day there
        late = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
        assert await next_number(s, "RK", late, settings.timezone) == "RK20261126001"


async def test_fifty_concurrent_issues_against_ten_units_post_exactly_ten(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 10, "kg")], warehouse="WH1")

    async def issue(i: int) -> str:
        async def work(session):
            doc = await create_document(session, settings, "sales_issue", [line("CREAM", 1, "kg")], warehouse="WH1")
            await submit_document(session, settings, doc)
            await post_document(session, settings, doc)
            return "posted"
        try:
            return await db.write(work)
        except DomainError as e:
            return e.code

    results = await asyncio.gather(*(issue(i) for i in range(50)))
    assert results.count("posted") == 10
    assert set(results) == {"posted", "NEGATIVE_STOCK"}
    async with db.read() as s:
        assert await s.scalar(select(func.sum(StockBalance.qty))) == 0
        issued = await s.scalar(select(func.sum(StockMove.qty)).where(StockMove.qty < 0))
        assert issued == Decimal(-10)
        posted = await s.scalar(
            select(func.count()).select_from(Document).where(Document.type == "sales_issue",
                                                             Document.status == "posted"))
        assert posted == 10
