"""The WeCom intelligent robot's long connection end to end: the server (bound to 127.0.0.1, no public URL) against
the local fake of 智能机器人长连接 — replies on the callback, redeliveries, cuts, a stalled link, the approval cards
clicked over the connection, a newer connection replacing an older one; the config, the frame parsing and the
media decryption."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from dataclasses import replace
from types import MappingProxyType

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot import platforms
from bot.platforms import WECOM_LONGCONN, WeComConfig, wecom_config
from bot.server import build_app
from bot.wecom import longconn
from bot.wecom.longconn import decrypt_media, parse_frame
from core.config import ConfigError, load_config
from core.ledger.documents import get_document
from core.models import ApprovalEvent, Attachment, User
from core.models.messaging import InboundEvent, OutboxMessage
from tests.factories import line, post, seed, seed_chat_users
from tests.fakes.wecom_longconn import FakeLongConn, encrypt_media
from tests.test_platform_approvals import JPEG, discrepancy_without_photo
from tests.waiting import until


def robot_settings(settings, fake: FakeLongConn, **extra):
    raw = {"wecom": {"mode": "longconn", "bot_id": fake.bot_id, "secret": fake.secret, "ws_url": fake.url, **extra}}
    return replace(settings, raw=MappingProxyType(raw))


@pytest.fixture
def fast_backoff(monkeypatch):
    """Reconnect after 50–100 ms instead of 0.5–1 s (the tests cut connections on purpose)."""
    monkeypatch.setattr(longconn, "BACKOFF_BASE", 0.1)


@pytest.fixture
async def fake():
    async with FakeLongConn() as f:
        yield f


async def serve(settings, db, fake: FakeLongConn):
    """The server as `jxcbot serve` builds it, on 127.0.0.1, subscribed to the fake."""
    app = build_app(robot_settings(settings, fake), db)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return app, client


@pytest.fixture
async def robot(db, settings, fake, fast_backoff):
    await seed_chat_users(db, settings, ["li"])  # 张库管 (zhang), 用户li; 12 kg cream in WH1
    app, client = await serve(settings, db, fake)
    try:
        await fake.wait_subscribed()
        yield app, fake
    finally:
        await client.close()


async def inbound_rows(db) -> int:
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(InboundEvent))


async def settled(db, fake: FakeLongConn, seconds: float = 0.4) -> None:
    """Nothing left to send, and a little time for anything that would come twice."""
    async def outbox_done() -> bool:
        async with db.read() as s:
            return not await s.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.status.in_(("pending", "sending"))))
    for _ in range(300):
        if await outbox_done():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(seconds)


# -- messages ---------------------------------------------------------------------------------------------------

async def test_a_message_becomes_one_reply_on_its_callback(robot, db):
    app, fake = robot
    msgid = await fake.send_text("zhang", "库存 淡奶油")
    await until(lambda: fake.answers(msgid), "the reply", seconds=10)
    await settled(db, fake)
    [answer] = fake.answers(msgid)
    assert answer.via == "respond" and answer.msgtype == "stream" and answer.to == "zhang"
    assert "淡奶油" in answer.text and "12" in answer.text
    assert fake.texts("zhang") == [answer.text]  # one reply, nothing pushed beside it
    assert answer.req_id == fake.callbacks[msgid].req_ids[0]
    assert app[WECOM_LONGCONN].sessions == 1 and len(fake.connections) == 1


async def test_a_group_message_is_answered_in_the_group_without_the_mention(robot, db):
    _app, fake = robot
    msgid = await fake.send_text("zhang", "@jxcbot 库存 淡奶油", chat="wrcGROUP01")
    await until(lambda: fake.answers(msgid), "the reply", seconds=10)
    [answer] = fake.answers(msgid)
    assert answer.chatid == "wrcGROUP01" and answer.to is None and "淡奶油" in answer.text
    async with db.read() as s:
        row = (await s.execute(select(InboundEvent))).scalar_one()
    assert row.chat_id == "wrcGROUP01" and '"text": "库存 淡奶油"' in row.payload


async def test_the_same_message_redelivered_has_one_effect(robot, db):
    _app, fake = robot
    msgid = await fake.send_text("zhang", "库存 淡奶油")
    await fake.redeliver(msgid)  # before the bot answered: WeCom thinks the first went unanswered
    await until(lambda: fake.answers(msgid), "the reply", seconds=10)
    await fake.redeliver(msgid)  # and once more after the answer
    await settled(db, fake)
    assert fake.callbacks[msgid].deliveries == 3
    assert len(fake.answers(msgid)) == 1 and len(fake.texts("zhang")) == 1
    assert await inbound_rows(db) == 1
    async with db.read() as s:
        assert (await s.execute(select(InboundEvent.dedupe_key))).scalar_one() == f"wecom:aibot:zhang:{msgid}"


async def test_a_network_cut_reconnects_and_loses_nothing(robot, db):
    """A message answered, the link cut, one message sent while it is down, one whose reply was still queued at the
    cut: after the reconnection every message is answered exactly once (a reply whose req_id died with the old
    connection is pushed to the sender)."""
    app, fake = robot
    first = await fake.send_text("zhang", "库存 淡奶油")
    await until(lambda: fake.answers(first), "the first reply", seconds=10)
    fake.cut()
    during = await fake.send_text("zhang", "库存 牛奶")  # queued: no connection
    await fake.wait_subscribed(2)
    await until(lambda: fake.answers(during), "the reply to the message sent during the cut", seconds=10)
    pending = await fake.send_text("zhang", "库存 白砂糖")
    fake.cut()  # at once: the reply goes out on the next connection, if not before the cut
    await fake.wait_subscribed(3)
    await until(lambda: sum("白砂糖" in t for t in fake.texts("zhang")) >= 1, "the third reply", seconds=15)
    await settled(db, fake)
    texts = fake.texts("zhang")
    assert [sum(name in t for t in texts) for name in ("淡奶油", "牛奶", "白砂糖")] == [1, 1, 1], texts
    assert len(texts) == 3 and await inbound_rows(db) == 3
    assert app[WECOM_LONGCONN].sessions == 3 and not app[WECOM_LONGCONN].replaced
    assert [c.how for c in fake.connections[:2]] == ["cut", "cut"] and fake.connections[2].state == "open"
    assert fake.callbacks[pending].deliveries >= 1


async def test_a_stalled_link_is_noticed_by_the_heartbeat_and_replaced(db, settings, fake, fast_backoff, monkeypatch):
    monkeypatch.setattr(longconn, "HEARTBEAT", 0.2)
    await seed_chat_users(db, settings)
    app, client = await serve(settings, db, fake)
    try:
        await fake.wait_subscribed()
        await until(lambda: fake.connections[0].pings >= 2, "pings answered")
        fake.stall()  # open, but nothing comes back: no pongs
        await fake.wait_subscribed(2, seconds=5)
        msgid = await fake.send_text("zhang", "库存 淡奶油")
        await until(lambda: fake.answers(msgid), "the reply on the new connection", seconds=10)
        assert fake.connections[0].state == "closed" and fake.connections[0].how == "client"
        assert app[WECOM_LONGCONN].connects == 2
    finally:
        await client.close()


async def test_a_picture_is_downloaded_and_decrypted_with_its_own_key(robot, db, settings):
    _app, fake = robot
    number = await discrepancy_without_photo(db, settings)
    asked = await fake.send_text("zhang", f"凭证 {number}")
    await until(lambda: fake.answers(asked), "the 凭证 answer", seconds=10)
    assert "凭证照片" in fake.answers(asked)[0].text
    sent = await fake.send_image("zhang", JPEG)
    await until(lambda: any("已保存凭证照片" in t for t in fake.texts("zhang")), "the photo kept", seconds=10)
    async with db.read() as s:
        doc = await get_document(s, number)
        [photo] = (await s.execute(select(Attachment).where(Attachment.document_id == doc.id))).scalars()
    assert (photo.sha256, photo.content_type, photo.platform) == (hashlib.sha256(JPEG).hexdigest(), "image/jpeg",
                                                                 "wecom")
    assert fake.answers(sent)[0].via == "respond"


# -- approvals over the connection ------------------------------------------------------------------------------

async def signoff(db, settings, fake: FakeLongConn):
    """张库管 (warehouse), 王销售 (sales) and 李采购 (purchasing), all on the robot; a count discrepancy whose
    photo 张库管 sent over the connection, so that its sign-off cards went to the three of them."""
    async def people(s) -> None:
        await seed(s)
        s.add_all([User(name="李采购", roles="purchasing", wecom_user_id="li"),
                   User(name="王销售", roles="sales", wecom_user_id="wang")])
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")

    await db.write(people)
    app, client = await serve(settings, db, fake)
    await fake.wait_subscribed()
    number = await discrepancy_without_photo(db, settings)
    asked = await fake.send_text("zhang", f"凭证 {number}")
    await until(lambda: fake.answers(asked), "the 凭证 answer", seconds=10)
    await fake.send_image("zhang", JPEG)
    await until(lambda: all(fake.cards_to(u) for u in ("zhang", "wang", "li")), "the sign-off cards", seconds=10)
    return app, client, number


def button(card: dict, label: str = "同意") -> str:
    return next(b["key"] for b in card["button_list"] if b["text"] == label)


async def test_card_clicks_over_the_connection_decide_an_approval(db, settings, fake, fast_backoff):
    """The count discrepancy's three-party sign-off with every party on the robot: the sign-off cards are pushed,
    each click arrives as a template_card_event, the clicked card is updated on the click's req_id, the other
    copies get fresh cards (a pushed card cannot be updated later), a click redelivered decides once, and the
    third approval posts the difference."""
    app, client, number = await signoff(db, settings, fake)
    try:
        # 1. 王销售 approves; his click is delivered twice (WeCom repeating a callback): one decision.
        wang = fake.cards_to("wang")[-1]
        click = await fake.click("wang", wang["task_id"], button(wang))
        await fake.redeliver(click)
        await until(lambda: fake.answers(click) and len(fake.cards_to("li")) >= 2 and len(fake.cards_to("zhang")) >= 2,
                    "wang's card updated, the others' fresh cards", seconds=10)
        [update] = fake.answers(click)
        assert update.via == "update" and update.card["task_id"] == wang["task_id"]
        assert "王销售" in update.card["main_title"]["title"] and not update.card.get("button_list")
        assert fake.card_views[(wang["task_id"], "wang")] == update.card
        li = fake.cards_to("li")[-1]
        assert li["task_id"] != fake.cards_to("li")[0]["task_id"] and "销售：已通过 王销售" in li["sub_title_text"]

        # 2. 李采购 approves on his first card (still showing buttons: a pushed card is not updated later) — the
        #    same decision as on the fresh one; 3. 张库管 on his latest, which posts the difference.
        old = fake.cards_to("li")[0]
        click = await fake.click("li", old["task_id"], button(old))
        await until(lambda: fake.answers(click) and "李采购" in fake.cards_to("zhang")[-1]["sub_title_text"],
                    "li's card updated and zhang's fresh card", seconds=10)
        zhang = fake.cards_to("zhang")[-1]
        assert len(fake.cards_to("zhang")) == 3  # the first, the one after wang's decision, this one
        click = await fake.click("zhang", zhang["task_id"], button(zhang))
        await until(lambda: fake.answers(click), "zhang's card updated", seconds=10)
        assert "已过账" in fake.answers(click)[0].card["main_title"]["title"]
        await settled(db, fake)
        async with db.read() as s:
            doc = await get_document(s, number)
            trail = (await s.execute(select(ApprovalEvent.action, ApprovalEvent.platform, User.name)
                                     .join(User, User.id == ApprovalEvent.user_id)
                                     .where(ApprovalEvent.action == "approve").order_by(ApprovalEvent.id))).all()
        assert doc.status == "posted"
        assert trail == [("approve", "wecom", "王销售"), ("approve", "wecom", "李采购"), ("approve", "wecom", "张库管")]
        assert fake.errors == []
        assert app[WECOM_LONGCONN].sessions == 1
    finally:
        await client.close()


async def test_a_decision_ready_after_the_click_window_is_pushed_not_updated(db, settings, fake, fast_backoff,
                                                                             monkeypatch):
    """WeCom lets a click's req_id update the card for 5 s: an answer ready later is not tried on it; the
    decided card reaches the decider as a new message instead."""
    monkeypatch.setattr(longconn, "UPDATE_WINDOW", 0.0)
    _app, client, _number = await signoff(db, settings, fake)
    try:
        wang = fake.cards_to("wang")[-1]
        click = await fake.click("wang", wang["task_id"], button(wang))
        await until(lambda: any("王销售 已以「销售」身份通过" in t for t in fake.texts("wang")), "the decided card",
                    seconds=10)
        assert fake.answers(click) == [] and fake.errors == []  # the stale req_id was not even tried
        [decided] = [r for r in fake.replies if r.to == "wang" and "王销售 已以「销售」身份通过" in r.text]
        assert (decided.via, decided.msgtype) == ("push", "markdown")
    finally:
        await client.close()


# -- a newer connection replacing an older one ------------------------------------------------------------------

async def test_a_second_instance_with_the_same_robot_replaces_the_first_without_a_reconnect_storm(
        db, settings, fake, fast_backoff):
    await seed_chat_users(db, settings)
    first, first_client = await serve(settings, db, fake)
    try:
        await fake.wait_subscribed()
        second, second_client = await serve(settings, db, fake)
        try:
            await fake.wait_subscribed(2)
            await until(lambda: first[WECOM_LONGCONN].replaced, "the first told it was replaced")
            await asyncio.sleep(1.5)  # ~15 backoff periods: a client that reconnected would have by now
            assert len(fake.connections) == 2 and fake.subscriptions == 2
            assert [c.how for c in fake.connections] == ["replaced", None]
            assert first[WECOM_LONGCONN].connects == 1 and second[WECOM_LONGCONN].connects == 1
            msgid = await fake.send_text("zhang", "库存 淡奶油")
            await until(lambda: fake.answers(msgid), "the second instance answers", seconds=10)
            assert fake.callbacks[msgid].connections == [2]
        finally:
            await second_client.close()
    finally:
        await first_client.close()
    assert fake.connections[1].how == "client"  # closed by its server's shutdown


async def test_the_fake_replace_knob_stops_the_client(robot):
    app, fake = robot
    await fake.replace()
    await until(lambda: app[WECOM_LONGCONN].replaced, "replaced")
    await asyncio.sleep(1.0)
    assert len(fake.connections) == 1 and not app[WECOM_LONGCONN].connected


async def test_a_refused_subscribe_is_retried_with_backoff_not_in_a_loop(db, settings, fast_backoff):
    async with FakeLongConn(secret="the-real-secret") as fake:
        app = build_app(robot_settings(settings, fake, secret="a-wrong-secret"), db)
        async with TestClient(TestServer(app, host="127.0.0.1")):
            await until(lambda: len(fake.connections) >= 2, "a retry")
            await asyncio.sleep(0.5)
            assert fake.subscriptions == 0 and ("aibot_subscribe", 853000) in fake.errors
            assert len(fake.connections) <= 6  # 0.1 s · 2^n backoff: a handful in a second, not hundreds


# -- config, parsing, media -------------------------------------------------------------------------------------

def test_longconn_config_needs_bot_id_and_secret_and_refuses_callback_keys():
    cfg = wecom_config({"wecom": {"mode": "LongConn", "bot_id": "aib1", "secret": "s"}})
    assert cfg is not None and cfg.longconn and not cfg.has_app and cfg.ws_url == longconn.DEFAULT_WS_URL
    assert wecom_config({"wecom": {"bot_id": "aib1", "secret": "s"}}).longconn  # bot_id alone: long connection
    for table, key in [({"mode": "longconn", "secret": "s"}, "bot_id"),
                       ({"mode": "longconn", "bot_id": "aib1"}, "secret"),
                       ({"mode": "longconn", "bot_id": "aib1", "secret": "s", "corp_id": "ww1"}, "corp_id"),
                       ({"mode": "longconn", "bot_id": "aib1", "secret": "s", "token": "t"}, "token"),
                       ({"mode": "longconn", "bot_id": "aib1", "secret": "s", "ws_url": "http://x"}, "ws_url"),
                       ({"mode": "stream", "bot_id": "aib1", "secret": "s"}, "mode"),
                       ({"mode": "callback", "bot_id": "aib1", "corp_id": "ww1"}, "bot_id")]:
        with pytest.raises(ConfigError) as e:
            wecom_config({"wecom": table})
        assert e.value.key == f"[wecom] {key}", (table, e.value)


def test_longconn_config_from_a_file_and_the_environment(tmp_path):
    path = tmp_path / "jxcbot.toml"
    path.write_text('[wecom]\nmode = "longconn"\nbot_id = "aibXYZ"\n', encoding="utf-8")
    settings = load_config(path, env={"JXCBOT_WECOM_SECRET": "from-env"})
    cfg = wecom_config(settings.raw)
    assert cfg == WeComConfig("", 0, "from-env", "", "", robots={}, mode="longconn", bot_id="aibXYZ")
    assert platforms.people_platforms(settings, cfg, None) >= {"wecom"}
    path.write_text('[wecom]\nmode = "longconn"\nbot_idd = "aibXYZ"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert "bot_idd" in str(e.value) and "bot_id" in str(e.value)


def frame(cmd: str, body: dict) -> dict:
    return {"cmd": cmd, "headers": {"req_id": "R1"}, "body": body}


def test_callback_frames_become_the_neutral_inbound():
    base = {"msgid": "CAIQ/+x=", "aibotid": "AIB", "chattype": "single", "from": {"userid": "zhang"}}
    text = parse_frame(frame("aibot_msg_callback", {**base, "msgtype": "text", "text": {"content": " 库存 面粉 "}}))
    assert (text.text, text.dedupe_key, text.chat_id, dict(text.reply)) == (
        "库存 面粉", "wecom:aibot:zhang:CAIQ/+x=", None, {"req_id": "R1", "event": "message"})
    group = {**base, "chattype": "group", "chatid": "wrc1"}
    said = parse_frame(frame("aibot_msg_callback", {**group, "msgtype": "text", "text": {"content": "@jxcbot 待办"}}))
    assert (said.text, said.chat_id) == ("待办", "wrc1")
    voice = parse_frame(frame("aibot_msg_callback", {**base, "msgtype": "voice", "voice": {"content": "帮助"}}))
    assert voice.text == "帮助"
    mixed = {"msg_item": [{"msgtype": "image", "image": {"url": "https://x/1", "aeskey": "k"}},
                          {"msgtype": "text", "text": {"content": "凭证 PD1"}}]}
    assert parse_frame(frame("aibot_msg_callback", {**base, "msgtype": "mixed", "mixed": mixed})).text == "凭证 PD1"
    image = parse_frame(frame("aibot_msg_callback", {**base, "msgtype": "image",
                                                     "image": {"url": "https://x/2", "aeskey": "k2"}}))
    assert dict(image.image) == {"url": "https://x/2", "aeskey": "k2"}
    nested = {"eventtype": "template_card_event",
              "template_card_event": {"card_type": "button_interaction", "event_key": "approval:1:2:approve",
                                      "task_id": "jxc_9"}}
    click = parse_frame(frame("aibot_event_callback", {**base, "msgtype": "event", "event": nested}))
    assert (click.action, dict(click.reply)) == ("approval:1:2:approve",
                                                 {"req_id": "R1", "event": "card", "card_id": "jxc_9"})
    flat = {"eventtype": "template_card_event", "event_key": "k", "task_id": "t"}
    assert parse_frame(frame("aibot_event_callback", {**base, "msgtype": "event", "event": flat})).action == "k"
    for ignored in (frame("aibot_event_callback", {**base, "msgtype": "event", "event": {"eventtype": "enter_chat"}}),
                    frame("aibot_msg_callback", {**base, "msgtype": "file", "file": {"url": "u", "aeskey": "k"}}),
                    frame("aibot_msg_callback", {"msgtype": "text", "text": {"content": "no msgid, no sender"}})):
        assert parse_frame(ignored) is None


def test_media_decrypts_with_the_messages_key_and_refuses_another():
    key = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    for size in (1, 31, 32, 33, 1000):
        data = os.urandom(size)
        assert decrypt_media(encrypt_media(data, key), key) == data
    other = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(ValueError):
        decrypt_media(encrypt_media(b"x" * 100, key), other)


async def test_replies_and_pushes_on_a_raw_client(fake):
    """The client and transport against the fake without the server: a reply on the callback, a second reply to
    the same message pushed, a text pushed to a user, an image uploaded in chunks and pushed."""
    from cards.model import Message
    from core.messaging.targets import Target
    received = []

    async def accept(event) -> bool:
        received.append(event)
        return True

    async with aiohttp.ClientSession() as session:
        client = longconn.LongConnClient(session, fake.bot_id, fake.secret, accept, url=fake.url)
        task = asyncio.create_task(client.run())
        try:
            await fake.wait_subscribed()
            msgid = await fake.send_text("wang", "你好")
            await until(lambda: received, "the callback")
            transport = longconn.LongConnTransport(client)
            reply = Target("wecom", "aibot", received[0].reply["req_id"], fallback=Target("wecom", "user", "wang"))
            await transport.send(reply, Message("text", text="第一条"))
            await transport.send(reply, Message("text", text="第二条"))
            png = b"\x89PNG\r\n\x1a\n" + os.urandom(longconn.CHUNK + 100)  # two chunks
            await transport.send(Target("wecom", "user", "wang"), Message("image", png=png))
            vias = [(r.via, r.msgtype, r.text) for r in fake.replies]
            assert vias[:2] == [("respond", "stream", "第一条"), ("push", "markdown", "第二条")]
            assert vias[2][:2] == ("push", "image")
            [(kind, _name, data)] = fake.media.values()
            assert (kind, data) == ("image", png) and fake.answers(msgid)[0].text == "第一条"
        finally:
            await client.stop()
            await asyncio.wait_for(task, 5)


async def test_a_short_soak_through_jxcbot_serve_answers_every_message_once(tmp_path):
    """bench.wecom_longconn at a small size: `jxcbot serve` in its own process on 127.0.0.1, 150 messages over
    4 s from 10 users while the fake cuts the connection every 1.5 s; every message answered exactly once."""
    from bench import wecom_longconn as bench
    from tests.conftest import test_database_url

    result = await bench.soak(test_database_url(tmp_path), 4.0, 150, 1.5, 10)
    assert bench.ok(result), result
    assert result["cuts"] >= 2 and result["subscriptions"] == result["cuts"] + 1
    assert result["on_callback"] + result["pushed"] == 150


def test_scan_required_lines_are_typed_as_barcode_and_batch_on_the_robot(settings):
    """The intelligent robot has no 扫码 menu (no scancode_waitmsg): a scan-required line is typed as the exact
    barcode and batch, as on DingTalk; the self-built app still requires the scan."""
    from core.errors import DomainError
    from core.ledger.scan import require_scanned, wecom_scans
    from core.models import Product

    milk = Product(sku="MILK", name="牛奶", barcode="6900000000028", stock_unit="瓶", batch_tracked=True)
    robot = replace(settings, raw=MappingProxyType({"wecom": {"mode": "longconn", "bot_id": "b", "secret": "s"}}))
    app = replace(settings, raw=MappingProxyType({"wecom": {"corp_id": "ww1", "agent_id": 1}}))
    assert not wecom_scans(robot) and wecom_scans(app) and wecom_scans(settings)
    assert require_scanned(robot, "borrow", "wecom", "6900000000028", milk, "B1", scanned=False) == "text"
    with pytest.raises(DomainError) as e:
        require_scanned(robot, "borrow", "wecom", "牛奶", milk, "B1", scanned=False)
    assert "完整条码" in e.value.fix_zh
    with pytest.raises(DomainError) as e:
        require_scanned(app, "borrow", "wecom", "6900000000028", milk, "B1", scanned=False)
    assert "应用菜单" in e.value.fix_zh
