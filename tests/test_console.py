"""The local console end to end through the app: dispatcher, commands, outbox, console transport."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot import console
from bot.inbound import Inbound
from bot.server import CONSOLE_LOG, MAX_BODY, build_app  # MAX_BODY: what platform callbacks may send
from core.models import InboundEvent, User
from tests.factories import seed, seed_chat_users
from tests.test_console_browser import tiny_png

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100


@pytest.fixture
async def client(db, settings):
    await seed_chat_users(db, settings, manager=True)
    app = build_app(settings, db)
    async with TestClient(TestServer(app)) as c:
        yield c


async def _say(client: TestClient, user: str, text: str) -> list[dict[str, Any]]:
    """Send as user and wait for the bot's replies to that user (the console's own polling API)."""
    before = (await (await client.get("/console/api/messages")).json())["last"]
    r = await client.post("/console/api/send", json={"user": user, "text": text})
    assert r.status == 202, await r.text()
    for _ in range(200):
        data = await (await client.get(f"/console/api/messages?after={before}")).json()
        bot = [m for m in data["messages"] if m["direction"] == "bot" and m["target"]["address"] == user]
        if bot:
            return bot
        await asyncio.sleep(0.02)
    raise AssertionError(f"no reply to {text!r}")


async def test_page_and_users(client):
    page = await client.get("/console")
    assert page.status == 200 and "jxcbot 本地控制台" in await page.text()
    users = await (await client.get("/console/api/users")).json()
    assert {"name": "张库管", "roles": "warehouse", "roles_zh": "库管", "department": "仓储部"} in users


async def test_stock_query_reply(client):
    [reply] = await _say(client, "张库管", "库存 奶油")
    body = reply["message"]["text"]
    assert reply["message"]["kind"] == "markdown"
    assert "淡奶油" in body and "CREAM" in body and "WH1" in body and "12" in body


async def test_help_lists_commands(client):
    [reply] = await _say(client, "张库管", "帮助")
    assert "库存" in reply["message"]["text"] and "帮助" in reply["message"]["text"]


async def test_unknown_command_and_no_match_say_how_to_fix(client):
    [reply] = await _say(client, "张库管", "你好")
    assert "帮助" in reply["message"]["text"]
    [reply] = await _say(client, "张库管", "库存 不存在的东西")
    assert "没有找到" in reply["message"]["text"] and "处理办法" in reply["message"]["text"]


async def test_unregistered_user_is_told_how_to_register_and_nothing_else(client, db):
    [reply] = await _say(client, "陌生人", "库存 奶油")
    assert "登记" in reply["message"]["text"] and "陌生人" in reply["message"]["text"]
    assert "淡奶油" not in reply["message"]["text"]


async def test_bad_requests_are_4xx_not_500(client):
    assert (await client.post("/console/api/send", data=b"not json")).status == 400
    assert (await client.post("/console/api/send", json={"user": "张库管"})).status == 400
    assert (await client.post("/console/api/send", json={"user": "", "text": "帮助"})).status == 400
    assert (await client.post("/console/api/send", json={"user": "张库管", "text": "x" * 3000})).status == 400
    assert (await client.get("/console/api/messages?after=abc")).status == 400
    assert (await client.post("/console/api/send", data=b"x" * 70_000)).status == 400  # the console takes more


async def test_healthz(client):
    r = await client.get("/healthz")
    body = await r.json()
    assert r.status == 200 and body["database"] == "ok" and body["outbox"] is not None


async def test_same_event_twice_is_handled_once(client, db):
    """A platform retry (same dedupe_key) is acknowledged and has no second effect."""
    from datetime import UTC, datetime

    from bot.inbound import Inbound
    from bot.server import DISPATCHER

    dispatcher = client.server.app[DISPATCHER]
    event = Inbound("console", "张库管", "console:fixed-key", datetime.now(UTC), text="帮助")
    assert await dispatcher.accept(event) is True
    assert await dispatcher.accept(event) is False
    assert await dispatcher.accept(event) is False
    log = client.server.app[CONSOLE_LOG]
    for _ in range(200):
        if any(m["direction"] == "bot" for m in log.entries):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert sum(1 for m in log.entries if m["direction"] == "bot") == 1
    async with db.read() as s:
        from core.models import OutboxMessage as Outbox

        assert (await s.execute(select(func.count()).select_from(Outbox))).scalar_one() == 1


async def test_events_left_unhandled_by_a_crash_are_handled_on_start(db, settings):
    """An event stored (and acknowledged) just before the process died is answered after the restart."""
    from datetime import UTC, datetime

    from core.messaging.inbound import record_inbound

    async def setup(s) -> None:
        await seed(s)
        await record_inbound(s, platform="console", user_id="张库管", dedupe_key="console:before-crash",
                             received_at=datetime.now(UTC), lease_seconds=0,  # its holder died: the lease ran out
                             payload={"platform": "console", "user_id": "张库管", "dedupe_key": "console:before-crash",
                                      "received_at": datetime.now(UTC).isoformat(), "chat_id": None, "text": "帮助",
                                      "action": None, "reply": {}})

    await db.write(setup)
    app = build_app(settings, db)
    async with TestClient(TestServer(app)) as c:
        log = c.server.app[CONSOLE_LOG]
        for _ in range(200):
            if log.entries:
                break
            await asyncio.sleep(0.02)
        assert [m["target"]["address"] for m in log.entries] == ["张库管"]
        assert "库存" in log.entries[0]["message"]["text"]


def test_reply_target_prefers_a_live_session_webhook_then_group_then_user():
    import time
    from datetime import UTC, datetime

    from bot.dispatch import reply_target
    from bot.inbound import Inbound

    now_ms = int(time.time() * 1000)

    def event(expires: int | None, chat: str | None) -> Inbound:
        reply = {"session_webhook": "https://oapi.dingtalk.com/robot/sendBySession?session=s",
                 "session_webhook_expires": expires} if expires else {}
        return Inbound("dingtalk", "manager01", "k", datetime.now(UTC), chat_id=chat, text="帮助", reply=reply)

    assert reply_target(event(now_ms + 3_600_000, "cid")).kind == "session"
    assert reply_target(event(now_ms + 3_600_000, "cid")).fallback.address == "cid"  # should it expire unsent
    assert reply_target(event(now_ms + 3_600_000, None)).fallback.address == "manager01"
    assert reply_target(event(now_ms + 30_000, "cid")).kind == "group"  # about to expire
    assert reply_target(event(now_ms - 1, None)).kind == "user"
    assert reply_target(event(None, None)).address == "manager01"


async def test_sender_lookup_is_cached_briefly(db, settings, monkeypatch):
    """Roles are read once per SENDER_TTL; a change applies after it; an unknown sender is retried sooner."""
    from datetime import UTC, datetime

    from bot import dispatch
    from bot.inbound import Inbound
    from bot.tasks import TaskTracker

    await db.write(seed)
    d = dispatch.Dispatcher(db, settings, TaskTracker())
    reads = 0
    real_fetch = db.fetch

    async def counting_fetch(*a, **kw):
        nonlocal reads
        reads += 1
        return await real_fetch(*a, **kw)

    monkeypatch.setattr(db, "fetch", counting_fetch)
    event = Inbound("wecom", "zhang", "k1", datetime.now(UTC), text="帮助")
    first = await d.sender(event)
    assert first is not None and first.roles == frozenset({"warehouse"})
    assert await d.sender(event) == first and reads == 1

    async def promote(s) -> None:
        (await s.execute(select(User).where(User.wecom_user_id == "zhang"))).scalar_one().roles = "warehouse,manager"

    await db.write(promote)
    monkeypatch.setattr(dispatch, "SENDER_TTL", 0.0)
    d._senders.clear()
    assert (await d.sender(event)).roles == frozenset({"warehouse", "manager"})
    assert await d.sender(Inbound("wecom", "nobody", "k2", datetime.now(UTC), text="帮助")) is None


@pytest.mark.parametrize(("raw", "console", "mounted"), [
    ({}, None, True),  # local only: the console is how the bot is tried
    ({"wecom": {"corp_id": "ww1"}}, None, False),  # reachable by a platform: no unauthenticated console …
    ({"dingtalk": {"app_key": "k"}}, None, False),
    ({"wecom": {"corp_id": "ww1"}}, True, True),  # … unless asked for
    ({}, False, False),
])
def test_console_is_mounted_only_without_a_platform_unless_configured(settings, raw, console, mounted):
    from dataclasses import replace
    from types import MappingProxyType

    s = replace(settings, raw=MappingProxyType(raw), server_console=console)
    assert s.console_enabled is mounted


async def test_a_server_with_a_platform_has_no_console(db, settings):
    from dataclasses import replace
    from types import MappingProxyType

    from tests.fakes.wecom import FakeWeCom

    async with FakeWeCom() as fake:
        raw = {"wecom": {"corp_id": fake.corp_id, "agent_id": fake.agent_id, "secret": fake.secret,
                         "token": "t" * 8, "encoding_aes_key": "a" * 43, "api_base": fake.base_url}}
        app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
        async with TestClient(TestServer(app)) as c:
            assert (await c.get("/console")).status == 404
            r = await c.post("/console/api/send", json={"user": "张库管", "text": "库存 奶油"})
            assert r.status in (404, 405)
            assert (await c.get("/healthz")).status == 200


async def test_a_card_button_click_goes_through_the_dispatcher_and_is_answered(client, db):
    """/console/api/click: the click is an inbound event like a message (stored, handled, answered in Chinese);
    the approvals behind buttons come later, so the answer says so. Bad clicks are 4xx."""
    before = (await (await client.get("/console/api/messages")).json())["last"]
    r = await client.post("/console/api/click", json={"user": "张库管", "key": "approval:12:1:approve"})
    assert r.status == 202
    for _ in range(200):
        data = await (await client.get(f"/console/api/messages?after={before}")).json()
        bot = [m for m in data["messages"] if m["direction"] == "bot" and m["target"]["address"] == "张库管"]
        if bot:
            break
        await asyncio.sleep(0.02)
    assert "这个按钮已失效或无法识别" in bot[0]["message"]["text"]
    async with db.read() as s:
        stored = (await s.execute(select(func.count()).select_from(InboundEvent)
                                  .where(InboundEvent.platform == "console"))).scalar_one()
    assert stored == 1
    assert (await client.post("/console/api/click", json={"user": "张库管"})).status == 400
    assert (await client.post("/console/api/click", json={"user": "张库管", "key": "k" * 300})).status == 400
    assert (await client.post("/console/api/click", json={"key": "approval:1"})).status == 400


@pytest.fixture
async def bare(db):
    """The console routes alone, with the events they hand to the dispatcher collected."""
    from aiohttp import web

    accepted: list[Inbound] = []

    async def accept(event: Inbound) -> bool:
        accepted.append(event)
        return True

    log = console.ConsoleLog()
    app = web.Application(client_max_size=MAX_BODY)  # the app's small limit, as build_app sets it
    app.add_routes(console.routes(log, db, accept))
    async with TestClient(TestServer(app)) as c:
        yield c, log, accepted


@pytest.mark.parametrize(("raw", "content_type"), [(tiny_png(), "image/png"), (JPEG, "image/jpeg")])
async def test_a_picture_is_a_picture_message(bare, raw, content_type):
    c, log, accepted = bare
    data = base64.b64encode(raw).decode()
    r = await c.post("/console/api/send", json={"user": " 张库管 ", "image": data})
    assert r.status == 202, await r.text()
    [event] = accepted
    assert event.user_id == "张库管" and event.text is None and event.action is None
    assert dict(event.image) == {"data": data, "content_type": content_type}
    [entry] = log.entries  # the user's own picture, for the page to show
    assert entry["direction"] == "user" and entry["target"]["address"] == "张库管"
    assert entry["message"]["kind"] == "image" and base64.b64decode(entry["message"]["png"]) == raw


async def test_a_data_url_and_wrapped_base64_are_accepted(bare):
    c, _log, accepted = bare
    data = base64.encodebytes(tiny_png()).decode()  # with line breaks every 76 characters
    r = await c.post("/console/api/send", json={"user": "张库管", "image": "data:image/png;base64," + data})
    assert r.status == 202, await r.text()
    assert base64.b64decode(accepted[0].image["data"]) == tiny_png()


@pytest.mark.parametrize(("body", "says"), [
    ({"image": "这不是base64!!"}, "不是有效的 base64"),
    ({"image": base64.b64encode(b"GIF89a" + b"\x00" * 20).decode()}, "不是 PNG 或 JPEG"),
    ({"image": base64.b64encode(b"hello, a text file").decode()}, "不是 PNG 或 JPEG"),
    ({"image": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * console.MAX_IMAGE).decode()}, "图片太大"),
    ({"image": ""}, "PNG 或 JPEG"),
    ({"image": 12}, "PNG 或 JPEG"),
    ({"image": base64.b64encode(tiny_png()).decode(), "text": "看图"}, "文字或图片"),
])
async def test_a_bad_picture_is_refused_in_chinese_and_nothing_is_accepted(bare, body, says):
    c, log, accepted = bare
    r = await c.post("/console/api/send", json={"user": "张库管", **body})
    text = await r.text()
    assert r.status == 400 and says in text and "处理办法" in text, text
    assert accepted == [] and log.entries == []


async def test_a_too_large_body_is_a_chinese_413_and_long_text_a_chinese_400(bare):
    c, log, accepted = bare
    huge = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * (console.MAX_IMAGE * 2)).decode()
    r = await c.post("/console/api/send", json={"user": "张库管", "image": huge})
    text = await r.text()
    assert r.status == 413 and "请求内容太大" in text and "2 MB" in text and "Maximum" not in text
    r = await c.post("/console/api/send", json={"user": "张库管", "text": "奶" * 100_000})  # ~300 KB
    text = await r.text()
    assert r.status == 400 and f"1–{console.MAX_TEXT} 个字符" in text and "Maximum" not in text
    r = await c.post("/console/api/click", data=json.dumps({"user": "张库管", "key": "k" * (console.MAX_BODY + 1)}))
    assert r.status == 413 and "请求内容太大" in await r.text()
    assert accepted == [] and log.entries == []


async def test_a_picture_of_the_largest_size_fits_the_body_limit(bare):
    c, _log, accepted = bare
    raw = b"\xff\xd8\xff" + b"\x00" * (console.MAX_IMAGE - 3)
    r = await c.post("/console/api/send", json={"user": "张库管", "image": base64.b64encode(raw).decode()})
    assert r.status == 202, await r.text()
    assert len(accepted) == 1


async def test_a_picture_through_the_whole_app_is_acknowledged_and_shown(client):
    r = await client.post("/console/api/send", json={"user": "张库管", "image": base64.b64encode(tiny_png()).decode()})
    assert r.status == 202, await r.text()
    data = await (await client.get("/console/api/messages")).json()
    mine = [m for m in data["messages"] if m["direction"] == "user"]
    assert [m["message"]["kind"] for m in mine] == ["image"]


def test_the_log_drops_the_oldest_entries_beyond_its_picture_budget():
    from cards.model import Message
    from core.messaging.targets import Target

    log = console.ConsoleLog(keep=100, keep_image_chars=3000)
    to = Target("console", "user", "张库管")
    log.add("bot", to, Message("text", text="最早"))
    for _ in range(3):
        log.add("bot", to, Message("image", png=b"x" * 1500))  # 2000 base64 characters each
    assert [e["message"]["kind"] for e in log.entries] == ["image"]
    log.add("bot", to, Message("image", png=b"x" * 6000))  # larger than the budget alone: kept, as the newest
    assert len(log.entries) == 1 and log.entries[0]["id"] == 5
    for _ in range(150):
        log.add("bot", to, Message("text", text="t"))
    assert len(log.entries) == 100
