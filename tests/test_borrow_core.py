"""core.ledger.borrow: what people type (items, quantities, return dates), the return rate checked against a small
case computed by hand, and two returns of one slip at once returning it once."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.errors import DomainError
from core.ledger import borrow
from core.ledger.documents import cancel_document, create_document, post_document, submit_document
from core.models import Document, Product, User
from tests.factories import line, post, seed

TODAY = date(2026, 12, 20)


def test_items_batches_and_the_next_product_are_told_apart():
    known = {"6930180079197", "6921581187857"}
    items, due = borrow.parse_items(["6930180079197", "2kg", "CR1", "6921581187857", "3", "12-31"], known, TODAY)
    assert items == [borrow.Item("6930180079197", "2kg", "CR1"), borrow.Item("6921581187857", "3")]
    assert due == date(2026, 12, 31)
    # a batch in front of a known barcode is a batch; an unknown word followed by a quantity is the next product
    items, _ = borrow.parse_items(["RM-CREAM", "2", "B1", "6921581187857", "3"], known, TODAY)
    assert [i.batch for i in items] == ["B1", ""]
    items, _ = borrow.parse_items(["RM-CREAM", "2", "XX", "3"], known, TODAY)
    assert [(i.query, i.batch) for i in items] == [("RM-CREAM", ""), ("XX", "")]
    with pytest.raises(DomainError, match="后面缺少数量"):
        borrow.parse_items(["RM-CREAM"], known, TODAY)


def test_return_dates_and_quantities():
    assert borrow.parse_due("2027-01-05", TODAY) == date(2027, 1, 5)
    assert borrow.parse_due("01-05", TODAY) == date(2027, 1, 5)  # the next such day
    assert borrow.parse_due("12月31日", TODAY) == date(2026, 12, 31)
    assert borrow.parse_due("7天", TODAY) == date(2026, 12, 27)
    assert borrow.parse_due("CR1", TODAY) is None
    with pytest.raises(DomainError, match="已经过了"):
        borrow.parse_due("2026-12-19", TODAY)
    with pytest.raises(DomainError, match="不存在"):
        borrow.parse_due("2027-02-30", TODAY)
    assert borrow.parse_qty("3箱") == (Decimal(3), "箱")
    assert borrow.parse_qty("1.5") == (Decimal("1.5"), "")
    for bad, rule in (("1e30", "科学计数法"), ("0", "必须大于 0"), ("0.0000001", "超过 6 位"), ("-2", "科学计数法")):
        with pytest.raises(DomainError, match=rule):
            borrow.parse_qty(bad)


def at(settings, y: int, m: int, d: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, tzinfo=settings.timezone)


async def _slip(s, settings, customer: str, qty: int, due: date, when: datetime) -> Document:
    doc = await create_document(s, settings, "borrow", [line("CREAM", qty, "kg")], warehouse="WH1",
                                customer=customer, created_by="张库管", due_date=due, now=when)
    await submit_document(s, settings, doc, when)
    await post_document(s, settings, doc, when)
    return doc


async def test_the_return_rate_of_a_small_case_computed_by_hand(db, settings):
    """March 2025, slips due in the month:
    S1 C1 10 kg due 03-10: 6 back on 03-05 (on time), 4 on 03-25 (late)
    S2 C1  5 kg due 03-20: 5 back on 03-20 at 23:30 local (on time: the due date's last hour)
    S3 C2  8 kg due 03-15: 2 back on 04-02 (late), 6 still out
    S4 C2  3 kg due 04-05 (April): 3 back on 04-01;  S5 C2 4 kg due 03-12: cancelled, not counted
    C1 = (6 + 5) / 15 = 73.3 %, C2 = 0 / 8 = 0 %, overall = 11 / 23 = 47.8 %."""

    async def work(s) -> dict[str, str]:
        await seed(s)
        when = at(settings, 2025, 2, 1)
        receipt = await create_document(s, settings, "purchase_receipt", [line("CREAM", 100, "kg")], warehouse="WH1",
                                        supplier="SUP1", now=when)
        await submit_document(s, settings, receipt, when)
        await post_document(s, settings, receipt, when)
        when = at(settings, 2025, 2, 10)
        slips = {"S1": await _slip(s, settings, "C1", 10, date(2025, 3, 10), when),
                 "S2": await _slip(s, settings, "C1", 5, date(2025, 3, 20), when),
                 "S3": await _slip(s, settings, "C2", 8, date(2025, 3, 15), when),
                 "S4": await _slip(s, settings, "C2", 3, date(2025, 4, 5), when),
                 "S5": await _slip(s, settings, "C2", 4, date(2025, 3, 12), when)}
        await cancel_document(s, settings, slips["S5"], at(settings, 2025, 2, 11))
        cream = (await s.scalars(select(Product).where(Product.sku == "CREAM"))).one()
        uid = await s.scalar(select(User.id).where(User.name == "张库管"))
        for name, qty, when in (("S1", 6, at(settings, 2025, 3, 5)), ("S2", 5, at(settings, 2025, 3, 20, 23, 30)),
                                ("S1", 4, at(settings, 2025, 3, 25)), ("S4", 3, at(settings, 2025, 4, 1)),
                                ("S3", 2, at(settings, 2025, 4, 2))):
            await borrow.post_return(s, settings, slips[name].number, [borrow.ReturnWant(cream, Decimal(qty))], uid,
                                     when)
        return {k: v.number for k, v in slips.items()}

    numbers = await db.write(work)
    start, end = borrow.month_bounds(date(2025, 3, 14))
    assert (start, end) == (date(2025, 3, 1), date(2025, 3, 31))
    async with db.read() as s:
        march = await borrow.return_rates(s, settings.timezone, start, end, as_of=date(2025, 5, 1))
        early = await borrow.return_rates(s, settings.timezone, start, end, as_of=date(2025, 3, 16))
        april = await borrow.return_rates(s, settings.timezone, *borrow.month_bounds(date(2025, 4, 1)),
                                          as_of=date(2025, 5, 1))
    by_code = {r.code: r for r in march.customers}
    c1, c2, all_ = by_code["C1"], by_code["C2"], march.overall
    assert (c1.lent, c1.on_time, c1.late, c1.out, c1.slips) == (15, 11, 4, 0, 2)
    assert (c2.lent, c2.on_time, c2.late, c2.out, c2.slips) == (8, 0, 2, 6, 1)
    assert (all_.lent, all_.on_time, all_.late, all_.slips) == (23, 11, 6, 3)
    assert round(c1.rate, 3) == Decimal("0.733") and c2.rate == 0 and round(all_.rate, 3) == Decimal("0.478")
    assert c2.unreturned == [numbers["S3"]] and c1.unreturned == []
    assert [r.code for r in march.customers] == ["C2", "C1"]  # the worst first
    # On 03-16 only S1 (due 03-10) and S3 (due 03-15) have fallen due: 6 / 18.
    assert (early.overall.lent, early.overall.on_time) == (18, 6) and early.overall.rate == Decimal(1) / 3
    assert (april.overall.lent, april.overall.on_time, april.overall.rate) == (3, 3, 1)


async def test_two_whole_returns_of_one_slip_at_once_return_it_once(db, settings):
    async def setup(s) -> str:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")
        return (await _slip(s, settings, "C2", 5, date(2099, 1, 1), datetime.now(settings.timezone))).number

    number = await db.write(setup)

    async def give_back(s) -> str:
        uid = await s.scalar(select(User.id).where(User.name == "张库管"))
        return (await borrow.post_return(s, settings, number, None, uid, datetime.now(settings.timezone))
                ).document.number

    results = await asyncio.gather(db.write(give_back), db.write(give_back), return_exceptions=True)
    done = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(done) == 1 and len(refused) == 1 and refused[0].code == "ALL_RETURNED", results
    async with db.read() as s:
        returns = await s.scalar(select(func.count()).select_from(Document).where(Document.type == "borrow_return"))
        state = (await borrow.open_slips(s, TODAY))
    assert returns == 1 and state == []
