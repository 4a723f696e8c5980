"""WeCom and DingTalk callbacks through the whole server against the local fakes: verify, dedupe, reply."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import MappingProxyType

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.server import DISPATCHER, SENDER, build_app
from cards.model import Button, Message
from core.messaging.targets import Target
from core.models import User
from tests.factories import seed_stocked
from tests.fakes.dingtalk import FakeDingTalk, signed_callback
from tests.fakes.wecom import CallbackDriver, FakeWeCom
from tests.waiting import until

TOKEN = "jxcbotTestToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters


async def _seed(db, settings) -> None:
    async def setup(s) -> None:
        await seed_stocked(s, settings)  # 张库管 has wecom_user_id "zhang"
        s.add(User(name="王经理", dingtalk_staff_id="manager01", roles="manager"))

    await db.write(setup)


@pytest.fixture
async def wecom(db, settings):
    await _seed(db, settings)
    async with FakeWeCom() as fake:
        raw = {"wecom": {"corp_id": fake.corp_id, "agent_id": fake.agent_id, "secret": fake.secret,
                         "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": fake.base_url}}
        app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
        async with TestClient(TestServer(app)) as client:
            yield client, fake, CallbackDriver(TOKEN, AES_KEY, fake.corp_id, fake.agent_id)


async def test_wecom_url_check_answers_the_plaintext(wecom):
    client, _fake, driver = wecom
    params, echo = driver.url_check()
    r = await client.get("/wecom/callback", params=params)
    assert r.status == 200 and await r.text() == echo


async def test_wecom_stock_query_is_answered_once_despite_retries(wecom):
    client, fake, driver = wecom
    xml = driver.text_xml("zhang", "库存 奶油", msg_id=7001)
    for _ in range(3):  # WeCom retries the same callback (same MsgId) when it thinks we were slow
        params, body = driver.post(xml)
        r = await client.post("/wecom/callback", params=params, data=body)
        assert r.status == 200
    await until(lambda: fake.messages, "the reply at the fake WeCom")
    await asyncio.sleep(0.2)
    assert len(fake.messages) == 1
    sent = fake.messages[0]
    assert sent["touser"] == "zhang"
    assert "淡奶油" in str(sent) and "WH1" in str(sent)


@pytest.mark.parametrize("tamper", ["signature", "corp_id", "base64"])
async def test_wecom_forged_callbacks_get_4xx_and_change_nothing(wecom, tamper, caplog):
    client, fake, driver = wecom
    params, body = driver.post(driver.text_xml("zhang", "库存 奶油", msg_id=7002), tamper=tamper)
    r = await client.post("/wecom/callback", params=params, data=body)
    assert 400 <= r.status < 500
    assert "wecom callback rejected" in caplog.text
    await asyncio.sleep(0.2)
    assert fake.messages == []


async def test_wecom_malformed_and_oversized_bodies_are_4xx_with_a_log_line(wecom, caplog):
    client, _fake, driver = wecom
    params, _body = driver.post(driver.text_xml("zhang", "帮助", msg_id=7003))
    assert (await client.post("/wecom/callback", params=params, data=b"<xml><oops")).status in (400, 403)
    assert "wecom callback rejected" in caplog.text
    caplog.clear()
    assert (await client.post("/wecom/callback", params=params, data=b"x" * 70_000)).status == 413
    assert "POST /wecom/callback from" in caplog.text and "413" in caplog.text
    caplog.clear()
    assert (await client.get("/wecom/callback", params={"echostr": "abc"})).status == 403
    assert "wecom URL check rejected" in caplog.text


async def test_wecom_callback_not_stored_is_503_and_its_retry_goes_through(wecom, caplog, monkeypatch):
    """The database fails while storing: WeCom is told to retry (503, not a 500), and the retry of the very
    same request (same nonce) is stored and answered once, not turned away as a replay."""
    client, fake, driver = wecom
    stores = client.server.app[DISPATCHER].stores
    real = stores.submit

    async def broken(*_a, **_kw):
        raise OSError("disk I/O error")

    monkeypatch.setattr(stores, "submit", broken)
    params, body = driver.post(driver.text_xml("zhang", "库存 奶油", msg_id=7004))
    r = await client.post("/wecom/callback", params=params, data=body)
    assert r.status == 503
    assert "wecom callback could not be stored" in caplog.text
    monkeypatch.setattr(stores, "submit", real)
    r = await client.post("/wecom/callback", params=params, data=body)  # WeCom's retry: identical request
    assert r.status == 200
    await until(lambda: fake.messages, "the reply at the fake WeCom")
    await asyncio.sleep(0.2)
    assert len(fake.messages) == 1 and "淡奶油" in str(fake.messages[0])


@pytest.fixture
async def dingtalk(db, settings):
    await _seed(db, settings)
    async with FakeDingTalk() as fake:
        raw = {"dingtalk": {"app_key": fake.app_key, "app_secret": fake.app_secret, "robot_code": fake.robot_code,
                            "api_base": fake.url, "oapi_base": fake.url, "card_callback_token": "card-secret"}}
        app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
        async with TestClient(TestServer(app)) as client:
            yield client, fake


async def test_dingtalk_stock_query_answered_through_the_session_webhook_once(dingtalk):
    client, fake = dingtalk
    payload = fake.text_message("库存 奶油", staff_id="manager01", msg_id="dmsg-1")
    for _ in range(3):
        headers, body = signed_callback(payload, fake.app_secret)
        r = await client.post("/dingtalk/callback", headers=headers, data=body)
        assert r.status == 200
    await until(lambda: fake.sent, "the reply at the fake DingTalk")
    await asyncio.sleep(0.2)
    assert len(fake.sent) == 1
    assert fake.sent[0].channel == "session" and "淡奶油" in str(fake.sent[0].payload)


async def test_dingtalk_unregistered_sender_is_told_how_to_register(dingtalk):
    client, fake = dingtalk
    headers, body = signed_callback(fake.text_message("库存 奶油", staff_id="nobody", msg_id="dmsg-2"),
                                    fake.app_secret)
    assert (await client.post("/dingtalk/callback", headers=headers, data=body)).status == 200
    await until(lambda: fake.sent, "the reply")
    assert "登记" in str(fake.sent[0].payload) and "淡奶油" not in str(fake.sent[0].payload)


async def test_dingtalk_forged_and_malformed_callbacks_are_4xx(dingtalk, caplog):
    client, fake = dingtalk
    payload = fake.text_message("库存 奶油", staff_id="manager01", msg_id="dmsg-3")
    headers, body = signed_callback(payload, "not-the-secret")
    assert (await client.post("/dingtalk/callback", headers=headers, data=body)).status == 403
    assert "dingtalk callback rejected" in caplog.text
    headers, _ = signed_callback(payload, fake.app_secret)
    assert (await client.post("/dingtalk/callback", headers=headers, data=b"{not json")).status == 400
    assert (await client.post("/dingtalk/callback", data=b"{}")).status in (400, 403)
    assert (await client.post("/dingtalk/card-callback?token=wrong", json={})).status == 403
    await asyncio.sleep(0.2)
    assert fake.sent == []


async def test_dingtalk_callback_not_stored_is_503_and_its_retry_goes_through(dingtalk, caplog, monkeypatch):
    client, fake = dingtalk
    stores = client.server.app[DISPATCHER].stores
    real = stores.submit

    async def broken(*_a, **_kw):
        raise OSError("disk I/O error")

    monkeypatch.setattr(stores, "submit", broken)
    headers, body = signed_callback(fake.text_message("库存 奶油", staff_id="manager01", msg_id="dmsg-9"),
                                    fake.app_secret)
    r = await client.post("/dingtalk/callback", headers=headers, data=body)
    assert r.status == 503 and "dingtalk callback could not be stored" in caplog.text
    monkeypatch.setattr(stores, "submit", real)
    assert (await client.post("/dingtalk/callback", headers=headers, data=body)).status == 200
    await until(lambda: fake.sent, "the reply at the fake DingTalk")
    await asyncio.sleep(0.2)
    assert len(fake.sent) == 1


async def test_dingtalk_card_callback_is_registered_at_start_and_clicks_arrive(db, settings):
    """With a card template, route key and public URL, the server registers its card-callback URL at start;
    a click through the fake then reaches the dispatcher, which answers the clicker."""
    await _seed(db, settings)
    async with FakeDingTalk() as fake:
        raw = {"dingtalk": {"app_key": fake.app_key, "app_secret": fake.app_secret, "robot_code": fake.robot_code,
                            "api_base": fake.url, "oapi_base": fake.url, "card_callback_token": "card-secret",
                            "card_template_id": "tpl.approval", "card_callback_route_key": "jxcbot",
                            "public_url": "https://bot.example.com/"}}
        app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
        async with TestClient(TestServer(app)) as client, aiohttp.ClientSession() as http:
            assert fake.callbacks["jxcbot"]["url"] == "https://bot.example.com/dingtalk/card-callback?token=card-secret"
            # DingTalk would call the public URL; in the test it is this server's loopback address
            fake.callbacks["jxcbot"]["url"] = str(client.make_url("/dingtalk/card-callback?token=card-secret"))
            card = Message("card", title="审批", text="请审批", buttons=(Button("同意", "approval:1:1:approve"),))
            await client.server.app[SENDER].transports["dingtalk"].send(Target("dingtalk", "user", "manager01"), card)
            status, _answer = await fake.click(http, next(iter(fake.cards)), "manager01", "approval:1:1:approve")
            assert status == 200
            await until(lambda: any(s.channel == "user" and "按钮已失效" in str(s.payload) for s in fake.sent),
                         "the answer to the click")
