"""The hourly purchase warnings: under the safety line with pre-orders in 7 days → the purchaser's digest card with
the shortfall, the pre-orders and a 发起采购申请 button, and the 30-day trend chart; once per product and day."""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta

import matplotlib.image
from sqlalchemy import select, update

from cards.parts import split_message
from core.ledger.documents import LineInput
from core.messaging.outbound import Outbound
from core.models import OutboxMessage, Product
from core.replenish.suggest import suggest
from core.types import fq
from jobs.registry import JOBS
from jobs.runner import Deps, run_job
from tests.factories import line
from tests.ledger_history import dated, local
from tests.test_purchase_chat import NOW, setup, today


async def queued(db) -> list[tuple[str, str, dict]]:
    async with db.read() as s:
        rows = await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [(r.dedupe_key, json.loads(r.target)["address"], json.loads(r.message)) for r in rows]


async def test_a_low_product_with_pre_orders_is_warned_once_a_day_with_its_chart(db, settings):
    await setup(db, settings)  # sugar: 60 kg left, sold 5 kg a day, 李采购 its purchaser
    t = today(settings)

    async def low(s) -> None:
        await dated(s, settings, "other_issue", [line("SUGAR", 50, "kg")], local(settings, t), warehouse="WH1")
        await dated(s, settings, "sales_order", [LineInput("SUGAR", 30, "kg")], local(settings, t), post=False,
                    warehouse="WH1", customer="C2", delivery_date=t + timedelta(days=3))

    await db.write(low)
    e = {s.sku: s for s in await suggest(db, today=t, settings=settings, everything=True)}["SUGAR"].explanation
    assert e.on_hand - e.reserved < e.safety_stock  # the case is what it claims: 10 kg against the line
    deps = Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: NOW)
    hour_ = f"{NOW.astimezone(settings.timezone):%Y-%m-%dT%H}"
    done = await run_job(JOBS["purchase_warnings"], hour_, deps)
    assert done.ok and done.result == "预警 1 个商品", done
    rows = await queued(db)
    cards = [m for _, to, m in rows if to == "李采购" and m["kind"] == "card"]
    images = [m for _, to, m in rows if to == "李采购" and m["kind"] == "image"]
    assert len(cards) == 1 and len(images) == 1
    text = cards[0]["text"]
    assert "白砂糖（SUGAR）：可用 10kg" in text and f"{(t + timedelta(days=3)):%m-%d} 30kg（散客乙）" in text
    assert f"安全库存 {fq(e.safety_stock)}kg，缺口 {fq(e.safety_stock - 10 + 30)}kg" in text
    assert cards[0]["buttons"][0]["key"] == "pick:采购申请 SUGAR"
    png = base64.b64decode(images[0]["png"])
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2] == (540, 960)
    # later the same day: the condition still holds, but it was warned today
    later = Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: NOW + timedelta(minutes=1))
    again = await run_job(JOBS["purchase_warnings"], hour_ + "-next", later)  # the next hourly period, same day
    assert again.ok and again.result.startswith("预警 0 个商品") and len(await queued(db)) == len(rows)


async def test_without_pre_orders_or_above_the_line_nothing_is_sent(db, settings):
    await setup(db, settings)
    await db.write(lambda s: s.execute(update(Product).where(Product.sku == "SUGAR").values(auto_replenish=True)))
    deps = Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: NOW)
    done = await run_job(JOBS["purchase_warnings"], "2026-12-07T10", deps)
    assert done.ok and done.result == "预警 0 个商品" and await queued(db) == []
