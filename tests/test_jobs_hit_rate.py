"""The weekly hit-rate board against a hand-computed case: the engine's weekly forecast rounded to MOQ/pack vs the
week's sales, the deviation rate, two weeks running over 25% flagged with the MOQ / purchase-unit advice; once."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import openpyxl
from sqlalchemy import select, update

from cards.model import Message
from cards.parts import split_message
from core.messaging.outbound import Outbound
from core.models import OutboxMessage, Product
from core.reports.hit_rate import hit_board, week_suggestion
from jobs.registry import JOBS
from jobs.runner import Deps, run_job
from tests.factories import line, seed
from tests.ledger_history import dated

W47, W48 = date(2026, 11, 16), date(2026, 11, 23)  # the board of period 2026-W49 covers W48 (and W47 before it)


def at(settings, day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), settings.timezone)


async def ledger(db, settings) -> None:
    """From 10-01 every day: CREAM 10 kg, SUGAR 10 kg (MOQ 500 kg in 25 kg bags), FLOUR 10 kg, then 20 kg a day in
    W48. The engine forecasts a flat 10 kg a day → 70 kg a week. CREAM: 70 vs 70 both weeks (0%). SUGAR: 70 rounds
    up to the MOQ, 500 vs 70 → 614.3% both weeks: flagged. FLOUR: 70 vs 70, then 70 vs 140 (50%): off once."""

    async def work(s) -> None:
        await seed(s)
        s.add(Product(sku="FLOUR", name="面粉", category="原料", stock_unit="kg", purchase_unit="kg"))
        await s.flush()
        await s.execute(update(Product).where(Product.sku == "SUGAR").values(moq=Decimal(500), pack_size=Decimal(25)))
        await dated(s, settings, "purchase_receipt", [line(p, 5000, "kg") for p in ("CREAM", "SUGAR", "FLOUR")],
                    at(settings, date(2026, 9, 30)), warehouse="WH1", supplier="SUP1")
        day = date(2026, 10, 1)
        while day < W48 + timedelta(days=7):
            flour = 20 if day >= W48 else 10
            await dated(s, settings, "sales_issue", [line("CREAM", 10, "kg"), line("SUGAR", 10, "kg"),
                                                     line("FLOUR", flour, "kg")], at(settings, day),
                        warehouse="WH1", customer="C2")
            day += timedelta(days=1)

    await db.write(work)


async def test_the_board_matches_the_hand_computed_case(db, settings):
    await ledger(db, settings)
    board = await hit_board(db, settings, W48)
    rows = {r.sku: r for r in board.rows}
    assert [r.sku for r in board.rows] == ["SUGAR", "FLOUR", "CREAM"]  # flagged first, then by deviation
    cream, sugar, flour = rows["CREAM"], rows["SUGAR"], rows["FLOUR"]
    assert (cream.week.suggested, cream.week.consumed, cream.week.deviation) == (70, 70, 0)
    assert (cream.before.suggested, cream.before.consumed) == (70, 70) and not cream.flagged
    assert (sugar.week.suggested, sugar.week.consumed) == (sugar.before.suggested, sugar.before.consumed) == (500, 70)
    assert round(sugar.week.deviation, 4) == Decimal("6.1429") and sugar.flagged
    assert (flour.before.suggested, flour.before.consumed, flour.before.deviation) == (70, 70, 0)
    assert (flour.week.suggested, flour.week.consumed, flour.week.deviation) == (70, 140, Decimal("0.5"))
    assert flour.week.off and not flour.flagged
    assert board.hit_rate == Decimal(1) / 3 and [r.sku for r in board.flagged] == ["SUGAR"]


async def test_the_board_goes_once_with_the_advice_and_the_full_board_attached(db, settings):
    await ledger(db, settings)
    now = at(settings, W48 + timedelta(days=7), 9).replace(minute=13).astimezone(UTC)
    period = JOBS["hit_rate"].period(now.astimezone(settings.timezone))
    assert period == "2026-W49"
    deps = Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: now)
    done = await run_job(JOBS["hit_rate"], period, deps)
    assert done.ok and done.result == "3 个商品，命中率 33.3%，连续偏差 1 个", done
    async with db.read() as s:
        rows = list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert len(rows) == 2 and {json.loads(r.target)["address"] for r in rows} == {"purchasing"}
    chart = Message.from_json(json.loads(rows[1].message))  # the flagged product's suggested vs consumed
    assert chart.kind == "image" and chart.png.startswith(b"\x89PNG") and "建议量 vs 实际消耗" in chart.title
    message = Message.from_json(json.loads(rows[0].message))
    assert message.title == "采购建议命中率 2026-W48" and message.filename == "采购建议命中率_2026-W48.xlsx"
    body = message.text
    assert "上周（2026-11-23 至 2026-11-29）3 个商品，命中率 **33.3%**" in body
    assert ("- 白砂糖（SUGAR）建议 500kg / 实际 70kg，偏差 614.3%（前一周 614.3%） → 最小起订量 500kg，"
            "采购单位 袋（1袋=25kg），包装 25kg") in body
    assert "连续2周偏差>25%：请重检商品主数据中的「最小起订量」和「采购单位」设置" in body
    assert "- 面粉（FLOUR）建议 70kg / 实际 140kg，偏差 50.0%（前一周 0.0%）" in body
    assert "建议量为按周一之前的历史重算的补货引擎预测" in body  # which suggestion the board compares
    sheet = list(openpyxl.load_workbook(io.BytesIO(message.data), read_only=True)["采购建议命中率"]
                 .iter_rows(values_only=True))
    assert [(r[0], r[3], r[4], r[9]) for r in sheet[1:]] == [("SUGAR", 500, 70, "是"), ("FLOUR", 70, 140, None),
                                                            ("CREAM", 70, 70, None)]
    again = await run_job(JOBS["hit_rate"], period, Deps(db, settings, Outbound(split_message), owner="u",
                                                         clock=lambda: now))
    assert not again.ran
    async with db.read() as s:
        assert len(list(await s.scalars(select(OutboxMessage)))) == 2


async def test_one_ledger_read_gives_what_each_week_read_on_its_own_gives(db, settings):
    """The board reads the ledger once for both weeks; each week's figures equal those of the engine run on that
    week's own history (uneven sales, stock-outs, a return), so sharing the read changes nothing."""
    import random

    from core.replenish.history import load_history
    from core.replenish.suggest import build_inputs

    rng = random.Random(7)

    async def work(s) -> None:
        await seed(s)
        day = date(2026, 9, 20)
        while day < W48 + timedelta(days=7):
            if day.day % 9 == 0:  # a receipt now and then: in between, CREAM runs out
                await dated(s, settings, "purchase_receipt", [line("CREAM", 60, "kg"), line("SUGAR", 90, "kg")],
                            at(settings, day, 8), warehouse="WH1", supplier="SUP1")
            for sku in ("CREAM", "SUGAR"):
                try:
                    sale = await dated(s, settings, "sales_issue", [line(sku, rng.randint(1, 12), "kg")],
                                       at(settings, day, 14), warehouse="WH1", customer="C2")
                except Exception:  # not enough stock that day: the sale is refused (a stock-out day)
                    continue
                if rng.random() < 0.1:
                    await dated(s, settings, "sales_return", [line(sku, 1, "kg")], at(settings, day, 16),
                                warehouse="WH1", ref_number=sale.number)
            day += timedelta(days=1)

    await db.write(work)
    board = await hit_board(db, settings, W48)
    assert board.rows
    expect = {}
    for week, monday in (("week", W48), ("before", W47)):
        async with db.read() as s:
            h, inputs, _ = await build_inputs(s, settings, today=monday)
            used = await load_history(s, today=monday + timedelta(days=7), tz=settings.timezone, days=7)
        assert h.stockout.any()
        qty = week_suggestion(inputs)
        for i, sku in enumerate(h.index.skus):
            expect[(sku, week)] = (Decimal(str(round(float(qty[i]), 6))).normalize(),
                                   Decimal(str(round(float(used.demand[i].sum()), 6))).normalize())
    for r in board.rows:
        for week, figures in (("week", r.week), ("before", r.before)):
            assert (figures.suggested.normalize(), figures.consumed.normalize()) == expect[(r.sku, week)]
