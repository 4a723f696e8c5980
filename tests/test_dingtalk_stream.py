"""DingTalk Stream mode through the whole server (served on 127.0.0.1, no public URL) against the local fake
gateway and the fake DingTalk API: messages and card clicks stored before their ack, one effect per message
through lost acks, network cuts and server-side disconnects, several instances, and a bounded soak."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.dingtalk.stream import SUBSCRIPTIONS
from bot.platforms import DINGTALK_STREAM, dingtalk_config
from bot.server import DISPATCHER, build_app
from core.config import ConfigError
from core.models import InboundEvent, User
from tests.factories import seed_stocked
from tests.fakes.dingtalk_stream import TOPIC_ROBOT, FakeDingTalkStream
from tests.waiting import until

QUERY = "库存 奶油"


async def _seed(db, settings) -> None:
    async def setup(s) -> None:
        await seed_stocked(s, settings)
        s.add(User(name="王经理", dingtalk_staff_id="manager01", roles="manager"))

    await db.write(setup)


def _raw(fake: FakeDingTalkStream, **extra: Any) -> MappingProxyType:
    return MappingProxyType({"dingtalk": {"app_key": fake.app_key, "app_secret": fake.app_secret,
                                          "robot_code": fake.robot_code, "api_base": fake.url,
                                          "oapi_base": fake.url, **extra}})


@pytest.fixture
async def fake():
    async with FakeDingTalkStream(ack_timeout=1.0, disconnect_grace=1.0) as f:
        yield f


@pytest.fixture
async def bot(db, settings, fake):
    """The bot served on 127.0.0.1 with [dingtalk] and no public_url: Stream mode by default."""
    await _seed(db, settings)
    app = build_app(replace(settings, raw=_raw(fake)), db)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await until(lambda: fake.stream.live(), "the stream connection")
        yield client


def replies(fake: FakeDingTalkStream) -> Counter[str]:
    """Replies per session webhook (each message carries its own session)."""
    return Counter(s.address for s in fake.sent if s.channel == "session")


def session_of(payload: dict) -> str:
    return payload["sessionWebhook"].rsplit("=", 1)[1]


async def events(db) -> int:
    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one()


# -- config ---------------------------------------------------------------------------------------------------


def test_mode_defaults_to_stream_without_a_public_url_and_is_checked():
    base = {"app_key": "k", "app_secret": "s"}
    assert dingtalk_config({"dingtalk": base}).stream
    assert not dingtalk_config({"dingtalk": {**base, "public_url": "https://bot.example.com"}}).stream
    assert dingtalk_config({"dingtalk": {**base, "public_url": "https://bot.example.com", "mode": "stream"}}).stream
    assert not dingtalk_config({"dingtalk": {**base, "mode": "HTTP"}}).stream
    with pytest.raises(ConfigError) as e:
        dingtalk_config({"dingtalk": {**base, "mode": "websocket"}})
    assert "[dingtalk] mode" in str(e.value) and "stream" in str(e.value)
    with pytest.raises(ConfigError) as e:  # Stream needs the app, not only group robots
        dingtalk_config({"dingtalk": {"mode": "stream", "robots": {"ops": {"access_token": "t"}}}})
    assert "[dingtalk] app_key" in str(e.value)


def test_mode_is_a_known_key_of_the_config_file(tmp_path):
    from core.config import load_config

    path = tmp_path / "jxcbot.toml"
    path.write_text('[dingtalk]\napp_key = "k"\napp_secret = "s"\nmode = "stream"\n', encoding="utf-8")
    assert dingtalk_config(load_config(path, env={}).raw).stream
    assert not dingtalk_config(load_config(path, env={"JXCBOT_DINGTALK_MODE": "http"}).raw).stream


async def test_http_mode_opens_no_stream(db, settings, fake):
    await _seed(db, settings)
    app = build_app(replace(settings, raw=_raw(fake, mode="http")), db)
    async with TestClient(TestServer(app, host="127.0.0.1")):
        await asyncio.sleep(0.3)
        assert DINGTALK_STREAM not in app
    assert fake.stream.opens == [] and fake.stream.connections == []


# -- one message ----------------------------------------------------------------------------------------------


async def test_a_message_over_the_stream_becomes_one_reply(bot, fake, db):
    """connections/open with the app's credentials and the three subscriptions; the WebSocket on the ticket;
    a robot message acknowledged (code 200, its messageId) after it is stored, answered once through its
    sessionWebhook; SYSTEM ping answered with its opaque."""
    [opened] = fake.stream.opens
    assert (opened["clientId"], opened["clientSecret"]) == (fake.app_key, fake.app_secret)
    assert opened["subscriptions"] == [dict(s) for s in SUBSCRIPTIONS]
    assert fake.stream.tickets == {}  # the ticket was used, once
    payload = fake.text_message(QUERY, staff_id="manager01", msg_id="st-1")
    pending = fake.stream.message(payload)
    await asyncio.wait_for(pending.acked.wait(), 5)
    [ack] = pending.acks
    assert ack["code"] == 200 and ack["headers"]["messageId"] == pending.message_ids[0]
    assert json.loads(ack["data"]) == {"response": None}
    assert await events(db) == 1  # stored (it was, before the ack: see the store-failure test)
    await until(lambda: replies(fake), "the reply")
    await asyncio.sleep(0.3)
    assert replies(fake) == {session_of(payload): 1}
    assert "淡奶油" in str(fake.sent[0].payload)
    await fake.stream.ping()
    assert len(fake.stream.pongs) == 1 and not fake.stream.bad_frames
    assert not any(path.startswith("/dingtalk") for _t, _m, path in fake.calls)


async def test_an_event_that_cannot_be_stored_is_not_acknowledged_200_and_its_redelivery_is_answered(
        bot, fake, db, monkeypatch, caplog):
    stores = bot.server.app[DISPATCHER].stores
    real = stores.submit
    failing = {"left": 3}  # the client's three store attempts all fail

    async def flaky(*a, **kw):
        if failing["left"]:
            failing["left"] -= 1
            raise OSError("disk I/O error")
        return await real(*a, **kw)

    monkeypatch.setattr(stores, "submit", flaky)
    payload = fake.text_message(QUERY, staff_id="manager01", msg_id="st-fail")
    pending = fake.stream.message(payload)
    await until(lambda: fake.stream.nacks, "the 500 answer", seconds=8)
    assert fake.stream.nacks[0]["code"] == 500 and not pending.acks
    assert await events(db) == 0 and "could not be stored" in caplog.text
    await asyncio.wait_for(pending.acked.wait(), 5)  # the gateway's redelivery, stored this time
    assert pending.attempts == 2
    await until(lambda: replies(fake), "the reply")
    await asyncio.sleep(0.3)
    assert replies(fake) == {session_of(payload): 1}


async def test_a_redelivery_after_a_lost_ack_has_one_effect(bot, fake, db):
    fake.stream.lose_acks(1)
    payload = fake.text_message(QUERY, staff_id="manager01", msg_id="st-lost")
    pending = fake.stream.message(payload)
    await asyncio.wait_for(pending.acked.wait(), 5)
    assert pending.attempts == 2 and len(fake.stream.lost_acks) == 1  # the same msgId, a new messageId
    assert pending.message_ids[0] != pending.message_ids[1]
    await until(lambda: replies(fake), "the reply")
    await asyncio.sleep(0.5)
    assert replies(fake) == {session_of(payload): 1} and await events(db) == 1
    stats = bot.server.app[DINGTALK_STREAM].stats
    assert (stats.stored, stats.duplicates, stats.acks) == (1, 1, 2)


async def test_ignored_and_malformed_frames_are_acknowledged_without_an_effect(bot, fake, db):
    outsider = fake.stream.message(fake.text_message(QUERY, staff_id=None, msg_id="st-outside"))
    broken = fake.stream.push(TOPIC_ROBOT, {"msgtype": "text", "msgId": "st-broken", "conversationType": "1"})
    event = fake.stream.push("*", {"eventType": "user_add_org", "userId": ["u1"]}, kind="EVENT")
    await fake.stream.settled(5)
    assert outsider.acks[0]["code"] == 200 and outsider.attempts == 1
    assert [n["code"] for n in fake.stream.nacks] == [400] and broken.attempts >= 1
    assert json.loads(event.acks[0]["data"])["status"] == "SUCCESS"
    await asyncio.sleep(0.3)
    assert await events(db) == 0 and fake.sent == []
