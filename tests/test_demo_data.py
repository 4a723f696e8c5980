"""The bundled bakery-chain demo as `jxcbot demo` loads it, and `jxcbot demo` starting the console server."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from core.importer import load_demo
from core.ledger.units import to_stock_qty
from core.models import Batch, Customer, Document, DocumentLine, Product, StockBalance, Warehouse
from tests.server_proc import BOT_SERVER, free_port, stop

STORES = [f"S{n:02d}" for n in range(1, 13)]


async def _load(db, settings) -> None:
    await db.write(lambda s: load_demo(s, settings))


async def test_central_warehouse_and_twelve_stores(db, settings):
    await _load(db, settings)
    async with db.read() as s:
        rows = {w.code: w for w in await s.scalars(select(Warehouse))}
    assert len(rows) == 13 and sorted(rows) == ["CW", *STORES]
    assert rows["CW"].name == "中央仓" and rows["CW"].ships_to_stores and not rows["CW"].allow_negative
    assert all(rows[c].name.endswith("店") and not rows[c].ships_to_stores for c in STORES)
    assert any(rows[c].allow_negative for c in STORES)  # some stores may sell below zero, down to a floor
    assert all(rows[c].negative_floor < 0 for c in STORES if rows[c].allow_negative)


async def test_cream_is_kept_and_sold_in_kg(db, settings):
    await _load(db, settings)
    async with db.read() as s:
        cream = await s.scalar(select(Product).where(Product.sku == "RM-CREAM"))
        sold = (await s.execute(
            select(DocumentLine.unit, DocumentLine.factor, DocumentLine.qty)
            .join(Document, Document.id == DocumentLine.document_id)
            .where(DocumentLine.product_id == cream.id, Document.type == "sales_issue", Document.status == "posted")
        )).all()
    assert cream.name == "淡奶油" and cream.stock_unit == "kg" and cream.batch_tracked
    assert ("kg", 1, Decimal(30)) in sold and len(sold) > 300  # a year of daily sales, all booked in kg
    assert {(unit, factor) for unit, factor, _ in sold} == {("kg", 1)}


async def test_bottles_come_in_cases_of_24(db, settings):
    await _load(db, settings)
    async with db.read() as s:
        milk = await s.scalar(select(Product).where(Product.sku == "RM-MILK"))
        s02 = await s.scalar(select(func.sum(StockBalance.qty))
                             .join(Warehouse, Warehouse.id == StockBalance.warehouse_id)
                             .where(StockBalance.product_id == milk.id, Warehouse.code == "S02"))
        case_lines = set((await s.execute(
            select(DocumentLine.unit, DocumentLine.factor).where(DocumentLine.product_id == milk.id)
        )).all())
    assert (milk.stock_unit, milk.purchase_unit, milk.purchase_factor) == ("瓶", "箱", 24)
    assert to_stock_qty(milk, "箱", Decimal(2)) == (24, Decimal(48))
    assert case_lines == {("箱", 24), ("瓶", 1)}
    assert s02 == 48  # opening.csv: 2 箱 of milk in S02, kept as 48 瓶


async def test_batches_have_expiry_dates_in_the_future(db, settings):
    await _load(db, settings)
    today = datetime.now(settings.timezone).date()
    async with db.read() as s:
        batches = (await s.execute(select(Product.sku, Batch.code, Batch.expiry)
                                   .join(Product, Product.id == Batch.product_id)
                                   .join(StockBalance, StockBalance.batch_id == Batch.id)
                                   .where(Batch.code != "", StockBalance.qty > 0))).all()
        stocked = set(await s.scalars(select(Batch.code).join(StockBalance, StockBalance.batch_id == Batch.id)
                                      .where(Batch.code != "", StockBalance.qty > 0)))
    assert len(batches) >= 5 and {"RM-CREAM", "RM-MILK", "RM-EGG"} <= {sku for sku, _, _ in batches}
    assert all(expiry is not None and expiry > today for _, _, expiry in batches), batches
    assert len(stocked) >= 5  # the batches hold stock, so the stock command shows batch lines


async def test_customers_with_exactly_one_strategic(db, settings):
    await _load(db, settings)
    async with db.read() as s:
        customers = {c.code: c for c in await s.scalars(select(Customer))}
        reserved = await s.scalar(select(func.sum(DocumentLine.reserved_qty))
                                  .join(Document, Document.id == DocumentLine.document_id)
                                  .where(Document.type == "sales_order", Document.status == "submitted"))
    assert len(customers) >= 3
    assert [c.code for c in customers.values() if c.strategic] == ["C001"]
    # the strategic customer's open order (8 箱 × 8 盒 mooncakes) reserves its share of stock
    assert reserved == 64 * settings.strategic_reserve_rate and reserved > 0


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


async def _wait_healthy(proc: asyncio.subprocess.Process, url: str, log: Path, seconds: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                raise AssertionError("jxcbot demo exited: " + _text(log))
            await asyncio.sleep(0.1)
    raise AssertionError(f"jxcbot demo did not answer at {url}: " + _text(log))


async def test_jxcbot_demo_starts_the_console_server(tmp_path):
    """`jxcbot demo` in a scratch directory: builds jxcbot-demo.db there, serves /healthz and a console where
    the demo's users are registered, prints the console URL, and stops cleanly on SIGTERM."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JXCBOT_")}
    env |= {"JXCBOT_SERVER_HOST": "127.0.0.1", "JXCBOT_SERVER_PORT": str(port)}
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as o, err.open("wb") as e:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", BOT_SERVER, "demo", cwd=tmp_path, env=env,
                                                    stdout=o, stderr=e)
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(proc, f"{base}/healthz", err)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["database"] == "ok"
            async with http.get(f"{base}/console") as r:
                assert r.status == 200
            async with http.post(f"{base}/console/api/send", json={"user": "王库管", "text": "库存 淡奶油"}) as r:
                assert r.status == 202
            reply = ""
            for _ in range(200):
                async with http.get(f"{base}/console/api/messages") as r:
                    bot = [m for m in (await r.json())["messages"] if m["direction"] == "bot"
                           and m["target"]["address"] == "王库管" and "库存查询" in m["message"]["text"]]
                if bot:  # (the jobs' pushes at start go to others and the group panel)
                    reply = bot[0]["message"]["text"]
                    break
                await asyncio.sleep(0.05)
            assert "淡奶油**（RM-CREAM）" in reply and "CW 中央仓" in reply and "批次 CR20261101" in reply, reply
            # each job ran once at start for the demo's periods: the group panel holds the reports, the purchaser
            # the warning's trend chart
            wanted = {"高风险商品", "库存健康度", "命中率"}
            for _ in range(600):
                async with http.get(f"{base}/console/api/messages") as r:
                    messages = (await r.json())["messages"]
                groups = " ".join(m["message"].get("title", "") + m["message"].get("text", "") for m in messages
                                  if m["direction"] == "bot" and m["target"]["kind"] == "group")
                images = [m for m in messages if m["direction"] == "bot" and m["message"]["kind"] == "image"]
                if all(w in groups for w in wanted) and images:
                    break
                await asyncio.sleep(0.1)
            assert all(w in groups for w in wanted), groups[:2000]
            assert any(m["target"]["address"] == "李采购" for m in images), images
        printed = _text(out)
        assert f"本地控制台：{base}/console" in printed and "「群消息」面板" in printed
        assert f"演示库：{tmp_path.resolve() / 'jxcbot-demo.db'}" in printed
    finally:
        await stop(proc)
    assert proc.returncode == 0, _text(err)
    assert (tmp_path / "jxcbot-demo.db").is_file()
