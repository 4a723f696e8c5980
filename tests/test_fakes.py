"""The local WeCom and DingTalk fakes themselves: checklist behaviour driven over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import xmltodict
from aiohttp import web
from aiohttp.test_utils import TestServer
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.dingtalk.sign import compute_sign
from tests.fakes.dingtalk import FakeDingTalk, text_message
from tests.fakes.wecom import (
    PATH_GETTOKEN,
    PATH_ROBOT,
    PATH_ROBOT_UPLOAD,
    PATH_SEND,
    PATH_UPDATE,
    PATH_UPLOAD,
    CallbackDriver,
    FakeWeCom,
)

TOKEN = "jxcTestToken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP = "wwfakecorp0001"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
AMR = b"#!AMR\n" + bytes(64)
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(64)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def wecom() -> AsyncIterator[FakeWeCom]:
    async with FakeWeCom(robots={"warehouse": "robot-key-0001", "office": "robot-key-0002"}) as fake:
        yield fake


@pytest.fixture
async def dingtalk() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as fake:
        yield fake


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a stand-in bot endpoint (POST and GET at /cb) on 127.0.0.1; returns its URL."""
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/cb", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/cb"))

    yield start
    for server in servers:
        await server.close()


# -- WeCom helpers ----------------------------------------------------------------------------------------------


async def get_token(http: aiohttp.ClientSession, fake: FakeWeCom) -> dict[str, Any]:
    async with http.get(f"{fake.base_url}{PATH_GETTOKEN}",
                        params={"corpid": fake.corp_id, "corpsecret": fake.secret}) as r:
        return await r.json()


async def post(http: aiohttp.ClientSession, fake: FakeWeCom, path: str, body: dict[str, Any],
               **params: str) -> dict[str, Any]:
    async with http.post(f"{fake.base_url}{path}", params=params, json=body) as r:
        assert r.status == 200
        return await r.json()


async def upload(http: aiohttp.ClientSession, fake: FakeWeCom, path: str, data: bytes | None, *,
                 filename: str = "report.bin", **params: str) -> dict[str, Any]:
    form = aiohttp.FormData()
    if data is None:
        form.add_field("other", b"not the media part", filename="x.bin")
    else:
        form.add_field("media", data, filename=filename, content_type="application/octet-stream")
    async with http.post(f"{fake.base_url}{path}", params=params, data=form) as r:
        assert r.status == 200
        return await r.json()


def text(fake: FakeWeCom, content: str, touser: str = "zhang", **extra: Any) -> dict[str, Any]:
    return {"touser": touser, "msgtype": "text", "agentid": fake.agent_id, "text": {"content": content}, **extra}


def card(fake: FakeWeCom, task_id: str, touser: str) -> dict[str, Any]:
    return {"touser": touser, "msgtype": "template_card", "agentid": fake.agent_id, "template_card": {
        "card_type": "button_interaction", "task_id": task_id, "main_title": {"title": "盘点差异"},
        "button_list": [{"text": "同意", "key": "approval:1:approve"}, {"text": "驳回", "key": "approval:1:reject"}]}}


# -- WeCom: webhook/upload_media ----------------------------------------------------------------------------------


async def test_wecom_robot_upload_media_and_file_message(http: aiohttp.ClientSession, wecom: FakeWeCom) -> None:
    key, other = wecom.robot_key("warehouse"), wecom.robot_key("office")
    assert (await upload(http, wecom, PATH_ROBOT_UPLOAD, b"x" * 64, key="nope", type="file"))["errcode"] == 93000
    assert (await upload(http, wecom, PATH_ROBOT_UPLOAD, PNG, key=key, type="image"))["errcode"] == 40005
    assert (await upload(http, wecom, PATH_ROBOT_UPLOAD, None, key=key, type="file"))["errcode"] == 41005
    assert (await upload(http, wecom, PATH_ROBOT_UPLOAD, b"12345", key=key, type="file"))["errcode"] == 40006
    assert (await upload(http, wecom, PATH_ROBOT_UPLOAD, b"not amr audio", key=key, type="voice"))["errcode"] \
        == 40004
    too_big_voice = b"#!AMR\n" + bytes(2 * 1024 * 1024)
    assert (await upload(http, wecom, PATH_ROBOT_UPLOAD, too_big_voice, key=key, type="voice"))["errcode"] == 40006

    got = await upload(http, wecom, PATH_ROBOT_UPLOAD, b"date,sku,qty\n", filename="stock.csv", key=key, type="file")
    assert (got["errcode"], got["type"]) == (0, "file")
    assert isinstance(got["created_at"], str) and got["created_at"].isdigit()
    media = wecom.media[got["media_id"]]
    assert (media.type, media.data, media.filename, media.owner) == ("file", b"date,sku,qty\n", "stock.csv", key)
    voice = await upload(http, wecom, PATH_ROBOT_UPLOAD, AMR, filename="v.amr", key=key, type="voice")
    assert voice["errcode"] == 0
    assert wecom.calls(PATH_ROBOT_UPLOAD) == 8

    file_msg = {"msgtype": "file", "file": {"media_id": got["media_id"]}}
    assert (await post(http, wecom, PATH_ROBOT, file_msg, key=key))["errcode"] == 0
    assert (await post(http, wecom, PATH_ROBOT, {"msgtype": "voice", "voice": {"media_id": voice["media_id"]}},
                       key=key))["errcode"] == 0
    assert wecom.robot_messages == [(key, file_msg), (key, {"msgtype": "voice",
                                                             "voice": {"media_id": voice["media_id"]}})]
    # only the uploading robot may use it, only for 3 days, and never an unknown id
    assert (await post(http, wecom, PATH_ROBOT, file_msg, key=other))["errcode"] == 40007
    bogus = {"msgtype": "file", "file": {"media_id": "no-such-media"}}
    assert (await post(http, wecom, PATH_ROBOT, bogus, key=key))["errcode"] == 40007
    # nor the app: robot media is not app media
    token = (await get_token(http, wecom))["access_token"]
    app_file = {"touser": "zhang", "msgtype": "file", "agentid": wecom.agent_id, "file": {"media_id": got["media_id"]}}
    assert (await post(http, wecom, PATH_SEND, app_file, access_token=token))["errcode"] == 40007
    wecom.advance(3 * 24 * 3600 + 1)
    assert (await post(http, wecom, PATH_ROBOT, file_msg, key=key))["errcode"] == 40007
    assert len(wecom.robot_messages) == 2


async def test_wecom_robot_template_card_only_notice_types(http: aiohttp.ClientSession, wecom: FakeWeCom) -> None:
    key = wecom.robot_key("warehouse")
    buttons = {"msgtype": "template_card", "template_card": {"card_type": "button_interaction", "task_id": "t1"}}
    assert (await post(http, wecom, PATH_ROBOT, buttons, key=key))["errcode"] == 40058
    notice = {"msgtype": "template_card", "template_card": {"card_type": "text_notice",
                                                            "main_title": {"title": "日报"}}}
    assert (await post(http, wecom, PATH_ROBOT, notice, key=key))["errcode"] == 0
    assert wecom.robot_messages == [(key, notice)]


# -- WeCom: message/send ------------------------------------------------------------------------------------------


async def test_wecom_duplicate_check_swallows_identical_messages(http: aiohttp.ClientSession,
                                                                  wecom: FakeWeCom) -> None:
    async def send(body: dict[str, Any]) -> dict[str, Any]:
        token = (await get_token(http, wecom))["access_token"]  # the clock jumps past token expiry below
        answer = await post(http, wecom, PATH_SEND, body, access_token=token)
        assert answer["errcode"] == 0
        return answer

    alert = text(wecom, "奶油 库存低于安全线", enable_duplicate_check=1)
    first, second = await send(alert), await send(alert)
    assert first["msgid"] and second["msgid"] and first["msgid"] != second["msgid"]
    assert wecom.messages == [alert] and wecom.duplicates == [alert] and wecom.dropped == []
    # not identical → delivered: other content, other recipients, or no duplicate check asked for
    other = text(wecom, "牛奶 库存低于安全线", enable_duplicate_check=1)
    to_li = text(wecom, "奶油 库存低于安全线", touser="li", enable_duplicate_check=1)
    unchecked = text(wecom, "奶油 库存低于安全线")
    for body in (other, to_li, unchecked, unchecked):
        await send(body)
    assert wecom.messages == [alert, other, to_li, unchecked, unchecked]
    # the window is the default 1800 s from the last delivery
    wecom.advance(1799)
    await send(alert)
    assert len(wecom.duplicates) == 2
    wecom.advance(2)
    await send(alert)
    assert wecom.messages[-1] == alert and len(wecom.messages) == 6 and len(wecom.duplicates) == 2

    short = text(wecom, "盘点提醒", enable_duplicate_check=1, duplicate_check_interval=60)
    await send(short)
    wecom.advance(30)
    await send(short)
    wecom.advance(31)
    await send(short)
    assert [m for m in wecom.messages if m == short] == [short, short] and wecom.duplicates[-1] == short
    # at most 4 h, whatever the request asks for
    capped = text(wecom, "周报", enable_duplicate_check=1, duplicate_check_interval=10 * 3600)
    await send(capped)
    wecom.advance(4 * 3600 + 1)
    await send(capped)
    assert [m for m in wecom.messages if m == capped] == [capped, capped]


async def test_wecom_hourly_per_user_limit_drops_silently(http: aiohttp.ClientSession) -> None:
    assert FakeWeCom().per_user_per_hour == 1000
    async with FakeWeCom(per_user_per_minute=3, per_user_per_hour=5) as fake:
        token = (await get_token(http, fake))["access_token"]

        async def send(n: int) -> None:
            assert (await post(http, fake, PATH_SEND, text(fake, f"第{n}条"), access_token=token))["errcode"] == 0

        for n in range(4):
            await send(n)
        fake.advance(61)
        for n in range(4, 7):
            await send(n)
        delivered = [m["text"]["content"] for m in fake.messages]
        assert delivered == ["第0条", "第1条", "第2条", "第4条", "第5条"]  # 3/min, then 5/h
        assert [m["text"]["content"] for m in fake.dropped] == ["第3条", "第6条"]
        fake.advance(3600)
        await send(7)
        assert fake.messages[-1]["text"]["content"] == "第7条"


async def test_wecom_card_views_follow_updates(http: aiohttp.ClientSession, wecom: FakeWeCom) -> None:
    token = (await get_token(http, wecom))["access_token"]
    sent = await post(http, wecom, PATH_SEND, card(wecom, "jxc_t1", "zhang|li"), access_token=token)
    original = wecom.messages[0]["template_card"]
    assert wecom.card_views[("jxc_t1", "zhang")].card == original
    assert wecom.card_views[("jxc_t1", "li")].replace_name is None

    clicked = wecom.click("li", "jxc_t1")
    grey = {"userids": ["li"], "agentid": wecom.agent_id, "response_code": clicked,
            "button": {"replace_name": "已同意"}}
    assert (await post(http, wecom, PATH_UPDATE, grey, access_token=token))["errcode"] == 0
    assert wecom.card_views[("jxc_t1", "li")].replace_name == "已同意"
    assert wecom.card_views[("jxc_t1", "zhang")].replace_name is None  # only the clicker's card changed

    replacement = {**card(wecom, "jxc_t2", "zhang")["template_card"], "main_title": {"title": "第二步"}}
    whole = {"userids": ["zhang"], "agentid": wecom.agent_id, "response_code": sent["response_code"],
             "template_card": replacement}
    assert (await post(http, wecom, PATH_UPDATE, whole, access_token=token))["errcode"] == 0
    view = wecom.card_views[("jxc_t1", "zhang")]
    assert view.card == replacement and view.replace_name is None
    assert wecom.card_views[("jxc_t2", "zhang")] is view
    assert wecom.card_views[("jxc_t1", "li")].card == original


async def test_wecom_media_upload_limits_per_type_and_media_messages(http: aiohttp.ClientSession,
                                                                     wecom: FakeWeCom) -> None:
    token = (await get_token(http, wecom))["access_token"]

    async def up(data: bytes, kind: str) -> dict[str, Any]:
        return await upload(http, wecom, PATH_UPLOAD, data, access_token=token, type=kind)

    assert (await up(b"not amr audio", "voice"))["errcode"] == 40004
    assert (await up(b"#!AMR\n" + bytes(2 * 1024 * 1024), "voice"))["errcode"] == 40006
    assert (await up(b"not an mp4 file", "video"))["errcode"] == 40004
    assert (await up(MP4 + bytes(10 * 1024 * 1024), "video"))["errcode"] == 40006
    assert (await up(b"x" * (20 * 1024 * 1024 + 1), "file"))["errcode"] == 40006
    assert (await up(MP4, "video"))["errcode"] == 0
    assert (await up(AMR, "voice"))["errcode"] == 0
    doc = await up(b"%PDF-1.7 monthly report", "file")
    assert (doc["errcode"], doc["type"]) == (0, "file")

    msg = {"touser": "zhang", "msgtype": "file", "agentid": wecom.agent_id, "file": {"media_id": doc["media_id"]}}
    assert (await post(http, wecom, PATH_SEND, msg, access_token=token))["errcode"] == 0
    bogus = {**msg, "file": {"media_id": "no-such-media"}}
    assert (await post(http, wecom, PATH_SEND, bogus, access_token=token))["errcode"] == 40007
    assert wecom.messages == [msg]


# -- WeCom: gettoken knobs ----------------------------------------------------------------------------------------


async def test_wecom_gettoken_frequency_limit(http: aiohttp.ClientSession) -> None:
    async with FakeWeCom() as unlimited:
        assert all([(await get_token(http, unlimited))["errcode"] == 0 for _ in range(10)])
    async with FakeWeCom(gettoken_per_minute=2) as fake:
        assert [(await get_token(http, fake))["errcode"] for _ in range(3)] == [0, 0, 45009]
        fake.advance(61)
        assert (await get_token(http, fake))["errcode"] == 0


async def test_wecom_untrusted_ip_gets_60020(http: aiohttp.ClientSession) -> None:
    async with FakeWeCom(trusted_ips={"10.1.2.3"}) as fake:
        got = await get_token(http, fake)
        assert got["errcode"] == 0  # gettoken itself is not IP-bound
        answer = await post(http, fake, PATH_SEND, text(fake, "x"), access_token=got["access_token"])
        assert answer["errcode"] == 60020 and "from ip" in answer["errmsg"]
        assert (await upload(http, fake, PATH_UPLOAD, PNG, access_token=got["access_token"], type="image"))[
            "errcode"] == 60020
        fake.trusted_ips = {"127.0.0.1"}
        assert (await post(http, fake, PATH_SEND, text(fake, "x"), access_token=got["access_token"]))["errcode"] == 0
        assert len(fake.messages) == 1


async def test_wecom_revoked_tokens_are_invalid_once(http: aiohttp.ClientSession, wecom: FakeWeCom) -> None:
    old = (await get_token(http, wecom))["access_token"]
    wecom.revoke_tokens()
    assert (await post(http, wecom, PATH_SEND, text(wecom, "x"), access_token=old))["errcode"] == 40014
    new = (await get_token(http, wecom))["access_token"]
    assert new != old
    assert (await post(http, wecom, PATH_SEND, text(wecom, "x"), access_token=new))["errcode"] == 0


# -- WeCom: callback driver ---------------------------------------------------------------------------------------


async def test_wecom_driver_replays_the_identical_request(http: aiohttp.ClientSession,
                                                          serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[tuple[str, bytes]] = []

    async def bot(request: web.Request) -> web.Response:
        seen.append((request.query_string, await request.read()))
        return web.Response(text="")

    url = await serve(bot)
    d = CallbackDriver(TOKEN, AES_KEY, CORP)
    attempts = await d.deliver(http, url, d.text_xml("zhang", "库存 奶油", 42), replays=2)
    assert [a.status for a in attempts] == [200, 200, 200]
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]  # same nonce, signature and ciphertext


async def test_wecom_driver_checks_passive_replies(http: aiohttp.ClientSession,
                                                   serve: Callable[[Handler], Awaitable[str]]) -> None:
    crypto = WeChatCrypto(TOKEN, AES_KEY, CORP)
    replies = {
        "text": f"<xml><ToUserName>zhang</ToUserName><FromUserName>{CORP}</FromUserName><CreateTime>1800000000"
                "</CreateTime><MsgType>text</MsgType><Content>奶油 12 箱</Content></xml>",
        "button": f"<xml><ToUserName>zhang</ToUserName><FromUserName>{CORP}</FromUserName><CreateTime>1800000000"
                  "</CreateTime><MsgType>update_button</MsgType><Button><ReplaceName>已同意</ReplaceName></Button>"
                  "</xml>",
        "no_name": f"<xml><ToUserName>zhang</ToUserName><FromUserName>{CORP}</FromUserName><CreateTime>1800000000"
                   "</CreateTime><MsgType>update_button</MsgType><Button></Button></xml>",
        "long": f"<xml><ToUserName>zhang</ToUserName><FromUserName>{CORP}</FromUserName><CreateTime>1800000000"
                f"</CreateTime><MsgType>text</MsgType><Content>{'库' * 683}</Content></xml>",
        "from": "<xml><ToUserName>zhang</ToUserName><FromUserName>wwother</FromUserName><CreateTime>1800000000"
                "</CreateTime><MsgType>text</MsgType><Content>hi</Content></xml>",
        "kind": f"<xml><ToUserName>zhang</ToUserName><FromUserName>{CORP}</FromUserName><CreateTime>1800000000"
                "</CreateTime><MsgType>music</MsgType></xml>",
    }

    async def bot(request: web.Request) -> web.Response:
        q = request.query
        plain = crypto.decrypt_message((await request.read()).decode(), q["msg_signature"], q["timestamp"],
                                       q["nonce"])
        answer = replies[xmltodict.parse(plain)["xml"]["Content"]]
        return web.Response(text=crypto.encrypt_message(answer, q["nonce"]))

    d = CallbackDriver(TOKEN, AES_KEY, CORP)
    url = await serve(bot)

    async def reply(which: str) -> str:
        attempts = await d.deliver(http, url, d.text_xml("zhang", which, 1))
        assert attempts[-1].status == 200
        return attempts[-1].body

    fields = d.check_reply(await reply("text"), "zhang")
    assert (fields["MsgType"], fields["Content"]) == ("text", "奶油 12 箱")
    assert d.check_reply(await reply("button"), "zhang")["Button"] == {"ReplaceName": "已同意"}
    with pytest.raises(ValueError, match="ToUserName"):
        d.check_reply(await reply("text"), "li")
    for which, reason in (("no_name", "ReplaceName"), ("long", "2048"), ("from", "CorpID"), ("kind", "music")):
        with pytest.raises(ValueError, match=reason):
            d.check_reply(await reply(which))
    forged = (await reply("text")).replace("<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0")
    with pytest.raises(ValueError, match="signature"):
        d.check_reply(forged)


# -- DingTalk: inbound driver -------------------------------------------------------------------------------------


class StubBot:
    """A stand-in for the bot's /dingtalk/callback: checks the sign, records each request, answers each attempt
    after `delays[i]` seconds with `statuses[i]` (defaults: at once, 200)."""

    def __init__(self, secret: str, delays: tuple[float, ...] = (), statuses: tuple[int, ...] = ()) -> None:
        self.secret = secret
        self.delays = delays
        self.statuses = statuses
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        n = len(self.seen)
        ts, sign = request.headers.get("timestamp"), request.headers.get("sign")
        self.seen.append({"at": time.monotonic(), "timestamp": ts, "body": json.loads(await request.read()),
                          "signed": bool(ts) and sign == compute_sign(ts or "0", self.secret)})
        await asyncio.sleep(self.delays[n] if n < len(self.delays) else 0.0)
        return web.json_response({"ok": n}, status=self.statuses[n] if n < len(self.statuses) else 200)


async def test_dingtalk_redelivers_the_same_msgid_after_n_seconds(
        http: aiohttp.ClientSession, dingtalk: FakeDingTalk, serve: Callable[[Handler], Awaitable[str]]) -> None:
    stub = StubBot(dingtalk.app_secret)
    url = await serve(stub.handle)
    payload = dingtalk.text_message("库存 奶油", msg_id="msgDup1")
    attempts = await dingtalk.deliver(http, url, payload, redeliver_after=0.25, redeliveries=2)
    assert [a.status for a in attempts] == [200, 200, 200]
    assert [s["body"] for s in stub.seen] == [payload] * 3
    assert all(s["signed"] for s in stub.seen)  # each attempt freshly signed with the app secret
    gaps = [b["at"] - a["at"] for a, b in zip(stub.seen, stub.seen[1:], strict=False)]
    assert all(g >= 0.2 for g in gaps), gaps
    assert [a.timestamp for a in attempts] == [s["timestamp"] for s in stub.seen]
    assert len(await dingtalk.deliver(http, url, payload)) == 1  # no redelivery unless asked


async def test_dingtalk_redelivers_only_when_the_ack_is_late(
        http: aiohttp.ClientSession, dingtalk: FakeDingTalk, serve: Callable[[Handler], Awaitable[str]]) -> None:
    slow = StubBot(dingtalk.app_secret, delays=(0.8,))
    url = await serve(slow.handle)
    payload = dingtalk.text_message("库存 奶油", msg_id="msgLate")
    attempts = await dingtalk.deliver(http, url, payload, redeliver_after=0.2, late_after=0.2, redeliveries=3)
    assert len(attempts) == 2 and [a.status for a in attempts] == [200, 200]
    assert attempts[0].latency >= 0.8 > attempts[1].latency  # the slow ack is timed
    assert slow.seen[1]["at"] - slow.seen[0]["at"] < 0.8  # redelivered while the first was still unanswered

    fast = StubBot(dingtalk.app_secret)
    attempts = await dingtalk.deliver(http, await serve(fast.handle), payload, redeliver_after=0.1, late_after=0.2)
    assert len(attempts) == 1 and len(fast.seen) == 1
    failing = StubBot(dingtalk.app_secret, statuses=(500, 503))
    attempts = await dingtalk.deliver(http, await serve(failing.handle), payload, redeliver_after=0.05,
                                      late_after=0.2, redeliveries=5)
    assert [a.status for a in attempts] == [500, 503, 200]

    hung = StubBot(dingtalk.app_secret, delays=(1.0,))
    attempts = await dingtalk.deliver(http, await serve(hung.handle), payload, deadline=0.3)
    assert attempts[0].status == 0 and 0.25 < attempts[0].latency < 2.0


async def test_dingtalk_group_message_without_mention_is_never_delivered(
        http: aiohttp.ClientSession, dingtalk: FakeDingTalk, serve: Callable[[Handler], Awaitable[str]]) -> None:
    stub = StubBot(dingtalk.app_secret)
    url = await serve(stub.handle)
    quiet = text_message("库存 奶油", conversation_id="cidGroup1==", at_bot=False)
    assert (quiet["isInAtList"], quiet["atUsers"], quiet["text"]["content"]) == (False, [], "库存 奶油")
    assert await dingtalk.deliver(http, url, quiet) == []
    assert stub.seen == []
    mentioned = text_message("库存 奶油", conversation_id="cidGroup1==")
    assert [a.status for a in await dingtalk.deliver(http, url, mentioned)] == [200]
    assert stub.seen[0]["body"]["text"]["content"] == " 库存 奶油"


async def test_dingtalk_driver_switches(http: aiohttp.ClientSession, dingtalk: FakeDingTalk,
                                        serve: Callable[[Handler], Awaitable[str]]) -> None:
    stub = StubBot(dingtalk.app_secret)
    url = await serve(stub.handle)
    payload = dingtalk.text_message("库存 奶油")
    await dingtalk.deliver(http, url, payload, forge=True)
    await dingtalk.deliver(http, url, payload, unsigned=True)
    dingtalk.clock.advance(-3_600.001)
    await dingtalk.deliver(http, url, payload)
    assert [s["signed"] for s in stub.seen] == [False, False, True]
    assert stub.seen[1]["timestamp"] is None
    assert int(time.time() * 1000) - int(stub.seen[2]["timestamp"]) > 3_600_000  # signed on the fake's clock
