"""Suggestions from the ledger (explanations that add up, MOQ/pack, allocation, censoring), back-test and CLI."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from cli.main import run
from core.errors import DomainError
from core.models import Product
from core.replenish.suggest import backtest_history, suggest
from core.replenish.why import why_zh
from core.storage import Database
from tests.factories import line, seed
from tests.ledger_history import cli_config, cli_database, daily_sales, dated, local

TODAY = date(2026, 11, 20)


async def by_sku(db, settings, **kw):
    return {x.sku: x for x in await suggest(db, today=TODAY, settings=settings, everything=True, **kw)}


async def stocked_history(db, settings, *, days: int = 56) -> None:
    """Cream (plenty in stock) and milk (running low) selling steadily for `days` days up to yesterday in WH1."""
    async with db.session() as s:
        await seed(s)
        await s.execute(update(Product).where(Product.sku == "MILK").values(moq=Decimal(48), pack_size=Decimal(24),
                                                                               lead_time_days=3))
        await s.execute(update(Product).where(Product.sku == "CREAM").values(lead_time_days=2))
        start = TODAY - timedelta(days=days)
        boxes = -(-(4 * days + 16) // 24)  # milk runs low by today: ≤ 16 + 24 bottles left
        await dated(s, settings, "purchase_receipt", [line("CREAM", 1000, "kg"), line("MILK", boxes, "箱", batch="B1")],
                    local(settings, start - timedelta(days=1)), warehouse="WH1")
        day = start
        while day < TODAY:
            await dated(s, settings, "sales_issue", [line("CREAM", 3 + day.weekday() % 3, "kg"), line("MILK", 4, "瓶")],
                        local(settings, day), warehouse="WH1")
            day += timedelta(days=1)


async def test_explanations_add_up_to_the_rounded_suggestion(db, settings):
    await stocked_history(db, settings)
    found = await by_sku(db, settings)
    for x in found.values():
        e = x.explanation
        assert x.qty == e.suggested == e.need + e.rounding
        assert e.need == max(Decimal(0), e.order_up_to - e.projected)
        assert e.order_up_to == e.cover_demand + e.safety_stock and e.cover_demand == sum(e.forecast)
        assert e.projected == e.on_hand + e.on_order + e.requested - e.reserved
        assert len(e.forecast) == e.cover_days
    milk = found["MILK"]
    assert milk.qty > 0 and milk.qty % 24 == 0 and milk.qty >= 48  # MOQ 48, pack 24
    assert milk.explanation.on_hand == Decimal(240 - 4 * 56)
    text = why_zh(milk.explanation, milk.unit)
    assert "建议采购" in text and "起订量 48" in text and "包装 24" in text
    assert found["SUGAR"].qty == 0 and found["SUGAR"].censored_days == 364  # never stocked, nothing to learn
    only_needed = await suggest(db, today=TODAY, settings=settings)
    assert all(x.qty > 0 for x in only_needed) and {x.sku for x in only_needed} <= set(found)


async def test_auto_only_gives_the_auto_replenish_products_their_whole_ledger_suggestion(db, settings):
    await stocked_history(db, settings)
    async with db.session() as s:
        await s.execute(update(Product).where(Product.sku == "MILK").values(auto_replenish=True))
    every = await suggest(db, today=TODAY, settings=settings, everything=True)
    auto = await suggest(db, today=TODAY, settings=settings, everything=True, auto_only=True)
    assert [x.sku for x in auto] == ["MILK"] and len(every) == 3
    assert auto == [x for x in every if x.auto_replenish]  # same plan, pooled over every product


async def test_strategic_reservation_is_an_allocation_not_more_forecast(db, settings):
    await stocked_history(db, settings)
    before = (await by_sku(db, settings))["CREAM"].explanation
    async with db.session() as s:
        await dated(s, settings, "sales_order", [line("CREAM", 400, "kg")], local(settings, TODAY, 8), warehouse="WH1",
                    customer="C1", post=False)  # strategic: 15 % = 60 kg reserved
        await dated(s, settings, "sales_order", [line("CREAM", 400, "kg")], local(settings, TODAY, 8), warehouse="WH1",
                    customer="C2", post=False)  # not strategic: nothing reserved
    after = (await by_sku(db, settings))["CREAM"].explanation
    assert after.reserved == Decimal(60) and after.projected == before.projected - 60
    assert after.cover_demand == before.cover_demand and after.safety_stock == before.safety_stock


async def test_stockout_days_do_not_teach_the_engine_to_under_order(db, settings):
    async with db.session() as s:
        await seed(s)
        await dated(s, settings, "purchase_receipt", [line("CREAM", 168, "kg")], local(settings, TODAY - timedelta(57)),
                    warehouse="WH1")
        # 4 kg a day for six weeks, then sold out: the last two weeks could not sell
        await daily_sales(s, settings, "CREAM", "kg", TODAY - timedelta(56), TODAY - timedelta(15), 4)
    cream = (await by_sku(db, settings))["CREAM"]
    daily = cream.explanation.cover_demand / cream.explanation.cover_days
    assert cream.censored_days >= 14
    assert Decimal(3) < daily < Decimal("5.5")  # the censored zeros did not drag the forecast to ~2/day
    async with db.session() as s:  # the old formula averages the censored zeros in: half the real rate
        from core.replenish.strategies_db import set_strategy
        await set_strategy(s, category="原料", strategy="static")
    static = (await by_sku(db, settings))["CREAM"].explanation
    assert static.cover_demand / static.cover_days == Decimal(2)


async def test_unknown_warehouse_is_a_chinese_error(db, settings):
    async with db.session() as s:
        await seed(s)
    with pytest.raises(DomainError) as e:
        await suggest(db, today=TODAY, settings=settings, warehouse="NOPE")
    assert "找不到仓库" in e.value.message_zh


async def test_backtest_on_posted_history(db, settings):
    await stocked_history(db, settings, days=84)
    r = await backtest_history(db, today=TODAY, settings=settings)
    assert r.layout.weeks == 26 and r.products == 2 and r.scored > 0
    assert r.censored_windows > 0  # origins before the first receipt cannot be scored
    assert r.censored_days > 0  # days before the first receipt are replayed but not measured
    for score in (r.static, r.dynamic):
        assert 0 <= score["hit_month"] <= 1 and score["wape"] >= 0 and score["bias"] is not None
        assert 0 < score["fill_rate"] <= 1 and 0 <= score["stockout_days"] <= 1 and score["inventory_days"] > 0
    assert r.dynamic["hit_month"] >= 0.5  # steady demand is easy to hit within ±25 %
    with pytest.raises(DomainError) as e:
        await backtest_history(db, today=TODAY, settings=settings, days=40)
    assert e.value.code == "SHORT_HISTORY"


async def test_the_numpy_work_runs_off_the_event_loop(db, settings, monkeypatch):
    """plan(), the back-test replay and turning history rows into arrays are CPU work: worker threads run
    them, the event loop stays free."""
    import threading

    from core.replenish import suggest as module

    await stocked_history(db, settings, days=84)
    threads: list[threading.Thread] = []

    def spy(real):
        def run(*args, **kwargs):
            threads.append(threading.current_thread())
            return real(*args, **kwargs)
        return run

    from core.replenish import history

    converted: list[threading.Thread] = []
    real_to_array = history._to_array

    def to_array(*args):
        converted.append(threading.current_thread())
        return real_to_array(*args)

    monkeypatch.setattr(module, "plan", spy(module.plan))
    monkeypatch.setattr(module.backtest, "backtest", spy(module.backtest.backtest))
    monkeypatch.setattr(history, "_to_array", to_array)  # rows → arrays: seconds on a large ledger
    assert await suggest(db, today=TODAY, settings=settings, everything=True)
    await backtest_history(db, today=TODAY, settings=settings)
    assert len(threads) == 2 and threading.main_thread() not in threads
    assert converted and threading.main_thread() not in converted


@pytest.fixture
async def demo_cfg(tmp_path: Path):
    cfg, _ = cli_config(tmp_path, "demo")
    assert await run(["--config", cfg, "demo", "--no-serve", "--db", str(tmp_path / "demo.db")]) == 0
    return cfg


async def test_cli_replenish_suggest_and_backtest_on_the_demo(demo_cfg, capsys):
    capsys.readouterr()
    assert await run(["--config", demo_cfg, "replenish", "suggest"]) == 0
    out = capsys.readouterr().out
    assert "采购建议" in out and ("原因：" in out or "暂无需采购" in out)
    assert await run(["--config", demo_cfg, "replenish", "suggest", "--warehouse", "CW", "--all"]) == 0
    out = capsys.readouterr().out
    assert "RM-CREAM" in out and "补到" in out and "战略客户预留" in out
    assert await run(["--config", demo_cfg, "replenish", "suggest", "-w", "NOPE"]) == 2
    assert "找不到仓库" in capsys.readouterr().err
    # the demo has a year of daily history: the back-test compares the strategies on it
    assert await run(["--config", demo_cfg, "replenish", "backtest"]) == 0
    out = capsys.readouterr().out
    assert "静态公式" in out and "动态预测" in out and "满足率" in out and "参与评估的商品 21 个" in out, out


async def test_cli_replenish_backtest_prints_the_table(tmp_path: Path, settings, capsys):
    cfg, url = await cli_database(tmp_path, "bt", seeded=False)
    db = Database(url)
    try:
        await stocked_history(db, settings, days=70)
    finally:
        await db.dispose()
    capsys.readouterr()
    assert await run(["--config", cfg, "replenish", "backtest", "--weeks", "4"]) == 0
    out = capsys.readouterr().out
    assert "静态公式" in out and "动态预测" in out and "月度 ±25% 命中率" in out and "WAPE" in out
    assert "满足率" in out and "缺货天数占比" in out and "平均库存天数" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("静态公式", "动态预测"))}
    assert set(rows) == {"静态公式（近", "动态预测"}
    for cells in rows.values():  # fill rate and stock-out days measured for both policies
        fill, stockout = (float(c.rstrip("%")) for c in cells[-3:-1])
        assert 0 < fill <= 100 and 0 <= stockout <= 100


async def test_cli_backtest_reports_fill_rate_and_stockout_days_for_both_policies(tmp_path: Path, settings, capsys):
    """A 120-day ledger ending yesterday: cream sells 3–9 kg by weekday, sold out for 10 days mid-way (censored)."""
    cfg, url = await cli_database(tmp_path, "bt")
    today = datetime.now(settings.timezone).date()
    first, gap = today - timedelta(days=120), (today - timedelta(days=60), today - timedelta(days=51))
    cream = lambda d: 3 + 2 * (d.weekday() % 4)  # noqa: E731
    sold_out = sum(cream(first + timedelta(days=k)) for k in range((gap[0] - first).days))  # gone by the gap
    db = Database(url)
    try:
        async with db.session() as s:
            stock = [line("CREAM", sold_out, "kg"), line("MILK", 30, "箱", batch="B1")]
            await dated(s, settings, "purchase_receipt", stock, local(settings, first - timedelta(days=1)),
                        warehouse="WH1")
            day = first
            while day < today:
                lines = [line("MILK", 2 + day.day % 3, "瓶")]
                if not gap[0] <= day <= gap[1]:
                    lines.append(line("CREAM", cream(day), "kg"))
                await dated(s, settings, "sales_issue", lines, local(settings, day), warehouse="WH1")
                if day == gap[1]:  # restocked in the evening of the gap's last day
                    await dated(s, settings, "purchase_receipt", [line("CREAM", 1000, "kg")], local(settings, day, 23),
                                warehouse="WH1")
                day += timedelta(days=1)
    finally:
        await db.dispose()
    capsys.readouterr()
    assert await run(["--config", cfg, "replenish", "backtest", "--days", "120", "--weeks", "8"]) == 0
    out = capsys.readouterr().out
    assert "预热 5 周 + 回测 8 周" in out and "满足率" in out and "缺货天数占比" in out
    rows = [line_.split() for line_ in out.splitlines() if line_.startswith(("静态公式", "动态预测"))]
    assert len(rows) == 2
    for cells in rows:  # both policies: fill rate and stock-out days measured
        fill, stockout = (float(c.rstrip("%")) for c in cells[-3:-1])
        assert 50 < fill <= 100 and 0 <= stockout < 50
    assert "参与评估的商品 2 个" in out and "缺货日 " in out
