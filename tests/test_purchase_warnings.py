"""The hourly purchase warnings against a hand-computed ledger: which products qualify (under the safety line with
pre-orders due in 7 days), their shortfall, one digest per person with 发起采购申请 buttons that work, a valid PNG
chart per product, once per product and day (a later hour, two runs at once), at most six products a run, whole on
WeCom; and the chart shown in the console's chat and group panel (Chromium)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import matplotlib.image
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from bot.server import build_app
from cards import wecom
from cards.parts import split_message
from core.ledger.documents import LineInput
from core.messaging.outbound import Outbound
from core.messaging.targets import Target
from core.models import Document, OutboxMessage, Product, User
from core.replenish.strategies_db import set_strategy
from core.replenish.suggest import suggest
from jobs import purchase_warnings as pw
from jobs.registry import JOBS
from jobs.runner import Deps, run_job
from tests.chat import Chat
from tests.factories import line, seed
from tests.ledger_history import daily_sales, dated, local
from tests.test_console_browser import CHROMIUM, HAVE_CHROMIUM

NOW = datetime(2026, 12, 7, 2, 17, tzinfo=UTC)  # 10:17 in Asia/Shanghai
T = date(2026, 12, 7)
JOB = JOBS["purchase_warnings"]
CATEGORY = "烘焙原料"  # a fixed safety line of 40 for every product in it: hand-computable
PRODUCTS = [("FLOUR", "面粉", "kg"), ("BUTTER", "黄油", "kg"), ("EGG", "鸡蛋", "个"), ("YEAST", "酵母", "kg"),
            ("SALT", "盐", "kg"), ("OIL", "食用油", "L")]


async def ledger(db, settings, day: date = T) -> None:
    """Stock received ten days before `day` (T by default; FLOUR also sold 2 kg a day for five days), and the
    pre-orders (T stands for `day`):

    | product | on hand | pre-orders (customer, delivery)                       | reserved | qualifies         |
    |---------|---------|-------------------------------------------------------|----------|-------------------|
    | FLOUR   | 30      | 20 散客乙 T+2; 5 大客户甲 T+7; (100 散客乙 T+8: outside) | 0.75     | 29.25 < 40: yes   |
    | BUTTER  | 44      | 40 大客户甲 T+5                                        | 6        | 38 < 40: yes      |
    | EGG     | 10      | none                                                  | 0        | no pre-order      |
    | YEAST   | 10      | 5 散客乙 T+9 (outside)                                 | 0        | nothing due       |
    | SALT    | 100     | 10 散客乙 T+1                                          | 0        | 100 ≥ 40: no      |
    | OIL     | 5       | 3 散客乙 T+1 (no purchaser: the purchasing role)        | 0        | 5 < 40: yes       |

    Shortfall = 40 − (available − the pre-orders' unreserved quantity): FLOUR 40 − (29.25 − 20 − 4.25) = 35,
    BUTTER 40 − (38 − 34) = 36, OIL 40 − (5 − 3) = 38."""

    async def work(s) -> None:
        await seed(s)
        s.add_all([User(name="李采购", roles="purchasing", department="采购部"),
                   User(name="赵采购", roles="purchasing", department="采购部"),
                   User(name="陈经理", roles="manager", department="管理部")])
        await s.flush()
        buyer = await s.scalar(select(User.id).where(User.name == "李采购"))
        s.add_all([Product(sku=sku, name=name, category=CATEGORY, stock_unit=unit, purchase_unit=unit,
                           purchaser_id=None if sku == "OIL" else buyer) for sku, name, unit in PRODUCTS])
        await s.flush()
        await set_strategy(s, category=CATEGORY, strategy="fixed", fixed_qty="40")
        stock = {"FLOUR": 40, "BUTTER": 44, "EGG": 10, "YEAST": 10, "SALT": 100, "OIL": 5}
        await dated(s, settings, "purchase_receipt", [line(sku, q, dict((p[0], p[2]) for p in PRODUCTS)[sku])
                                                      for sku, q in stock.items()],
                    local(settings, day - timedelta(days=10)), warehouse="WH1", supplier="SUP1")
        await daily_sales(s, settings, "FLOUR", "kg", day - timedelta(days=5), day - timedelta(days=1), 2)
        for sku, qty, unit, customer, days in [("FLOUR", 20, "kg", "C2", 2), ("FLOUR", 5, "kg", "C1", 7),
                                               ("FLOUR", 100, "kg", "C2", 8), ("BUTTER", 40, "kg", "C1", 5),
                                               ("YEAST", 5, "kg", "C2", 9), ("SALT", 10, "kg", "C2", 1),
                                               ("OIL", 3, "L", "C2", 1)]:
            await dated(s, settings, "sales_order", [LineInput(sku, Decimal(qty), unit)],
                        local(settings, day - timedelta(days=1)), post=False, warehouse="WH1", customer=customer,
                        delivery_date=day + timedelta(days=days))

    await db.write(work)


def deps(db, settings, at: datetime = NOW, channel: str = "") -> Deps:
    return Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: at,
                channels={"purchase_warnings": channel} if channel else {})


async def run_at(db, settings, at: datetime = NOW, channel: str = ""):
    return await run_job(JOB, JOB.period(at.astimezone(settings.timezone)), deps(db, settings, at, channel))


async def queued(db) -> list[tuple[str, str, dict]]:
    async with db.read() as s:
        rows = await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [(r.dedupe_key, json.loads(r.target)["address"], json.loads(r.message)) for r in rows]


def of(rows, user: str, kind: str) -> list[dict]:
    return [m for _, to, m in rows if to == user and m["kind"] == kind]


def decoded(message: dict) -> tuple[int, int]:
    png = base64.b64decode(message["png"])
    assert png.startswith(b"\x89PNG") and len(png) < 2 * 1024 * 1024
    return matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2]


async def test_the_hand_computed_case(db, settings):
    await ledger(db, settings)
    engine = {s.sku: s.explanation for s in await suggest(db, today=T, settings=settings, everything=True)}
    assert {sku: (engine[sku].safety_stock, engine[sku].on_hand, engine[sku].reserved) for sku in ("FLOUR", "BUTTER")} \
        == {"FLOUR": (40, 30, Decimal("0.75")), "BUTTER": (40, 44, 6)}  # the engine agrees with the table above
    done = await run_at(db, settings)
    assert done.ok and done.result == "预警 3 个商品", done
    rows = await queued(db)
    assert {to for _, to, _ in rows} == {"李采购", "赵采购"}
    [digest] = of(rows, "李采购", "markdown")
    text = digest["text"]
    assert digest["title"] == "采购预警"
    assert text.startswith("3 个商品可用库存低于安全库存，且 12-07 至 12-14 有预订单交货")
    # most urgent first (earliest delivery): OIL (T+1), FLOUR (T+2), BUTTER (T+5); nothing else
    assert text.index("食用油（OIL）") < text.index("面粉（FLOUR）") < text.index("黄油（BUTTER）")
    assert not any(sku in text for sku in ("EGG", "YEAST", "SALT"))
    assert "1. **食用油（OIL）缺口 38L**" in text and "2. **面粉（FLOUR）缺口 35kg**" in text \
        and "3. **黄油（BUTTER）缺口 36kg**" in text
    assert "可用 29.25kg（在库 30kg − 预留 0.75kg），安全库存 40kg；交货后可用 5kg" in text
    assert "可用 38kg（在库 44kg − 预留 6kg），安全库存 40kg；交货后可用 4kg" in text
    flour = next(ln for ln in text.splitlines() if ln.startswith("预订单：") and "12-09" in ln)
    assert "12-09" in flour and "散客乙 20kg" in flour and "12-14" in flour and "大客户甲 5kg，已预留 0.75kg" in flour
    assert "12-15" not in text and "100kg" not in text  # the order of T+8 is outside the 7 days
    assert "发起采购：采购申请 FLOUR" in text
    [card] = of(rows, "李采购", "card")
    assert [(b["label"], b["key"]) for b in card["buttons"]] == [("食用油（OIL）", "pick:采购申请 OIL"),
                                                                 ("面粉（FLOUR）", "pick:采购申请 FLOUR"),
                                                                 ("黄油（BUTTER）", "pick:采购申请 BUTTER")]
    charts = of(rows, "李采购", "image")
    assert [c["title"] for c in charts] == [f"{name}近30天趋势" for name in ("食用油（OIL）", "面粉（FLOUR）",
                                                                            "黄油（BUTTER）")]
    assert all(decoded(c) == (540, 960) for c in charts)
    # OIL has no purchaser: everyone with the purchasing role hears of it, 赵采购 only of it
    [other] = of(rows, "赵采购", "markdown")
    assert "食用油（OIL）" in other["text"] and "FLOUR" not in other["text"]
    [single] = of(rows, "赵采购", "card")
    assert [(b["label"], b["key"]) for b in single["buttons"]] == [("发起采购申请", "pick:采购申请 OIL")]
    assert [c["title"] for c in of(rows, "赵采购", "image")] == ["食用油（OIL）近30天趋势"]
    assert all(k.startswith(f"job:purchase_warnings:{T}") for k, _, _ in rows)  # job and its period (hour or day)


async def test_the_chart_data_is_the_ledger(db, settings):
    await ledger(db, settings)
    found, with_orders = await pw.find(_ctx(db, settings), T)
    assert with_orders == 4 and [w.sku for w in found] == ["OIL", "FLOUR", "BUTTER"]
    flour = next(w for w in found if w.sku == "FLOUR")
    assert (flour.available, flour.after, flour.shortfall) == (Decimal("29.25"), 5, 35)
    async with db.read() as s:
        trend = (await pw.trends(s, [flour], T, _ctx(db, settings)))[flour.product_id]
    assert trend.days[0] == T - timedelta(days=29) and trend.days[-1] == T and len(trend.days) == 30
    sold = dict(zip(trend.days, trend.sales, strict=True))
    assert {d: q for d, q in sold.items() if q} == {T - timedelta(days=k): 2.0 for k in range(1, 6)}
    closing = dict(zip(trend.days, trend.on_hand, strict=True))
    assert closing[T - timedelta(days=11)] == 0 and closing[T - timedelta(days=10)] == 40
    assert [closing[T - timedelta(days=k)] for k in range(6, -1, -1)] == [40, 38, 36, 34, 32, 30, 30]
    assert trend.safety == 40 and trend.preorders == ((T + timedelta(days=2), 20.0), (T + timedelta(days=7), 5.0))


def _ctx(db, settings):
    from jobs.context import JobContext

    return JobContext("purchase_warnings", "2026-12-07T10", NOW, db, settings, Outbound(split_message))


async def test_once_a_day_later_hours_add_nothing_and_the_next_day_warns_again(db, settings):
    await ledger(db, settings)
    assert (await run_at(db, settings)).result == "预警 3 个商品"
    before = await queued(db)
    later = await run_at(db, settings, NOW + timedelta(hours=1))  # 11:17, the next hourly period
    assert later.ok and later.ran and later.result == "预警 0 个商品；今天已预警过 3 个", later
    assert await queued(db) == before
    again = await run_job(JOB, later.period, deps(db, settings, NOW + timedelta(hours=1)))
    assert not again.ran  # the same period twice: the claim
    tomorrow = await run_at(db, settings, NOW + timedelta(days=1))  # still under the line the next day
    assert tomorrow.result == "预警 3 个商品"
    new = (await queued(db))[len(before):]
    assert len(of(new, "李采购", "image")) == 3 and len(of(new, "李采购", "markdown")) == 1


async def test_two_runs_at_once_warn_each_product_once(db, settings):
    await ledger(db, settings)
    one, two = await asyncio.gather(run_at(db, settings), run_at(db, settings, NOW + timedelta(hours=1)))
    assert one.ok and two.ok, (one, two)
    assert sorted([one.result, two.result]) == ["预警 0 个商品；今天已预警过 3 个", "预警 3 个商品"]
    rows = await queued(db)
    assert Counter((to, m["kind"]) for _, to, m in rows) == {
        ("李采购", "markdown"): 1, ("李采购", "card"): 1, ("李采购", "image"): 3,
        ("赵采购", "markdown"): 1, ("赵采购", "card"): 1, ("赵采购", "image"): 1}


async def test_a_run_that_loses_the_race_for_a_chart_rolls_its_digest_back(db, settings, monkeypatch):
    """On PostgreSQL two runs may both see no chart queued yet: the second one's chart insert then finds the key
    taken, and its whole transaction (digest included) is rolled back and retried."""
    await ledger(db, settings)
    assert (await run_at(db, settings)).result == "预警 3 个商品"
    before = await queued(db)
    real, blind = pw.outbox.states, {"calls": 0}

    async def stale(session, keys):  # the pre-check and the first delivery attempt see nothing queued yet
        blind["calls"] += 1
        return {} if blind["calls"] <= 2 else await real(session, keys)

    monkeypatch.setattr(pw.outbox, "states", stale)
    later = await run_at(db, settings, NOW + timedelta(hours=1))
    assert later.ok and later.result == "预警 0 个商品；今天已预警过 3 个", later
    assert blind["calls"] > 2 and await queued(db) == before  # no second digest, card or chart


async def test_the_channel_gets_the_digest_and_charts_without_buttons(db, settings):
    await ledger(db, settings)
    done = await run_at(db, settings, channel="purchasing")
    assert done.ok and done.result == "预警 3 个商品"
    rows = await queued(db)
    group = [m for _, to, m in rows if to == "purchasing"]
    assert [m["kind"] for m in group] == ["markdown", "image", "image", "image"]
    assert "采购申请 BUTTER" in group[0]["text"]  # the commands, as a robot cannot carry buttons


async def test_a_button_starts_the_purchase_request(db, settings):
    await ledger(db, settings)
    await run_at(db, settings)
    [card] = of(await queued(db), "李采购", "card")
    chat = Chat(db, settings, NOW)
    try:
        replies = await chat.send("李采购", click=card["buttons"][1]["key"])  # 面粉
    finally:
        await chat.close()
    said = "\n".join(r["text"] for r in replies if r["to"] == "李采购")
    assert "采购申请" in said and "已提交" in said and "面粉" in said, replies
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Document)
                              .where(Document.type == "purchase_request", Document.status == "submitted")) == 1


async def test_at_most_six_products_a_run_the_rest_the_next_hour(db, settings):
    async def work(s) -> None:
        await seed(s)
        s.add(User(name="李采购", roles="purchasing"))
        await s.flush()
        buyer = await s.scalar(select(User.id).where(User.name == "李采购"))
        s.add_all([Product(sku=f"P{i}", name=f"原料{i}", category=CATEGORY, stock_unit="kg", purchase_unit="kg",
                           purchaser_id=buyer) for i in range(1, 9)])
        await s.flush()
        await set_strategy(s, category=CATEGORY, strategy="fixed", fixed_qty="10")
        for i in range(1, 9):  # nothing in stock, an order due on day i
            await dated(s, settings, "sales_order", [LineInput(f"P{i}", Decimal(1), "kg")], local(settings, T),
                        post=False, warehouse="WH1", customer="C2", delivery_date=T + timedelta(days=i % 8))

    await db.write(work)
    first = await run_at(db, settings)
    assert first.result == "预警 6 个商品；2 个留待下一小时", first
    rows = await queued(db)
    [digest] = of(rows, "李采购", "markdown")
    assert "另有 2 个商品同样需要补货" in digest["text"] and len(of(rows, "李采购", "card")[0]["buttons"]) == 6
    # the most urgent first: P8 is due today, then P1 … P5
    assert [c["title"].split("（")[0] for c in of(rows, "李采购", "image")] == [f"原料{i}" for i in (8, 1, 2, 3, 4, 5)]
    second = await run_at(db, settings, NOW + timedelta(hours=1))
    assert second.result == "预警 2 个商品；今天已预警过 6 个", second
    new = (await queued(db))[len(rows):]
    assert [c["title"].split("（")[0] for c in of(new, "李采购", "image")] == ["原料6", "原料7"]


async def test_nothing_without_pre_orders_due_or_when_above_the_line(db, settings):
    async def work(s) -> None:
        await seed(s)
        s.add(Product(sku="LATE", name="晚交货", category=CATEGORY, stock_unit="kg", purchase_unit="kg"))
        await s.flush()
        await set_strategy(s, category=CATEGORY, strategy="fixed", fixed_qty="10")
        await dated(s, settings, "sales_order", [LineInput("LATE", Decimal(1), "kg")], local(settings, T),
                    post=False, warehouse="WH1", customer="C2", delivery_date=T + timedelta(days=8))

    await db.write(work)
    done = await run_at(db, settings)
    assert done.ok and done.result == "预警 0 个商品：7天内没有预订单" and await queued(db) == []


def test_the_digest_reaches_wecom_whole_and_the_card_fits():
    """A WeCom button card shows 160 characters of text: the details go as markdown (split, never cut)."""
    orders = tuple(pw.PreOrder(f"XS20261207{n:04d}", T + timedelta(days=n % 7), "某某连锁烘焙有限公司", Decimal(12),
                               Decimal(0)) for n in range(4))
    items = [pw.Shortage(i, f"SKU-LONG-{i:03d}", f"进口无盐黄油（大包装）{i}", "kg", 1, Decimal(3), Decimal(0),
                         Decimal(0), Decimal(0), Decimal(40), orders) for i in range(6)]
    user = Target("wecom", "user", "lisi")
    parts = wecom.message_parts(user, pw.digest(items, T))
    assert len(parts) > 1 and all(p.kind == "markdown" and len(p.text.encode()) <= wecom.APP_MARKDOWN_LIMIT
                                  for p in parts)
    joined = "".join(p.text for p in parts)
    assert all(f"SKU-LONG-{i:03d}" in joined for i in range(6)) and joined.count("XS20261207") == 24
    card = pw.buttons(items)
    assert wecom.message_parts(user, card) == [card] and len(card.text) <= 160 and len(card.buttons) == 6


@pytest.mark.skipif(not HAVE_CHROMIUM, reason=f"Debian's chromium is not installed at {CHROMIUM}")
async def test_the_console_shows_the_chart_in_the_chat_and_the_group_panel(db, settings):
    playwright = pytest.importorskip("playwright.async_api")
    now = datetime.now(UTC)  # the app's sender delivers what is due now
    await ledger(db, settings, now.astimezone(settings.timezone).date())
    srv = TestServer(build_app(settings, db), host="127.0.0.1")
    await srv.start_server()
    try:
        done = await run_job(JOB, JOB.period(now.astimezone(settings.timezone)),
                             deps(db, settings, now, channel="purchasing"))
        assert done.ok and done.result.startswith("预警 3 个商品"), done
        async with playwright.async_playwright() as pw_:
            browser = await pw_.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                args=["--no-sandbox", "--disable-background-networking"])
            try:
                page = await browser.new_page()
                await page.goto(str(srv.make_url("/console")))
                await page.locator(".user", has_text="李采购").click()
                chat = page.locator("#log img[alt='面粉（FLOUR）近30天趋势']")
                await chat.wait_for(timeout=15_000)
                group = page.locator("#groups img[alt='面粉（FLOUR）近30天趋势']")
                await group.wait_for(timeout=15_000)
                for img in (chat, group):  # decoded by the browser at the chart's size
                    assert await img.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]") == [True, 960, 540]
                assert await page.locator("#log button", has_text="面粉（FLOUR）").count() == 1
            finally:
                await browser.close()
    finally:
        await srv.close()
