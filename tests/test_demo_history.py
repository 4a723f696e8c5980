"""The demo's year of daily history (core/importer/demo_history.py), and what it makes the jobs and the engine say:
a risk report, a purchase warning with its chart, a health report with a department under 85, an automatic
purchase request, a hit-rate board, suggestions and a back-test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.job_wiring import notify_approvers
from cards.parts import split_message
from core.importer import load_demo
from core.importer.demo_history import MID_AUTUMN, SPECS
from core.messaging.outbound import Outbound
from core.models import Document, DocumentLine, OutboxMessage, Product, StockMove
from core.replenish.promotions_db import list_promotions
from core.replenish.suggest import suggest
from jobs.registry import JOBS
from jobs.runner import Deps, run_job

NOW = datetime.now(UTC)


@pytest.fixture
async def demo(db, settings):
    await db.write(lambda s: load_demo(s, settings, now=NOW))
    return db


def local_today(settings):
    return NOW.astimezone(settings.timezone).date()


async def sales_by_day(db, sku: str, settings) -> dict:
    """Stock-unit quantity of the product's posted sales issues per local day."""
    async with db.read() as s:
        rows = (await s.execute(
            select(Document.posted_at, DocumentLine.stock_qty)
            .join(DocumentLine, DocumentLine.document_id == Document.id)
            .join(Product, Product.id == DocumentLine.product_id)
            .where(Product.sku == sku, Document.type == "sales_issue", Document.status == "posted"))).all()
    out: dict = {}
    for at, qty in rows:
        day = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(settings.timezone).date()
        out[day] = out.get(day, 0) + qty
    return out


async def test_a_year_of_daily_documents_with_seasons_promotions_stockouts_idle_goods_and_preorders(demo, settings):
    today = local_today(settings)
    async with demo.read() as s:
        first = await s.scalar(select(func.min(StockMove.posted_at)))
        kinds = dict((await s.execute(select(Document.type, func.count()).where(Document.status == "posted")
                                      .group_by(Document.type))).all())
        preorders = (await s.execute(
            select(Document.number, Document.delivery_date).join(DocumentLine, DocumentLine.document_id == Document.id)
            .join(Product, Product.id == DocumentLine.product_id)
            .where(Document.type == "sales_order", Document.status == "submitted", Product.sku == "FG-COOKIE"))).all()
        promotions = await list_promotions(s)
    first = (first if first.tzinfo else first.replace(tzinfo=UTC)).astimezone(settings.timezone).date()
    assert (today - first).days >= 365  # a year of history behind the back-test
    assert kinds["sales_issue"] > 600 and kinds["purchase_receipt"] > 50 and kinds["purchase_order"] > 50
    assert kinds["transfer"] > 80 and kinds.get("loss", 0) > 0  # deliveries to stores; expired lots
    # seasonality: mooncakes sell in the weeks before Mid-Autumn, hardly at all otherwise
    sold = await sales_by_day(demo, "FG-MOONCAKE", settings)
    festival = next(d for y, d in sorted(MID_AUTUMN.items()) if today - timedelta(days=365) < d < today)
    before = sum(q for d, q in sold.items() if festival - timedelta(days=21) <= d < festival)
    spring = sum(q for d, q in sold.items() if festival - timedelta(days=150) <= d < festival - timedelta(days=129))
    assert before > 5 * max(spring, 1), (before, spring)
    # past promotions recorded (618, 双十一) and one scheduled next week
    assert any(p.start > today for p in promotions) and sum(p.start < today for p in promotions) >= 2
    # stock-outs: a late delivery left the nuts unsold for days in the middle of the year
    nuts = await sales_by_day(demo, "FG-NUT", settings)
    gap = max((b - a).days for a, b in zip(sorted(nuts), sorted(nuts)[1:], strict=False))
    assert gap >= 5, gap
    # idle goods: stock on hand, nothing moved for 30 days
    async with demo.read() as s:
        for sku in (k for k, v in SPECS.items() if v.stops):
            pid = await s.scalar(select(Product.id).where(Product.sku == sku))
            last = await s.scalar(select(func.max(StockMove.posted_at)).where(StockMove.product_id == pid))
            held = await s.scalar(select(func.sum(StockMove.qty)).where(StockMove.product_id == pid))
            last = (last if last.tzinfo else last.replace(tzinfo=UTC))
            assert held > 0 and NOW - last > timedelta(days=30), sku
    # pre-orders of the short cookies due within the week
    assert len(preorders) >= 2 and all(0 < (due - today).days <= 7 for _, due in preorders)


async def _outbox(db) -> list[tuple[str, str, dict]]:
    async with db.read() as s:
        return [(r.dedupe_key, json.loads(r.target)["address"], json.loads(r.message))
                for r in await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]


async def test_every_job_has_something_to_say_on_the_demo(demo, settings):
    deps = Deps(demo, settings, Outbound(split_message), owner="t", clock=lambda: NOW,
                extras={"notify_approvers": notify_approvers})
    said = {}
    for name in ("risk_report", "purchase_warnings", "health_report", "auto_purchase", "hit_rate"):
        job = JOBS[name]
        done = await run_job(job, job.period(NOW.astimezone(settings.timezone)), deps)
        assert done.ok, done
        said[name] = done.result
    rows = await _outbox(demo)

    def of(name: str) -> list[dict]:
        return [m for key, _to, m in rows if key.startswith(f"job:{name}:")]

    assert "高风险商品" in said["risk_report"] and "无出入库 0" not in said["risk_report"], said
    risk = " ".join(m.get("text", "") for m in of("risk_report"))
    assert "抹茶粉" in risk and "周转率" in risk  # an idle product, and the formula stated
    assert not said["purchase_warnings"].startswith("预警 0"), said
    images = [m for m in of("purchase_warnings") if m["kind"] == "image"]
    assert images and any("黄油曲奇礼盒" in m["title"] for m in images)
    assert "低于 85 分：" in said["health_report"], said  # one department (at least) gets an improvement task
    assert said["auto_purchase"].startswith("自动申请 1 张") or said["auto_purchase"].startswith("自动申请 2 张"), said
    async with demo.read() as s:
        auto = (await s.execute(select(Product.sku).join(DocumentLine, DocumentLine.product_id == Product.id)
                                .join(Document, Document.id == DocumentLine.document_id)
                                .where(Document.type == "purchase_request", Document.status == "submitted"))).all()
    assert ("RM-BUTTER",) in auto  # under-ordered butter, below its safety line: requested by the 02:00 job
    assert "命中率" in said["hit_rate"] and of("hit_rate"), said


async def test_suggestions_and_the_back_test_say_something(demo, settings):
    found = {s.sku: s for s in await suggest(demo, today=local_today(settings), settings=settings)}
    cookie = found["FG-COOKIE"]
    assert cookie.qty > 0 and cookie.explanation.projected < cookie.explanation.safety_stock
    assert sum(1 for s in found.values() if s.qty > 0) >= 5
