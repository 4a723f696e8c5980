"""Forecast anchors and category strategies in the database: reason required, changes logged, blend capped, FVA."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from core.errors import DomainError
from core.models import ForecastAnchor, ForecastOverride, Product, ReplenishStrategy, User
from core.replenish import anchors
from core.replenish.anchors_db import fva_report, list_anchors, override_log, record_actuals, set_anchor
from core.replenish.strategies_db import set_strategy, strategies
from core.replenish.suggest import suggest
from core.storage import Database
from core.storage.migrate import alembic_config, upgrade
from tests.conftest import PG_URL, table_names, test_database_url
from tests.factories import line, seed
from tests.ledger_history import cli_database, daily_sales, dated, local

TODAY = date(2026, 11, 20)


async def counts(db) -> tuple[int, int]:
    async with db.read() as s:
        return (await s.scalar(select(func.count()).select_from(ForecastAnchor)),
                await s.scalar(select(func.count()).select_from(ForecastOverride)))


async def test_anchor_needs_a_reason_and_changes_nothing_without_one(db, settings):
    async with db.session() as s:
        await seed(s)
    for reason in (None, "", "   "):
        with pytest.raises(DomainError) as e:
            async with db.session() as s:
                await set_anchor(s, settings, sku="CREAM", month="2026-12", qty=300, reason=reason, by="张库管")
        assert e.value.code == "ANCHOR_REASON" and "原因" in e.value.message_zh and e.value.fix_zh
    assert await counts(db) == (0, 0)

    now = local(settings, TODAY)
    async with db.session() as s:
        await set_anchor(s, settings, sku="CREAM", month="2026-12", qty=300, reason="客户确认 12 月团购", by="张库管",
                         now=now)
    with pytest.raises(DomainError):
        async with db.session() as s:
            await set_anchor(s, settings, sku="CREAM", month="2026-12", qty=900, reason=" ", by="张库管", now=now)
    async with db.read() as s:
        [a] = await list_anchors(s)
    assert a.qty == Decimal(300) and a.reason == "客户确认 12 月团购"
    assert await counts(db) == (1, 1)


@pytest.mark.parametrize(("kw", "code"), [
    ({"month": "十二月"}, "BAD_MONTH"),
    ({"qty": "-5"}, "BAD_QTY"),
    ({"qty": "abc"}, "BAD_NUMBER"),
    ({"weight_cap": "0.9"}, "BAD_WEIGHT"),
    ({"weight_cap": "0"}, "BAD_WEIGHT"),
    ({"sku": "NOPE"}, "UNKNOWN_SKU"),
    ({"by": "陌生人"}, "NOT_FOUND"),
    ({"by": ""}, "NO_USER"),
])
async def test_bad_anchor_input_is_refused_in_chinese(db, settings, kw, code):
    async with db.session() as s:
        await seed(s)
    args = {"sku": "CREAM", "month": "2026-12", "qty": 300, "reason": "团购", "by": "张库管", **kw}
    with pytest.raises(DomainError) as e:
        async with db.session() as s:
            await set_anchor(s, settings, **args)
    assert e.value.code == code and e.value.fix_zh
    assert await counts(db) == (0, 0)


async def test_the_database_itself_refuses_an_empty_reason(db, settings):
    async with db.session() as s:
        await seed(s)
        pid = await s.scalar(select(Product.id).where(Product.sku == "CREAM"))
        uid = await s.scalar(select(User.id))
    with pytest.raises(IntegrityError):
        async with db.session() as s:
            s.add(ForecastAnchor(product_id=pid, month=date(2026, 12, 1), qty=Decimal(1), weight_cap=Decimal("0.5"),
                                 reason="  ", created_by_id=uid))
    assert await counts(db) == (0, 0)


async def test_every_set_and_change_is_logged_with_old_new_who_and_why(db, settings):
    async with db.session() as s:
        await seed(s)
        s.add(User(name="李采购", roles="purchasing"))
    first, second = local(settings, TODAY), local(settings, TODAY, 15)
    async with db.session() as s:
        await set_anchor(s, settings, sku="CREAM", month=date(2026, 12, 9), qty="300", reason="团购预订", by="张库管",
                         now=first)
    async with db.session() as s:
        view = await set_anchor(s, settings, sku="CREAM", month="2026-12", qty="240.5", reason="客户减量",
                                by="李采购", weight_cap="0.3", now=second)
    assert view.month == date(2026, 12, 1) and view.qty == Decimal("240.5") and view.weight_cap == Decimal("0.3")
    assert view.created_by == "张库管" and view.stat_qty == Decimal(0)  # no sales history: statistical 0
    async with db.read() as s:
        log = await override_log(s, sku="CREAM")
        anchors_now = await list_anchors(s, month="2026-12")
    assert [(o.old_qty, o.new_qty, o.old_weight_cap, o.new_weight_cap, o.user, o.reason) for o in log] == [
        (None, Decimal(300), None, Decimal("0.5"), "张库管", "团购预订"),
        (Decimal(300), Decimal("240.5"), Decimal("0.5"), Decimal("0.3"), "李采购", "客户减量"),
    ]
    assert [o.at for o in log] == [first, second] and all(o.at.tzinfo for o in log)
    assert len(anchors_now) == 1


async def test_anchor_blend_in_suggestions_is_capped_and_explained(db, settings):
    month = TODAY.replace(day=1)
    async with db.session() as s:
        await seed(s)
        await dated(s, settings, "purchase_receipt", [line("CREAM", 400, "kg")],
                    local(settings, TODAY - timedelta(60), 8), warehouse="WH1")
        await daily_sales(s, settings, "CREAM", "kg", TODAY - timedelta(56), TODAY - timedelta(1), 2)
    before = {x.sku: x for x in await suggest(db, today=TODAY, settings=settings, everything=True)}["CREAM"]
    assert before.explanation.anchor is None
    async with db.session() as s:  # the planner says 10× the usual month
        await set_anchor(s, settings, sku="CREAM", month=month, qty=600, reason="大客户年会", by="张库管",
                         now=local(settings, TODAY, 8))
    after = {x.sku: x for x in await suggest(db, today=TODAY, settings=settings, everything=True)}["CREAM"]
    o = after.explanation.anchor
    assert o is not None and o.reason == "大客户年会"
    assert o.manual == pytest.approx(600 / 30)
    assert 0 < o.weight_used <= anchors.WEIGHT_CAP * anchors.UPWARD_DAMP
    assert o.blended == pytest.approx(o.stat + o.weight_used * (o.manual - o.stat))
    assert o.stat < o.blended < o.manual
    assert before.explanation.cover_demand < after.explanation.cover_demand
    days = after.explanation.cover_days
    assert after.explanation.cover_demand <= Decimal(str(o.blended * 1.6 * days))  # far from the manual 20/day
    # an anchor of another month does not apply
    async with db.session() as s:
        await set_anchor(s, settings, sku="SUGAR", month="2027-01", qty=999, reason="春节备货", by="张库管",
                         now=local(settings, TODAY, 8))
    sugar = {x.sku: x for x in await suggest(db, today=TODAY, settings=settings, everything=True)}["SUGAR"]
    assert sugar.explanation.anchor is None


async def test_fva_report_compares_statistical_blended_and_actual(db, settings):
    async with db.session() as s:
        await seed(s)
        await dated(s, settings, "purchase_receipt", [line("CREAM", 500, "kg")], local(settings, date(2026, 7, 31)),
                    warehouse="WH1")
        await daily_sales(s, settings, "CREAM", "kg", date(2026, 8, 1), date(2026, 9, 27), 3)
        await set_anchor(s, settings, sku="CREAM", month="2026-10", qty=150, reason="国庆团购", by="张库管",
                         now=local(settings, date(2026, 9, 28)))
        await daily_sales(s, settings, "CREAM", "kg", date(2026, 10, 1), date(2026, 10, 31), 5)
    async with db.read() as s:
        [a] = await list_anchors(s)
        during = await fva_report(s, settings, "2026-10", today=date(2026, 10, 15))
        report = await fva_report(s, settings, "2026-10", today=TODAY)
    stat = float(a.stat_qty)
    assert 80 < stat < 105  # about 3/day × 31
    assert during.rows[0].actual is None and during.fva is None  # the month is not over yet
    [r] = report.rows
    blended, used = anchors.blend([stat], [150.0], [0.5])
    assert r.actual == Decimal(155) and r.manual == Decimal(150)
    assert float(r.weight_used) == pytest.approx(used[0], abs=1e-4)
    assert float(r.blended) == pytest.approx(blended[0], abs=0.01)
    assert r.fva is not None and r.fva > 0 and report.helped == 1 and report.hurt == 0
    assert report.stat_wape > report.blended_wape and report.fva == report.stat_wape - report.blended_wape
    assert float(report.fva) == pytest.approx(anchors.fva([155.0], [stat], blended), abs=1e-3)

    async with db.session() as s:
        with pytest.raises(DomainError) as e:
            await record_actuals(s, settings, "2026-11", today=TODAY)
        assert e.value.code == "MONTH_NOT_OVER"
        assert await record_actuals(s, settings, "2026-10", today=TODAY) == 1
    async with db.read() as s:
        assert (await list_anchors(s))[0].actual_qty == Decimal(155)


async def test_category_strategies_validate_and_drive_the_plan(db, settings):
    async with db.session() as s:
        await seed(s)
        await s.execute(update(Product).where(Product.sku == "CREAM").values(lead_time_days=5))
        await dated(s, settings, "purchase_receipt", [line("CREAM", 100, "kg")], local(settings, TODAY - timedelta(40)),
                    warehouse="WH1")
        await daily_sales(s, settings, "CREAM", "kg", TODAY - timedelta(35), TODAY - timedelta(1), 1)
    for kw, code in (({"strategy": "magic"}, "BAD_STRATEGY"), ({"strategy": "fixed"}, "BAD_FIXED_QTY"),
                     ({"service_level": "1.2"}, "BAD_SERVICE_LEVEL"), ({"review_days": 0}, "BAD_REVIEW_DAYS")):
        with pytest.raises(DomainError) as e:
            async with db.session() as s:
                await set_strategy(s, **{"category": "原料", "strategy": "dynamic", **kw})
        assert e.value.code == code
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(ReplenishStrategy)) == 0

    async with db.session() as s:
        await set_strategy(s, category="原料", strategy="fixed", fixed_qty="40", review_days=14, by="张库管")
    async with db.read() as s:
        assert (await strategies(s))["原料"].fixed_qty == Decimal(40)
    cream = {x.sku: x for x in await suggest(db, today=TODAY, settings=settings, everything=True)}["CREAM"].explanation
    assert cream.strategy == "fixed" and cream.safety_stock == Decimal(40) and cream.review_days == Decimal(14)

    async with db.session() as s:
        await set_strategy(s, category="原料", strategy="static", service_level="0.9")
    cream = {x.sku: x for x in await suggest(db, today=TODAY, settings=settings, everything=True)}["CREAM"].explanation
    assert cream.strategy == "static" and cream.method == "static-average"
    assert cream.lead_days == Decimal(5) and cream.safety_stock == Decimal(5)  # the old formula: d̄ × L = 1 × 5


async def test_migration_0003_adds_the_replenishment_tables_and_downgrade_removes_them(tmp_path: Path):
    url = test_database_url(tmp_path)
    db = Database(url)
    new = {"replenish_strategies", "forecast_anchors", "forecast_overrides"}
    try:
        if PG_URL:
            async with db.engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        await upgrade(url, "0002")
        async with db.session() as s:
            s.add(User(name="张库管"))
        assert not new & await table_names(db)
        await upgrade(url)
        assert new <= await table_names(db)
        async with db.session() as s:
            assert [u.name for u in (await s.execute(select(User))).scalars()] == ["张库管"]
            s.add(Product(sku="SUGAR", name="白砂糖", category="原料", stock_unit="kg", purchase_unit="袋",
                          purchase_factor=25))
            await s.flush()
            await set_strategy(s, category="原料", strategy="dynamic", by="张库管")
        await db.dispose()
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0002")
        assert not new & await table_names(db) and "users" in await table_names(db)
    finally:
        await db.dispose()


async def test_cli_anchor_strategy_and_fva(tmp_path: Path, settings, capsys):
    from cli.main import run

    cfg, _ = await cli_database(tmp_path, "cli")
    base = ["--config", cfg, "replenish"]
    capsys.readouterr()
    assert await run([*base, "anchor", "CREAM", "2026-12", "300", "--reason", " ", "--by", "张库管"]) == 2
    assert "必须填写原因" in capsys.readouterr().err
    assert await run([*base, "anchor", "CREAM", "2026-12", "300", "--reason", "团购", "--by", "张库管",
                      "--weight", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "已设置 CREAM" in out and "2026-12" in out and "权重上限 0.3" in out and "已记录" in out
    assert await run([*base, "strategy", "原料", "fixed", "--fixed-qty", "25"]) == 0
    assert "固定安全库存 25" in capsys.readouterr().out
    assert await run([*base, "strategy", "原料", "fixed"]) == 2
    assert "固定数量" in capsys.readouterr().err
    assert await run([*base, "fva", "2026-12"]) == 0
    out = capsys.readouterr().out
    assert "CREAM" in out and "未结束" in out and "暂不能评估" in out
    assert await run([*base, "fva", "2025-01"]) == 0
    assert "没有人工预测锚点" in capsys.readouterr().out


async def test_cli_out_of_range_input_is_a_chinese_error_and_changes_nothing(tmp_path: Path, settings, capsys):
    """Inputs that used to end in a traceback (OverflowError, decimal.InvalidOperation) or in unbounded work."""
    from cli.main import run

    cfg, url = await cli_database(tmp_path, "range")
    db = Database(url)
    base = ["--config", cfg, "replenish"]
    anchor = [*base, "anchor", "CREAM"]
    who = ["--reason", "团购", "--by", "张库管"]
    cases = [
        ([*base, "backtest", "--days", "1000000"], "历史天数"),
        ([*base, "backtest", "--weeks", "0"], "回测周数"),
        ([*anchor, "2026-12", "1e30", *who], "过大"),
        ([*anchor, "0001-01", "300", *who], "超出范围"),
        ([*anchor, "9999-12", "300", *who], "超出范围"),
        ([*anchor, "2099-12", "300", *who], "个月之后"),
        ([*base, "strategy", "原料", "fixed", "--fixed-qty", "1e30"], "过大"),
        ([*base, "strategy", "原料", "dynamic", "--review-days", "100000"], "补货周期"),
        ([*base, "strategy", "原料", "dynamic", "--fixed-qty", "5"], "只有 fixed"),
        ([*base, "strategy", "原料x", "dynamic"], "没有商品属于品类"),
        ([*base, "promo", "remove", "99999999999999999999999"], "找不到促销"),
        ([*base, "promo", "add", "CREAM", "9999-12-01", "9999-12-02", *who], "超出范围"),
    ]
    for argv, said in cases:
        capsys.readouterr()
        assert await run(argv) == 2, argv
        err = capsys.readouterr().err
        assert said in err and "处理办法" in err and "Traceback" not in err, (argv, err)
    async with db.read() as s:
        assert (await s.execute(select(ForecastAnchor))).first() is None
        assert (await s.execute(select(ReplenishStrategy))).first() is None
    await db.dispose()


async def test_an_anchor_reads_the_products_category_not_the_whole_ledger(db, settings, monkeypatch):
    """set_anchor runs in a write transaction: its statistical forecast reads the product's category (the engine
    pools within it), never every product's history."""
    from core.replenish import history

    async with db.session() as s:
        await seed(s)
        s.add(Product(sku="CAKE", name="蛋糕", category="成品", stock_unit="个", purchase_unit="个",
                      purchase_factor=1))
        await s.flush()
        await dated(s, settings, "purchase_receipt", [line("CREAM", 400, "kg"), line("CAKE", 400, "个")],
                    local(settings, TODAY - timedelta(60), 8), warehouse="WH1")
        await daily_sales(s, settings, "CREAM", "kg", TODAY - timedelta(28), TODAY - timedelta(1), 2)
        await daily_sales(s, settings, "CAKE", "个", TODAY - timedelta(28), TODAY - timedelta(1), 5)
        cake = await s.scalar(select(Product.id).where(Product.sku == "CAKE"))
    seen: set[int] = set()
    real = history._arrays

    async def spy(session, stmt, divisor, **kw):
        data = await real(session, stmt, divisor, **kw)
        seen.update(int(p) for p in data[:, 0])
        return data

    monkeypatch.setattr(history, "_arrays", spy)
    async with db.session() as s:
        a = await set_anchor(s, settings, sku="CREAM", month=TODAY.replace(day=1), qty=60, reason="团购", by="张库管",
                             now=local(settings, TODAY, 8))
    assert seen and cake not in seen  # CREAM's rows were read, the other category's were not
    assert a.stat_qty > 0
