"""Ledger → replenishment arrays: what counts as demand, stock-out days, learned lead times, the position."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import update

from core.errors import DomainError
from core.ledger.documents import cancel_document
from core.models import Product
from core.replenish.history import LT_PRIOR_CV, Window, load_history
from tests.factories import line, seed
from tests.ledger_history import dated

TODAY = date(2026, 11, 20)
DAYS = 30


def at(settings, days_ago: int, hour: int = 10) -> datetime:
    """A local time `days_ago` days before TODAY."""
    return datetime.combine(TODAY - timedelta(days=days_ago), time(hour), settings.timezone)


def day(days_ago: int) -> int:
    """The history column of the day `days_ago` days before TODAY (the last column is yesterday)."""
    return DAYS - days_ago


async def history(db, settings, **kw):
    async with db.read() as s:
        return await load_history(s, today=TODAY, tz=settings.timezone, days=DAYS, **kw)


def row(h, sku: str) -> int:
    return h.index.skus.index(sku)


async def test_demand_is_posted_sales_issues_only_and_returns_net_off_the_original_day(db, settings):
    async with db.session() as s:
        await seed(s)
        await dated(s, settings, "purchase_receipt", [line("CREAM", 100, "kg")], at(settings, 25), warehouse="WH1")
        await dated(s, settings, "sales_issue", [line("CREAM", 5, "kg")], at(settings, 10), warehouse="WH1",
                    customer="C2")
        await dated(s, settings, "sales_issue", [line("CREAM", 3, "kg")], at(settings, 9), warehouse="WH1",
                    post=False)  # submitted, never posted
        await dated(s, settings, "sales_issue", [line("CREAM", 4, "kg")], at(settings, 9), warehouse="WH1",
                    submit=False, post=False)  # draft
        await dated(s, settings, "borrow", [line("CREAM", 4, "kg")], at(settings, 8), warehouse="WH1", customer="C2")
        await dated(s, settings, "transfer", [line("CREAM", 10, "kg")], at(settings, 7), warehouse="WH1",
                    to_warehouse="S01")
        await dated(s, settings, "loss", [line("CREAM", 1, "kg")], at(settings, 7, 11), warehouse="WH1")
        cancelled = await dated(s, settings, "sales_issue", [line("CREAM", 6, "kg")], at(settings, 6),
                                warehouse="WH1")
        await cancel_document(s, settings, cancelled, now=at(settings, 6, 12))
        sale = await dated(s, settings, "sales_issue", [line("CREAM", 8, "kg")], at(settings, 5), warehouse="WH1")
        await dated(s, settings, "sales_return", [line("CREAM", 2, "kg")], at(settings, 3), warehouse="WH1",
                    ref_number=sale.number)
        await dated(s, settings, "sales_issue", [line("CREAM", 2, "kg")], at(settings, 1), warehouse="S01")
        await dated(s, settings, "sales_issue", [line("CREAM", 1, "kg")], at(settings, 0), warehouse="WH1")  # today

    h = await history(db, settings)
    assert h.demand.shape == (3, DAYS) and h.stockout.shape == (3, DAYS)
    d = h.demand[row(h, "CREAM")]
    assert {i: v for i, v in enumerate(d) if v} == {day(10): 5.0, day(5): 6.0, day(1): 2.0}
    assert h.demand[row(h, "MILK")].sum() == 0

    wh1 = await history(db, settings, warehouse="WH1")
    assert wh1.demand[row(wh1, "CREAM")].sum() == 11.0
    s01 = await history(db, settings, warehouse="一号门店")  # by name too
    assert {i: v for i, v in enumerate(s01.demand[row(s01, "CREAM")]) if v} == {day(1): 2.0}
    with pytest.raises(DomainError) as e:
        await history(db, settings, warehouse="NOPE")
    assert "找不到仓库" in e.value.message_zh


async def test_return_bigger_than_the_day_never_makes_negative_demand(db, settings):
    async with db.session() as s:
        await seed(s)
        await dated(s, settings, "purchase_receipt", [line("CREAM", 50, "kg")], at(settings, 20), warehouse="WH1")
        sale = await dated(s, settings, "sales_issue", [line("CREAM", 4, "kg")], at(settings, 12), warehouse="WH1")
        await dated(s, settings, "sales_return", [line("CREAM", 3, "kg")], at(settings, 11), warehouse="WH1",
                    ref_number=sale.number)
        await dated(s, settings, "sales_return", [line("CREAM", 1, "kg")], at(settings, 10), warehouse="WH1",
                    ref_number=sale.number)
    h = await history(db, settings)
    assert h.demand.min() == 0.0 and h.demand[row(h, "CREAM")].sum() == 0.0


async def test_stockout_days_are_flagged_from_movements(db, settings):
    async with db.session() as s:
        await seed(s)
        await dated(s, settings, "purchase_receipt", [line("CREAM", 10, "kg")], at(settings, 20), warehouse="WH1")
        await dated(s, settings, "sales_issue", [line("CREAM", 10, "kg")], at(settings, 15), warehouse="WH1")
        await dated(s, settings, "purchase_receipt", [line("CREAM", 10, "kg")], at(settings, 12, 9), warehouse="WH1")
        # a same-day dip to zero and back
        await dated(s, settings, "sales_issue", [line("CREAM", 10, "kg")], at(settings, 8, 9), warehouse="WH1")
        await dated(s, settings, "purchase_receipt", [line("CREAM", 10, "kg")], at(settings, 8, 15), warehouse="WH1")
        # all of it moves to a store: the company still has it, WH1 does not
        await dated(s, settings, "transfer", [line("CREAM", 10, "kg")], at(settings, 4), warehouse="WH1",
                    to_warehouse="S01")

    h = await history(db, settings)
    out = h.stockout[row(h, "CREAM")]
    flagged = {DAYS - i for i in np.flatnonzero(out)}  # as days ago
    before_first_receipt = set(range(20, DAYS + 1))  # day 20 starts empty: its receipt came at 10:00
    assert flagged == before_first_receipt | {15, 14, 13, 12} | {8}
    assert h.stockout[row(h, "SUGAR")].all()  # never stocked: every day is censored

    wh1 = await history(db, settings, warehouse="WH1")
    flagged_wh1 = {DAYS - i for i in np.flatnonzero(wh1.stockout[row(wh1, "CREAM")])}
    assert flagged_wh1 == flagged | {4, 3, 2, 1}
    # censored days are where demand is not to be learned from: a stock-out day shows the sale that emptied it
    assert h.demand[row(h, "CREAM"), day(15)] == 10.0 and out[day(15)]


async def test_lead_time_is_learned_per_supplier_from_receipts_against_orders(db, settings):
    async with db.session() as s:
        await seed(s)
        await s.execute(update(Product).where(Product.sku.in_(["CREAM", "SUGAR"])).values(lead_time_days=6))
        for ordered_ago, lead in ((60, 3), (45, 5), (30, 4)):
            po = await dated(s, settings, "purchase_order", [line("CREAM", 20, "kg")], at(settings, ordered_ago),
                             warehouse="WH1", supplier="SUP1")
            await dated(s, settings, "purchase_receipt", [line("CREAM", 20, "kg")],
                        at(settings, ordered_ago - lead, 16), warehouse="WH1", supplier="SUP1", ref_number=po.number)
        # MILK comes from the same supplier (its latest receipt), without orders of its own
        await dated(s, settings, "purchase_receipt", [line("MILK", 2, "箱", batch="B1")], at(settings, 10),
                    warehouse="WH1", supplier="SUP1")
    h = await history(db, settings)
    cream, milk, sugar = row(h, "CREAM"), row(h, "MILK"), row(h, "SUGAR")
    assert h.lead.learned[cream] and h.lead.learned[milk] and not h.lead.learned[sugar]
    assert h.lead.mean[cream] == pytest.approx(4.0) and h.lead.std[cream] == pytest.approx(1.0)
    assert h.lead.mean[milk] == pytest.approx(4.0)
    assert h.lead.mean[sugar] == 6.0 and h.lead.std[sugar] == pytest.approx(6 * LT_PRIOR_CV)


async def test_too_few_receipts_fall_back_to_the_product_lead_time(db, settings):
    async with db.session() as s:
        await seed(s)
        await s.execute(update(Product).where(Product.sku == "CREAM").values(lead_time_days=2))
        po = await dated(s, settings, "purchase_order", [line("CREAM", 20, "kg")], at(settings, 20),
                         warehouse="WH1", supplier="SUP1")
        await dated(s, settings, "purchase_receipt", [line("CREAM", 20, "kg")], at(settings, 10), warehouse="WH1",
                    supplier="SUP1", ref_number=po.number)
    h = await history(db, settings)
    cream = row(h, "CREAM")
    assert not h.lead.learned[cream] and h.lead.mean[cream] == 2.0


async def test_position_on_order_requested_and_reserved_as_allocation(db, settings):
    async with db.session() as s:
        await seed(s)
        await dated(s, settings, "purchase_receipt", [line("CREAM", 40, "kg")], at(settings, 9), warehouse="WH1")
        await dated(s, settings, "purchase_receipt", [line("CREAM", 5, "kg")], at(settings, 9), warehouse="S01")
        open_po = await dated(s, settings, "purchase_order", [line("CREAM", 50, "kg")], at(settings, 8),
                              warehouse="WH1", supplier="SUP1", post=False)  # submitted: on order
        await dated(s, settings, "purchase_receipt", [line("CREAM", 20, "kg")], at(settings, 7), warehouse="WH1",
                    supplier="SUP1", ref_number=open_po.number)  # partly received
        done_po = await dated(s, settings, "purchase_order", [line("CREAM", 10, "kg")], at(settings, 8),
                              warehouse="WH1", supplier="SUP1")
        await dated(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], at(settings, 6), warehouse="WH1",
                    supplier="SUP1", ref_number=done_po.number)  # over-delivered: nothing left on order
        dead_po = await dated(s, settings, "purchase_order", [line("CREAM", 99, "kg")], at(settings, 8),
                              warehouse="WH1", post=False)
        await cancel_document(s, settings, dead_po, now=at(settings, 7))
        await dated(s, settings, "purchase_order", [line("CREAM", 77, "kg")], at(settings, 8), warehouse="WH1",
                    submit=False, post=False)  # a draft order is not on order
        # approved: the request became an order (its posting placed it): counted once, as on order
        await dated(s, settings, "purchase_request", [line("CREAM", 30, "kg")], at(settings, 5), warehouse="WH1",
                    supplier="SUP1")
        await dated(s, settings, "purchase_request", [line("CREAM", 12, "kg")], at(settings, 5), warehouse="WH1",
                    post=False)
        await dated(s, settings, "purchase_request", [line("MILK", 1, "箱")], at(settings, 4), warehouse="S01",
                    post=False)
        await dated(s, settings, "sales_order", [line("CREAM", 20, "kg")], at(settings, 3), warehouse="WH1",
                    customer="C1", post=False)  # strategic: 15 % reserved
        await dated(s, settings, "sales_order", [line("CREAM", 40, "kg")], at(settings, 3), warehouse="WH1",
                    customer="C2", post=False)  # not strategic: no allocation

    h = await history(db, settings)
    cream, milk = row(h, "CREAM"), row(h, "MILK")
    p = h.position
    assert p.on_hand[cream] == 40 + 5 + 20 + 12
    assert p.on_order[cream] == 30 + 30
    assert p.requested[cream] == 12 and p.requested[milk] == 24
    assert p.reserved[cream] == 3.0
    assert p.on_hand.dtype == np.float64

    s01 = await history(db, settings, warehouse="S01")
    assert s01.position.on_hand[cream] == 5 and s01.position.on_order[cream] == 0
    assert s01.position.requested[milk] == 24 and s01.position.reserved[cream] == 0


async def test_products_carry_moq_pack_and_category(db, settings):
    async with db.session() as s:
        await seed(s)
        await s.execute(update(Product).where(Product.sku == "MILK").values(moq=Decimal(48), pack_size=Decimal(24)))
    h = await history(db, settings)
    milk = row(h, "MILK")
    assert h.index.moq[milk] == 48.0 and h.index.pack[milk] == 24.0 and h.index.categories[milk] == "原料"
    assert list(h.index.skus) == sorted(h.index.skus)


def test_window_days_are_local_and_today_is_excluded(settings):
    w = Window.ending_yesterday(TODAY, 7, settings.timezone)
    start, end = w.utc_bounds()
    assert start.tzinfo is not None and end == datetime.combine(TODAY, time(0), settings.timezone)
    assert w.day_of(datetime.combine(TODAY - timedelta(days=1), time(23, 59), settings.timezone)) == 6
    with pytest.raises(DomainError):
        Window.ending_yesterday(TODAY, 0, settings.timezone)


def test_vectorised_days_match_local_calendar_days_across_dst():
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Berlin")  # clocks go back on 2026-10-25
    w = Window(date(2026, 10, 20), 10, tz)
    times = [datetime(2026, 10, d, h, m, tzinfo=tz) for d in range(19, 31) for h in (0, 1, 2, 12, 23) for m in (0, 59)]
    expected = [min(max(w.day_of(t), -1), w.days) for t in times]
    assert w.days_of(np.array([t.timestamp() for t in times])).tolist() == expected
