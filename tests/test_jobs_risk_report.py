"""The 08:35 risk report against a hand-computed ledger; sent once; the .xlsx holds the full list; the file reaches
the WeCom fake's app and group robot as a file upload, DingTalk and the console as a download link."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, time
from decimal import Decimal

import aiohttp
import openpyxl
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.console import ConsoleLog, ConsoleTransport
from bot.server import CONSOLE_LOG, build_app
from bot.wecom.client import WeComClient, WeComRobotClient, WeComTransport
from cards.model import Message
from cards.parts import split_message
from core.ledger.documents import cancel_document
from core.messaging.outbound import Outbound
from core.messaging.targets import Target
from core.models import OutboxMessage, Product
from core.reports.files import read_file
from core.reports.risk import risk_items
from jobs.registry import JOBS
from jobs.runner import Deps, run_job
from tests.factories import line, seed
from tests.fakes.wecom import PATH_ROBOT_UPLOAD, PATH_UPLOAD, FakeWeCom
from tests.ledger_history import dated

TODAY = date(2026, 11, 20)


def at(settings, day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), settings.timezone)


async def ledger(db, settings) -> None:
    """SUGAR: 50 kg opened at ¥4 on 9-01, never moved again → idle, ¥200.
    CREAM: 100 kg received at ¥10 on 10-01; 10 kg sold 11-10; 5 kg moved WH1→S01 11-12 (not an issue); 10 kg
    received at ¥12 on 11-15; 5 kg sold today (after the window). Closings: 20 days × 100, 5 × 90, 5 × 100 →
    average 2950/30 = 98.333333; turnover 10 / 98.333333 = 0.101695 < 0.3; value 100 × ¥12 = ¥1,200.
    FLOUR: 40 kg received at ¥5 on 10-01; 20 kg sold 11-01 → closings 11 × 40 + 19 × 20 = 820 → 27.333333;
    turnover 20/27.333333 = 0.731707: not listed. An other issue of 30 kg posted and cancelled 11-05 nets to 0.
    TAPE: a box of 10 rolls received at ¥2 on 10-25, sold out 11-02: no stock, not listed."""

    async def work(s) -> None:
        await seed(s)
        s.add_all([Product(sku="FLOUR", name="面粉", category="原料", stock_unit="kg", purchase_unit="kg"),
                   Product(sku="TAPE", name="胶带", category="辅料", stock_unit="卷", purchase_unit="箱",
                           purchase_factor=10)])
        await s.flush()
        await dated(s, settings, "opening", [line("SUGAR", 50, "kg", unit_price=Decimal(4))],
                    at(settings, date(2026, 9, 1)), warehouse="WH1")
        await dated(s, settings, "purchase_receipt", [line("CREAM", 100, "kg", unit_price=Decimal(10))],
                    at(settings, date(2026, 10, 1)), warehouse="WH1", supplier="SUP1")
        await dated(s, settings, "purchase_receipt", [line("FLOUR", 40, "kg", unit_price=Decimal(5))],
                    at(settings, date(2026, 10, 1)), warehouse="WH1", supplier="SUP1")
        await dated(s, settings, "purchase_receipt", [line("TAPE", 1, "箱", unit_price=Decimal(2))],
                    at(settings, date(2026, 10, 25)), warehouse="WH1", supplier="SUP1")
        await dated(s, settings, "sales_issue", [line("FLOUR", 20, "kg")], at(settings, date(2026, 11, 1)),
                    warehouse="WH1", customer="C2")
        await dated(s, settings, "sales_issue", [line("TAPE", 10, "卷")], at(settings, date(2026, 11, 2)),
                    warehouse="WH1", customer="C2")
        other = await dated(s, settings, "other_issue", [line("FLOUR", 10, "kg")], at(settings, date(2026, 11, 5)),
                            warehouse="WH1")
        await cancel_document(s, settings, other, now=at(settings, date(2026, 11, 5), 15))
        await dated(s, settings, "sales_issue", [line("CREAM", 10, "kg")], at(settings, date(2026, 11, 10)),
                    warehouse="WH1", customer="C2")
        await dated(s, settings, "transfer", [line("CREAM", 5, "kg")], at(settings, date(2026, 11, 12)),
                    warehouse="WH1", to_warehouse="S01")
        await dated(s, settings, "purchase_receipt", [line("CREAM", 10, "kg", unit_price=Decimal(12))],
                    at(settings, date(2026, 11, 15)), warehouse="WH1", supplier="SUP1")
        await dated(s, settings, "sales_issue", [line("CREAM", 5, "kg")], at(settings, TODAY, 8),
                    warehouse="WH1", customer="C2")

    await db.write(work)


async def test_risk_items_match_the_hand_computed_case(db, settings):
    await ledger(db, settings)
    async with db.read() as s:
        report = await risk_items(s, TODAY, settings.timezone)
    assert (report.start, report.end) == (date(2026, 10, 21), TODAY)
    got = {i.sku: i for i in report.items}
    assert list(got) == ["CREAM", "SUGAR"]  # most valuable first; FLOUR turns over, TAPE has no stock
    cream, sugar = got["CREAM"], got["SUGAR"]
    assert (cream.reason, cream.on_hand, cream.issued) == ("slow", Decimal(100), Decimal(10))
    assert cream.average == Decimal("98.333333") and cream.turnover == Decimal("0.101695")
    assert (cream.unit_cost, cream.cost_source, cream.value) == (Decimal(12), "receipt", Decimal("1200.00"))
    assert (sugar.reason, sugar.on_hand, sugar.average, sugar.issued) == ("idle", 50, 50, 0)
    assert (sugar.unit_cost, sugar.cost_source, sugar.value) == (Decimal(4), "opening", Decimal("200.00"))
    assert report.products_with_stock == 3 and report.total_value == Decimal("1400.00")


async def _run(db, settings, outbound: Outbound, owner: str = "t"):
    now = at(settings, TODAY, 8).replace(minute=35).astimezone(UTC)
    return await run_job(JOBS["risk_report"], TODAY.isoformat(), Deps(db, settings, outbound, owner=owner,
                                                                      clock=lambda: now))


async def _rows(db) -> list[OutboxMessage]:
    async with db.read() as s:
        return list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_the_report_goes_once_with_the_full_list_attached(db, settings):
    await ledger(db, settings)
    done = await _run(db, settings, Outbound(split_message))
    assert done.ok and done.result == "高风险商品 2 个（无出入库 1，周转率低 1）", done
    rows = await _rows(db)
    assert len(rows) == 1 and json.loads(rows[0].target) == {"platform": "console", "kind": "group",
                                                              "address": "supervisors"}
    message = Message.from_json(json.loads(rows[0].message))
    assert message.kind == "file" and message.filename == "高风险商品预警_2026-11-20.xlsx"
    assert "1. 淡奶油（CREAM）在库 100kg，¥1,200.00，周转率 0.10" in message.text
    assert "2. 白砂糖（SUGAR）在库 50kg，¥200.00，30天无出入库" in message.text
    assert "周转率 = 近30天出库量（销售出库 + 其他出库）÷ 近30天平均库存" in message.text
    assert "最近采购入库单价" in message.text and "期初单价" in message.text
    book = openpyxl.load_workbook(io.BytesIO(message.data), read_only=True)
    sheet = list(book["高风险商品"].iter_rows(values_only=True))
    assert sheet[0][:5] == ("SKU", "商品名称", "分类", "单位", "预警原因")
    assert [(r[0], r[4], r[5], r[12]) for r in sheet[1:]] == [("CREAM", "周转率<0.3", 100, 1200),
                                                             ("SUGAR", "30天无出入库", 50, 200)]
    async with db.read() as s:  # the download link serves the same bytes
        kept = await read_file(s, message.url.rsplit("/", 1)[1], datetime.now(UTC))
    assert kept is not None and kept.data == message.data
    again = await _run(db, settings, Outbound(split_message), owner="u")
    assert not again.ran and len(await _rows(db)) == 1


async def test_a_full_list_longer_than_the_message_is_attached_whole(db, settings):
    await ledger(db, settings)

    async def many(s) -> None:
        for n in range(150):
            s.add(Product(sku=f"IDLE{n:03d}", name=f"闲置品{n}", stock_unit="个", purchase_unit="个"))
        await s.flush()
        await dated(s, settings, "opening", [line(f"IDLE{n:03d}", n + 1, "个", unit_price=Decimal(1))
                                             for n in range(150)], at(settings, date(2026, 9, 2)), warehouse="WH1")

    await db.write(many)
    robot = Target("wecom", "robot", "warehouse")
    await _run(db, settings, Outbound(split_message, {"supervisors": (robot,)}))
    parts = [Message.from_json(json.loads(r.message)) for r in await _rows(db)]
    assert [p.kind for p in parts] == ["markdown", "file"]  # the summary, then the workbook
    assert "共 **152** 个高风险商品" in parts[0].text and "另有 142 个，见附件完整清单" in parts[0].text
    assert len(parts[0].text.encode()) <= 4096
    sheet = list(openpyxl.load_workbook(io.BytesIO(parts[1].data), read_only=True)["高风险商品"]
                 .iter_rows(values_only=True))
    assert len(sheet) == 1 + 152 and {r[0] for r in sheet[1:]} >= {f"IDLE{n:03d}" for n in range(150)}


async def test_the_file_reaches_the_wecom_app_and_robot_as_a_file_upload(db, settings):
    await ledger(db, settings)
    targets = (Target("wecom", "robot", "warehouse"), Target("wecom", "user", "zhang"))
    await _run(db, settings, Outbound(split_message, {"supervisors": targets}))
    rows = await _rows(db)
    async with FakeWeCom(users={"zhang"}) as fake, aiohttp.ClientSession() as session:
        transport = WeComTransport(
            WeComClient(session, fake.corp_id, fake.agent_id, fake.secret, fake.base_url, timeout=5.0),
            WeComRobotClient(session, fake.robots, fake.base_url, timeout=5.0))
        for r in rows:
            await transport.send(Target.from_json(json.loads(r.target)), Message.from_json(json.loads(r.message)))
        assert fake.calls(PATH_UPLOAD) == 1 and fake.calls(PATH_ROBOT_UPLOAD) == 1
        files = [m for m in fake.media.values() if m.type == "file"]
        assert {m.owner for m in files} == {"", fake.robot_key("warehouse")}
        assert {m.filename for m in files} == {"高风险商品预警_2026-11-20.xlsx"}
        workbook = files[0].data
        sheet = openpyxl.load_workbook(io.BytesIO(workbook), read_only=True)["高风险商品"]
        assert [r[0] for r in sheet.iter_rows(values_only=True)] == ["SKU", "CREAM", "SUGAR"]
        app = [m for m in fake.messages if m["msgtype"] == "file"]
        assert len(app) == 1 and app[0]["touser"] == "zhang" and app[0]["file"]["media_id"] in fake.media
        robot = [p for _, p in fake.robot_messages]
        assert [p["msgtype"] for p in robot] == ["markdown", "file"]
        assert "高风险商品预警 2026-11-20" in robot[0]["markdown"]["content"]
        assert fake.media[robot[1]["file"]["media_id"]].data == workbook
        assert [m["msgtype"] for m in fake.messages] == ["markdown", "file"]


async def test_dingtalk_and_the_console_get_the_summary_with_a_download_link(db, settings):
    await ledger(db, settings)
    targets = (Target("dingtalk", "robot", "ops"), Target("console", "group", "supervisors"))
    await _run(db, settings, Outbound(split_message, {"supervisors": targets}))
    rows = await _rows(db)
    by_platform = {json.loads(r.target)["platform"]: Message.from_json(json.loads(r.message)) for r in rows}
    ding = by_platform["dingtalk"]
    assert ding.kind == "markdown" and ding.data is None
    assert "高风险商品预警_2026-11-20.xlsx" in ding.text and "/files/" in ding.text
    log = ConsoleLog()
    await ConsoleTransport(log).send(Target("console", "group", "supervisors"), by_platform["console"])
    entry = log.entries[-1]["message"]
    assert entry["kind"] == "file" and "data" not in entry and entry["url"].startswith("/console/api/file/")
    assert log.files[log.entries[-1]["id"]][1] == by_platform["console"].data


async def test_the_download_link_and_the_console_serve_the_workbook(db, settings):
    await ledger(db, settings)
    await _run(db, settings, Outbound(split_message))
    message = Message.from_json(json.loads((await _rows(db))[0].message))
    app = build_app(settings, db)
    async with TestClient(TestServer(app)) as c:
        r = await c.get(message.url)
        assert r.status == 200 and await r.read() == message.data
        assert "filename*=UTF-8''%E9%AB%98" in r.headers["Content-Disposition"]
        assert (await c.get("/files/not-a-token")).status == 404
        await ConsoleTransport(app[CONSOLE_LOG]).send(Target("console", "group", "supervisors"), message)
        shown = (await (await c.get("/console/api/messages")).json())["messages"][-1]["message"]
        assert shown["kind"] == "file" and "data" not in shown
        r = await c.get(shown["url"])
        assert r.status == 200 and await r.read() == message.data
