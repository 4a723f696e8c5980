"""Scan events: WeCom's scancode_waitmsg (the app menu's 扫码) and the console's 扫码 field reach the one scan
handler; a scan goes to the sender's draft of a scan-required type, or shows the product's stock; `jxcbot wecom
menu` installs the menu; a menu click runs its command."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import MappingProxyType

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.server import build_app
from bot.wecom.callback import parse_inbound
from bot.wecom.menu import MENU
from cards.model import text
from core.ledger.documents import create_document
from handlers.registry import SCAN_TARGETS, scan_target
from tests.chat import Chat, reply
from tests.factories import line, post, seed
from tests.fakes.wecom import CallbackDriver, FakeWeCom
from tests.test_platform_approvals import AES_KEY, TOKEN, wecom_post, wecom_texts
from tests.waiting import until


def test_a_scancode_waitmsg_event_is_a_scan_and_a_menu_click_its_command():
    driver = CallbackDriver(TOKEN, AES_KEY, "wwcorp", 1000002)
    event = parse_inbound(driver.scan_xml("zhang", "EAN_13,6900000000011", create_time=1765000000))
    assert event is not None and event.scan == "EAN_13,6900000000011" and event.text is None
    assert event.dedupe_key == "wecom:scan:zhang:1765000000:jxc_scan:EAN_13,6900000000011"
    again = parse_inbound(driver.scan_xml("zhang", "EAN_13,6900000000011", create_time=1765000000))
    assert again is not None and again.dedupe_key == event.dedupe_key  # WeCom's retry: the same event
    click = parse_inbound(driver.menu_click_xml("zhang", "jxc_todo", create_time=1765000001))
    assert click is not None and click.text == "待办" and click.dedupe_key == "wecom:menu:zhang:1765000001:jxc_todo"
    assert parse_inbound(driver.menu_click_xml("zhang", "someone_elses_key")) is None


@pytest.fixture
async def chat(db, settings):
    async def work(s) -> None:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg", batch="CR1")], warehouse="WH1",
                   supplier="SUP1")

    await db.write(work)
    c = Chat(db, settings)
    yield c
    await c.close()


async def test_a_scan_without_a_draft_shows_the_products_stock(chat):
    body = reply(await chat.send("张库管", scan="EAN_13,6900000000011"), "张库管")["text"]
    assert "扫到：淡奶油（CREAM）" in body and "WH1" in body and "12" in body
    bad = reply(await chat.send("张库管", scan="6900000000012"), "张库管")["text"]  # no product, check digit wrong
    assert "校验位不对" in bad
    unknown = reply(await chat.send("张库管", scan="4006381333931"), "张库管")["text"]
    assert "没有条码为 4006381333931 的商品" in unknown


@pytest.fixture
def other_issue_target():
    """A scan target for other issues (the borrow and shipment modules declare theirs); removed afterwards."""
    seen = []
    declared = SCAN_TARGETS.pop("other_issue", None)  # the movements module's own, put back afterwards

    @scan_target("other_issue")
    async def add(ctx, doc, scanned):
        seen.append((doc.number, scanned.barcode, scanned.batch))
        return [text(f"记到 {doc.number}：{scanned.barcode} {scanned.batch}")]

    yield seen
    SCAN_TARGETS.pop("other_issue", None)
    if declared is not None:
        SCAN_TARGETS["other_issue"] = declared


async def test_a_scan_goes_to_the_senders_draft_of_a_type_that_takes_scans(db, settings, chat, other_issue_target):
    async def draft(s):
        return (await create_document(s, settings, "other_issue", [line("CREAM", 1, "kg")], warehouse="WH1",
                                      created_by="张库管")).number

    number = await db.write(draft)
    rows = await chat.send("张库管", scan="(01)06900000000011(10)CR1(17)271231")
    assert reply(rows, "张库管")["text"] == f"记到 {number}：6900000000011 CR1"
    assert other_issue_target == [(number, "6900000000011", "CR1")]


@pytest.fixture
async def wecom_server(db, settings):
    async def work(s) -> None:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg", batch="CR1")], warehouse="WH1",
                   supplier="SUP1")

    await db.write(work)
    async with FakeWeCom() as wecom:
        raw = {"wecom": {"corp_id": wecom.corp_id, "agent_id": wecom.agent_id, "secret": wecom.secret,
                         "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": wecom.base_url}}
        app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
        async with TestClient(TestServer(app)) as client:
            yield client, wecom, CallbackDriver(TOKEN, AES_KEY, wecom.corp_id, wecom.agent_id)


async def test_a_wecom_scan_delivered_twice_is_answered_once(wecom_server):
    client, fake, driver = wecom_server
    xml = driver.scan_xml("zhang", "EAN_13,6900000000011")
    await wecom_post(client, driver, xml)
    await wecom_post(client, driver, xml)  # WeCom retries the same event
    await until(lambda: any("扫到：淡奶油" in t for t in wecom_texts(fake, "zhang")), "the scan's stock reply")
    await wecom_post(client, driver, driver.menu_click_xml("zhang", "jxc_help"))
    await until(lambda: any("你可以这样用 jxcbot" in t for t in wecom_texts(fake, "zhang")), "the menu's 帮助")
    assert sum("扫到：淡奶油" in t for t in wecom_texts(fake, "zhang")) == 1


async def test_jxcbot_wecom_menu_installs_the_scan_button(tmp_path, monkeypatch):
    from cli.main import run

    async with FakeWeCom() as fake:
        cfg = tmp_path / "jxcbot.toml"
        cfg.write_text(f'[wecom]\ncorp_id = "{fake.corp_id}"\nagent_id = {fake.agent_id}\n'
                       f'api_base = "{fake.base_url}"\n', encoding="utf-8")
        monkeypatch.setenv("JXCBOT_WECOM_SECRET", fake.secret)
        monkeypatch.setenv("JXCBOT_WECOM_TOKEN", TOKEN)
        monkeypatch.setenv("JXCBOT_WECOM_ENCODING_AES_KEY", AES_KEY)
        assert await run(["--config", str(cfg), "wecom", "menu"]) == 0
        assert fake.menus[fake.agent_id] == MENU
        assert fake.menus[fake.agent_id][0] == {"type": "scancode_waitmsg", "name": "扫码", "key": "jxc_scan"}


async def test_the_console_scan_field_sends_a_scan(db, settings):
    from tests.factories import seed_chat_users

    await seed_chat_users(db, settings)
    async with TestClient(TestServer(build_app(settings, db))) as client:
        before = (await (await client.get("/console/api/messages")).json())["last"]
        r = await client.post("/console/api/send", json={"user": "张库管", "scan": "6900000000011"})
        assert r.status == 202, await r.text()
        bad = await client.post("/console/api/send", json={"user": "张库管", "scan": "", "text": "x"})
        assert bad.status == 400 and "scan 必须是" in await bad.text()

        async def bot_said() -> list[dict]:
            data = await (await client.get(f"/console/api/messages?after={before}")).json()
            return [m for m in data["messages"] if m["direction"] == "bot"]

        for _ in range(200):
            said = await bot_said()
            if said:
                break
            await asyncio.sleep(0.02)
        assert any("扫到：淡奶油" in m["message"]["text"] for m in said), said
        data = await (await client.get(f"/console/api/messages?after={before}")).json()
        assert data["messages"][0]["message"]["text"] == "［扫码］6900000000011"  # the user's own entry
