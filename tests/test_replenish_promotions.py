"""Promotion calendar: validated entry (nothing written on bad input), past promotions teach the uplift, scheduled
ones raise the forecast and the suggestion, the back-test sees them, and the `replenish promo` commands."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from cli.main import run
from core.errors import DomainError
from core.models import Product, Promotion, User
from core.replenish import backtest
from core.replenish.promotions_db import MAX_PROMO_DAYS, add_promotion, list_promotions, remove_promotion
from core.replenish.suggest import backtest_history, build_inputs, suggest
from core.replenish.why import why_zh
from tests.factories import line, seed
from tests.ledger_history import cli_database, dated, local

TODAY = date(2026, 11, 20)
HISTORY = 84
BASE, PROMO = 4, 12  # cream sells 4 kg a day, 12 kg on promotion days
PAST = ((TODAY - timedelta(days=50), TODAY - timedelta(days=48)),
        (TODAY - timedelta(days=22), TODAY - timedelta(days=20)))
COMING = (TODAY + timedelta(days=1), TODAY + timedelta(days=3))


async def promo_count(db) -> int:
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(Promotion))


def on_promo(day: date) -> bool:
    return any(a <= day <= b for a, b in PAST)


async def promoted_history(db, settings, *, record_past: bool = True) -> None:
    """Cream in WH1 (never out of stock) selling BASE a day, PROMO on the PAST promotion days, up to yesterday."""
    async with db.session() as s:
        await seed(s)
        await s.execute(update(Product).where(Product.sku == "CREAM").values(lead_time_days=2))
        first = TODAY - timedelta(days=HISTORY)
        await dated(s, settings, "purchase_receipt", [line("CREAM", 400, "kg")], local(settings, first, 8),
                    warehouse="WH1")  # sales total 384: 16 kg left today
        day = first
        while day < TODAY:
            qty = PROMO if on_promo(day) else BASE
            await dated(s, settings, "sales_issue", [line("CREAM", qty, "kg")], local(settings, day), warehouse="WH1")
            day += timedelta(days=1)
        if record_past:
            for a, b in PAST:
                await add_promotion(s, sku="CREAM", start=a, end=b, reason="周末特价", by="张库管")


async def cream(db, settings):
    return {x.sku: x for x in await suggest(db, today=TODAY, settings=settings, everything=True)}["CREAM"]


@pytest.mark.parametrize(("kw", "code"), [
    ({"reason": None}, "PROMO_REASON"),
    ({"reason": ""}, "PROMO_REASON"),
    ({"reason": "   "}, "PROMO_REASON"),
    ({"start": "十二月"}, "BAD_DATE"),
    ({"end": "2026-13-01"}, "BAD_DATE"),
    ({"start": "2026-12-12", "end": "2026-12-10"}, "PROMO_DATES"),
    ({"start": "2026-12-01", "end": date(2026, 12, 1) + timedelta(days=MAX_PROMO_DAYS)}, "PROMO_TOO_LONG"),
    ({"sku": "NOPE"}, "UNKNOWN_SKU"),
    ({"by": "陌生人"}, "NOT_FOUND"),
    ({"by": ""}, "NO_USER"),
])
async def test_bad_promotion_input_is_refused_in_chinese_and_nothing_written(db, settings, kw, code):
    async with db.session() as s:
        await seed(s)
    args = {"sku": "CREAM", "start": "2026-12-10", "end": "2026-12-12", "reason": "双十二", "by": "张库管", **kw}
    with pytest.raises(DomainError) as e:
        async with db.session() as s:
            await add_promotion(s, **args)
    assert e.value.code == code and e.value.fix_zh and e.value.message_zh
    assert any("\u4e00" <= ch <= "\u9fff" for ch in e.value.message_zh + e.value.fix_zh)
    assert await promo_count(db) == 0


async def test_limits_overlap_list_and_remove(db, settings):
    async with db.session() as s:
        await seed(s)
        longest = await add_promotion(s, sku="MILK", start=date(2026, 12, 1),
                                      end=date(2026, 12, 1) + timedelta(days=MAX_PROMO_DAYS - 1), reason="冬季促销",
                                      by="张库管")
        one_day = await add_promotion(s, sku=" CREAM ", start="2026/10/01", end="20261001", reason=" 国庆 ",
                                      by="张库管")
    assert longest.days == MAX_PROMO_DAYS and one_day.days == 1 and one_day.reason == "国庆"
    assert one_day.created_at.tzinfo is not None and one_day.created_by == "张库管"
    with pytest.raises(DomainError) as e:  # overlaps the milk promotion: refused, nothing written
        async with db.session() as s:
            await add_promotion(s, sku="MILK", start="2026-11-25", end="2026-12-02", reason="提前开始", by="张库管")
    assert e.value.code == "PROMO_OVERLAP" and f"promo remove {longest.id}" in e.value.fix_zh
    assert await promo_count(db) == 2
    async with db.read() as s:
        assert [p.sku for p in await list_promotions(s)] == ["CREAM", "MILK"]
        assert [p.id for p in await list_promotions(s, since="2026-10-02")] == [longest.id]
        assert [p.id for p in await list_promotions(s, since=date(2026, 10, 1))] == [one_day.id, longest.id]
        with pytest.raises(DomainError):
            await list_promotions(s, since="昨天")
    for bad in ("999", "abc"):
        with pytest.raises(DomainError) as e:
            async with db.session() as s:
                await remove_promotion(s, bad)
        assert e.value.code == "NOT_FOUND" and "promo list" in e.value.fix_zh
    async with db.session() as s:
        gone = await remove_promotion(s, str(one_day.id))
    assert gone.sku == "CREAM" and await promo_count(db) == 1


async def test_the_database_itself_refuses_reversed_dates_and_an_empty_reason(db, settings):
    async with db.session() as s:
        await seed(s)
        pid = await s.scalar(select(Product.id).where(Product.sku == "CREAM"))
        uid = await s.scalar(select(User.id))
    bad = ((date(2026, 12, 2), date(2026, 12, 1), "促销"), (date(2026, 12, 1), date(2026, 12, 1), " "))
    for start, end, reason in bad:
        with pytest.raises(IntegrityError):
            async with db.session() as s:
                s.add(Promotion(product_id=pid, start_date=start, end_date=end, reason=reason, created_by_id=uid))
    assert await promo_count(db) == 0


async def test_past_promotions_teach_the_uplift_and_a_scheduled_one_raises_the_suggestion(db, settings):
    await promoted_history(db, settings)
    before = await cream(db, settings)
    assert not any(before.explanation.promo_days)
    async with db.session() as s:
        await add_promotion(s, sku="CREAM", start=COMING[0], end=COMING[1], reason="店庆三天", by="张库管")
    after = await cream(db, settings)
    e, b = after.explanation, before.explanation
    assert e.cover_days == b.cover_days >= 4
    # the promo days inside the cover period are marked (today is day 0) and lifted by the learned uplift
    assert e.promo_days == tuple(COMING[0] <= TODAY + timedelta(days=k) <= COMING[1] for k in range(e.cover_days))
    assert Decimal(2) < e.uplift <= Decimal(3)  # sales tripled on past promotion days
    assert e.cover_demand > b.cover_demand + 2 * 3 * BASE * Decimal("0.8")
    assert after.qty > before.qty
    assert e.suggested == e.need + e.rounding and e.order_up_to == e.cover_demand + e.safety_stock  # still adds up
    text = why_zh(e, after.unit, after.buffer_days, TODAY)
    assert f"覆盖期内有促销：{COMING[0]:%m-%d} 至 {COMING[1]:%m-%d}，共 3 天" in text and "促销日预测 ×" in text
    assert "第 2 天 至 第 4 天" in why_zh(e, after.unit, after.buffer_days)

    # the calendar is in the engine's inputs: history days and the future horizon
    async with db.read() as s:
        h, inputs, _ = await build_inputs(s, settings, today=TODAY)
    row = h.index.skus.index("CREAM")
    assert inputs.promo.shape == (len(h.index), h.window.days + inputs.horizon)
    marked = {h.window.start + timedelta(days=int(k)) for k in np.flatnonzero(inputs.promo[row])}
    expected = {a + timedelta(days=k) for a, b in (*PAST, COMING) for k in range((b - a).days + 1)}
    assert marked == expected
    assert not inputs.promo[[i for i in range(len(h.index)) if i != row]].any()


async def test_without_past_promotions_the_scheduled_days_are_not_lifted(db, settings):
    await promoted_history(db, settings, record_past=False)
    async with db.session() as s:
        await add_promotion(s, sku="CREAM", start=COMING[0], end=COMING[1], reason="店庆三天", by="张库管")
    e = (await cream(db, settings)).explanation
    assert sum(e.promo_days) == 3 and e.uplift == Decimal(1)  # nothing to learn the uplift from
    assert "尚无可学习的历史促销" in why_zh(e, "kg", 0, TODAY)


def test_backtest_learns_and_applies_promotions_when_given_them():
    t = 196
    y = np.full((1, t), float(BASE))
    promo = np.zeros((1, t), dtype=bool)
    for start in range(10, t, 21):
        promo[0, start:start + 3] = True
    y[promo] = PROMO
    kw = {"lead_static": np.array([2.0]), "lead_mean": np.array([2.0]), "lead_std": np.array([0.0]), "weeks": 12,
          "with_sweep": False}
    blind = backtest.backtest(y, np.zeros_like(promo), np.zeros(1, int), **kw)
    seeing = backtest.backtest(y, np.zeros_like(promo), np.zeros(1, int), promo=promo, **kw)
    assert seeing.dynamic["wape"] < blind.dynamic["wape"]
    assert seeing.static == blind.static  # the old formula knows nothing of promotions


async def test_backtest_history_runs_with_the_calendar(db, settings):
    await promoted_history(db, settings)
    r = await backtest_history(db, today=TODAY, settings=settings, weeks=4)
    assert r.products == 1 and r.dynamic["wape"] is not None


async def test_cli_promo_add_list_remove(tmp_path: Path, settings, capsys):
    cfg, _ = await cli_database(tmp_path, "promo")
    today = datetime.now(settings.timezone).date()
    start, end = today + timedelta(days=1), today + timedelta(days=3)
    base = ["--config", cfg, "replenish", "promo"]
    capsys.readouterr()
    assert await run([*base, "add", "CREAM", str(start), str(end), "--reason", "店庆", "--by", "张库管"]) == 0
    out = capsys.readouterr().out
    assert "已登记促销 #1" in out and "共 3 天" in out and "店庆" in out
    assert await run([*base, "add", "CREAM", "2026-12-12", "2026-12-10", "--reason", "x", "--by", "张库管"]) == 2
    err = capsys.readouterr().err
    assert "早于开始日期" in err and "处理办法" in err
    assert await run([*base, "add", "CREAM", str(start), str(end), "--reason", "  ", "--by", "张库管"]) == 2
    assert "必须填写原因" in capsys.readouterr().err
    assert await run([*base, "list"]) == 0
    out = capsys.readouterr().out
    assert "促销日历（全部，共 1 个" in out and "CREAM" in out and str(start) in out and "张库管" in out
    assert await run([*base, "list", "--from", str(end + timedelta(days=1))]) == 0
    assert "没有促销" in capsys.readouterr().out
    assert await run(["--config", cfg, "replenish", "suggest", "--all"]) == 0
    assert f"覆盖期内有促销：{start:%m-%d} 至 {end:%m-%d}" in capsys.readouterr().out
    assert await run([*base, "remove", "1"]) == 0
    assert "已删除促销 #1" in capsys.readouterr().out
    assert await run([*base, "remove", "1"]) == 2
    assert "找不到促销 #1" in capsys.readouterr().err
    assert await run([*base, "list"]) == 0
    assert "没有促销" in capsys.readouterr().out


def test_promotion_dates_are_read_as_people_write_them():
    from datetime import date

    from core.replenish.promotions_db import parse_day

    for text in ("2026-12-20", "2026/12/20", "2026年12月20日", "20261220", "2026.12.20"):
        assert parse_day(text, "开始日期") == date(2026, 12, 20)
