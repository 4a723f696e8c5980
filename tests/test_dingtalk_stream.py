"""DingTalk Stream mode through the whole server (served on 127.0.0.1, no public URL) against the local fake
gateway and the fake DingTalk API: messages and card clicks stored before their ack, one effect per message
through lost acks, network cuts and server-side disconnects, several instances, and a bounded soak."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.dingtalk.stream import SUBSCRIPTIONS, Backoff, StreamClient, ack_frame
from bot.inbound import Inbound
from bot.platforms import DINGTALK_STREAM, dingtalk_config
from bot.server import DISPATCHER, build_app
from core.config import ConfigError
from core.ledger.documents import get_document
from core.models import ApprovalEvent, InboundEvent, User
from tests.factories import line, post, seed, seed_stocked
from tests.fakes.dingtalk_stream import TOPIC_ROBOT, FakeDingTalkStream
from tests.test_platform_approvals import discrepancy_without_photo
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


# -- cuts, disconnects, several instances ----------------------------------------------------------------------


async def test_a_network_cut_mid_conversation_reconnects_and_loses_nothing(bot, fake, db):
    """Messages before the cut (one whose ack is lost with the connection), during it and after it: each is
    answered once; the client came back on a fresh ticket."""
    first = [fake.text_message(QUERY, staff_id="manager01", msg_id=f"cut-a{i}") for i in range(3)]
    for p in first:
        fake.stream.message(p)
    await until(lambda: len(replies(fake)) == 3, "the answers before the cut")
    fake.stream.lose_acks(1)
    lost = fake.stream.message(fake.text_message(QUERY, staff_id="manager01", msg_id="cut-lost"))
    await until(lambda: fake.stream.lost_acks, "the ack lost")
    assert fake.stream.cut() == 1
    during = [fake.text_message(QUERY, staff_id="manager01", msg_id=f"cut-b{i}") for i in range(3)]
    for p in during:
        fake.stream.message(p)
    await until(lambda: fake.stream.live(), "the reconnection", seconds=8)
    after = fake.text_message(QUERY, staff_id="manager01", msg_id="cut-c")
    fake.stream.message(after)
    await fake.stream.settled(8)
    await until(lambda: len(replies(fake)) == 8, "every answer")
    await asyncio.sleep(0.5)
    assert set(replies(fake).values()) == {1} and await events(db) == 8
    assert lost.attempts == 2 and len(fake.stream.connections) == 2 and len(fake.stream.opens) == 2
    assert fake.stream.connections[0].how == "cut" and fake.stream.refused_tickets == 0
    assert bot.server.app[DINGTALK_STREAM].stats.lost == 1


async def test_a_server_side_disconnect_makes_one_reconnection(bot, fake, db):
    """The gateway's SYSTEM disconnect: the client opens one new connection (a fresh ticket) and leaves the
    old one; no storm of connections; a message after it is answered on the new connection."""
    old = fake.stream.live()[0]
    await fake.stream.disconnect()
    await until(lambda: fake.stream.live(), "the new connection")
    await until(lambda: old.state == "closed", "the old connection closed")
    payload = fake.text_message(QUERY, staff_id="manager01", msg_id="disc-1")
    pending = fake.stream.message(payload)
    await asyncio.wait_for(pending.acked.wait(), 5)
    await asyncio.sleep(2.0)  # past the gateway's grace for the old connection, and then some
    assert len(fake.stream.connections) == 2 and len(fake.stream.opens) == 2
    assert old.how == "client"  # the client closed it at once, before the gateway's 1 s grace ran out
    assert pending.connections == [2]
    await until(lambda: replies(fake), "the reply")
    assert replies(fake) == {session_of(payload): 1}
    stats = bot.server.app[DINGTALK_STREAM].stats
    assert (stats.disconnects, stats.lost, stats.connections) == (1, 0, 2)


async def test_several_instances_each_hold_a_connection_and_every_message_is_answered_once(db, settings, fake):
    """Two servers on one database, each with its Stream connection; the gateway picks one at random for
    every frame and redelivers lost acks, maybe to the other: one answer per message."""
    await _seed(db, settings)
    apps = [build_app(replace(settings, raw=_raw(fake)), db) for _ in range(2)]
    async with TestClient(TestServer(apps[0], host="127.0.0.1")), TestClient(TestServer(apps[1], host="127.0.0.1")):
        await until(lambda: len(fake.stream.live()) == 2, "two connections")
        fake.stream.lose_acks(5)
        payloads = [fake.text_message(QUERY, staff_id="manager01", msg_id=f"multi-{i}") for i in range(30)]
        pendings = [fake.stream.message(p) for p in payloads]
        await fake.stream.settled(10)
        await until(lambda: len(replies(fake)) == 30, "every answer")
        await asyncio.sleep(0.5)
        assert set(replies(fake).values()) == {1} and await events(db) == 30
        used = Counter(n for p in pendings for n in p.connections)
        assert set(used) == {1, 2}  # both instances took messages
        stats = [a[DINGTALK_STREAM].stats for a in apps]
        assert sum(s.stored for s in stats) == 30 and sum(s.duplicates for s in stats) == 5
        assert all(s.stored for s in stats)


# -- card clicks ------------------------------------------------------------------------------------------------


JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


@pytest.fixture
async def approvals(db, settings, fake):
    """The bot in Stream mode with interactive cards, the three roles of a discrepancy sign-off on DingTalk."""

    async def setup(s) -> None:
        await seed(s)
        zhang = (await s.execute(select(User).where(User.name == "张库管"))).scalar_one()
        zhang.dingtalk_staff_id = "zhang01"
        s.add_all([User(name="李采购", roles="purchasing", dingtalk_staff_id="li01"),
                   User(name="赵销售", roles="sales", dingtalk_staff_id="zhao01")])
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")

    await db.write(setup)
    app = build_app(replace(settings, raw=_raw(fake, card_template_id="tpl.approval")), db)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await until(lambda: fake.stream.live(), "the stream connection")
        yield client


def card_of(fake: FakeDingTalkStream, staff_id: str):
    """The newest 1:1 card of `staff_id` that still has an 同意 button (None when there is none)."""
    cards = [c for c in fake.cards.values() if c.space_type == "IM_ROBOT" and c.space_id == staff_id
             and "同意" in c.params.get("buttons", "")]
    return cards[-1] if cards else None


def approve_key(card) -> str:
    return next(b["key"] if "key" in b else b["action"] for b in json.loads(card.params["buttons"])
                if b.get("text") == "同意")


async def test_card_clicks_over_the_stream_decide_a_discrepancy(approvals, fake, db, settings):
    """张库管 sends the 凭证 and the photo over the stream; the sign-off cards (callbackType STREAM, no callback
    registered) go to the three roles; three clicks over the stream — one of them redelivered after a lost
    ack — decide it: every card shows each decision and the difference is posted once."""
    number = await discrepancy_without_photo(db, settings)
    fake.stream.message(fake.text_message(f"凭证 {number}", staff_id="zhang01", msg_id="ap-1"))
    await until(lambda: any("凭证照片" in str(s.payload) for s in fake.sent), "the 凭证 answer")
    fake.stream.message(fake.picture_message(fake.user_picture(JPEG), staff_id="zhang01", msg_id="ap-2"))
    await until(lambda: all(card_of(fake, u) for u in ("zhao01", "li01", "zhang01")), "the sign-off cards")
    zhao, li, zhang = card_of(fake, "zhao01"), card_of(fake, "li01"), card_of(fake, "zhang01")
    assert {c.callback_type for c in fake.cards.values()} == {"STREAM"} and fake.callbacks == {}

    first = fake.stream_click(zhao.out_track_id, "zhao01", approve_key(zhao))
    await asyncio.wait_for(first.acked.wait(), 5)
    await until(lambda: "赵销售 已以「销售」身份通过" in zhao.params["title"]
                and "销售：已通过 赵销售" in li.params["content"], "the cards updated after the first decision")

    fake.stream.lose_acks(1)  # the second click's ack is lost: the gateway sends it again
    second = fake.stream_click(li.out_track_id, "li01", approve_key(li))
    await asyncio.wait_for(second.acked.wait(), 5)
    assert second.attempts == 2
    await until(lambda: "李采购 已以「采购」身份通过" in li.params["title"]
                and "采购：已通过 李采购" in card_of(fake, "zhang01").params["content"],
                "the cards updated after the second decision")
    zhang = card_of(fake, "zhang01")

    third = fake.stream_click(zhang.out_track_id, "zhang01", approve_key(zhang))
    await asyncio.wait_for(third.acked.wait(), 5)
    await until(lambda: all("已过账" in c.params["title"] for c in (zhao, li, zhang)), "the final state")
    async with db.read() as s:
        doc = await get_document(s, number)
        trail = (await s.execute(select(ApprovalEvent.action, ApprovalEvent.platform, User.name)
                                 .join(User, User.id == ApprovalEvent.user_id, isouter=True)
                                 .order_by(ApprovalEvent.id))).all()
    assert doc.status == "posted"
    assert [t for t in trail if t[0] == "approve"] == [
        ("approve", "dingtalk", "赵销售"), ("approve", "dingtalk", "李采购"), ("approve", "dingtalk", "张库管")]


# -- the client on its own: backoff, refusals, shutdown ------------------------------------------------------------


def test_backoff_grows_is_capped_and_jittered():
    b = Backoff(first=1.0, factor=2.0, cap=60.0)
    for attempt, base in ((0, 1.0), (1, 2.0), (3, 8.0), (10, 60.0), (100, 60.0)):
        delays = [b.delay(attempt) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays) and len(set(delays)) > 100, attempt


async def _accept_nothing(_event: Inbound) -> bool:
    return True


async def test_refused_opens_are_retried_with_growing_pauses_each_on_a_fresh_ticket(fake):
    fake.fail("streamOpen", 503, times=4)
    client = StreamClient(None, fake.app_key, fake.app_secret, _accept_nothing, api_base=fake.url,
                          backoff=Backoff(first=0.1, factor=2.0, cap=5.0))
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: fake.stream.live(), "the connection after the refusals", seconds=8)
        tries = [t for t, _m, path in fake.calls if path == "/v1.0/gateway/connections/open"]
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        assert len(tries) == 5 and client.stats.refused == 4 and client.stats.connections == 1
        for i, gap in enumerate(gaps):  # 0.05–0.1, 0.1–0.2, 0.2–0.4, 0.4–0.8 s (plus the request's time)
            assert 0.1 * 2 ** i / 2 <= gap <= 0.1 * 2 ** i + 0.25, gaps
        fake.stream.cut()
        await until(lambda: len(fake.stream.connections) == 2 and fake.stream.live(), "the reconnection")
        assert len(fake.stream.opens) == 2 and fake.stream.refused_tickets == 0
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)


async def test_bad_credentials_are_logged_as_errors_and_stop_ends_the_waiting(fake, caplog):
    client = StreamClient(None, fake.app_key, "wrong-secret", _accept_nothing, api_base=fake.url,
                          backoff=Backoff(first=30.0))
    with caplog.at_level(logging.ERROR, logger="bot.dingtalk.stream"):
        task = asyncio.create_task(client.run())
        await until(lambda: fake.stream.refused_opens, "the refusal")
        await until(lambda: "invalidClientIdOrSecret" in caplog.text, "the error logged")
        started = time.monotonic()
        await client.stop()
        await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2 and fake.stream.connections == []


async def test_shutdown_closes_the_connection_and_the_stream_task_ends(db, settings, fake):
    await _seed(db, settings)
    app = build_app(replace(settings, raw=_raw(fake)), db)
    async with TestClient(TestServer(app, host="127.0.0.1")):
        await until(lambda: fake.stream.live(), "the stream connection")
        assert any(t.get_name() == "dingtalk stream" for t in asyncio.all_tasks())
    await until(lambda: fake.stream.connections[0].state == "closed", "the connection closed")
    assert fake.stream.connections[0].how == "client" and len(fake.stream.connections) == 1
    assert not any(t.get_name() == "dingtalk stream" for t in asyncio.all_tasks())


async def test_ack_frames_have_the_documented_shape():
    assert ack_frame("mid1") == {"code": 200, "headers": {"contentType": "application/json", "messageId": "mid1"},
                                 "message": "OK", "data": "null"}
    assert json.loads(ack_frame("m", data={"response": None})["data"]) == {"response": None}
    assert ack_frame("m", data='{"opaque": "x"}')["data"] == '{"opaque": "x"}'  # a ping's data echoed as is


# -- soak (bounded) -----------------------------------------------------------------------------------------------


async def test_a_bounded_soak_with_cuts_answers_every_message_exactly_once(bot, fake, db):
    """300 messages over 6 s while the gateway cuts the connection mid-frame every 1.5 s (the full soak is
    `python -m bench.dingtalk_stream`): every message acknowledged and answered exactly once."""
    fake.stream.ack_timeout = 1.0
    cutter = fake.stream.cut_every(1.5)
    payloads = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(300):
        await asyncio.sleep(max(0.0, t0 + i * 0.02 - loop.time()))
        payloads.append(fake.text_message(QUERY, staff_id="manager01", msg_id=f"soak-{i}"))
        fake.stream.message(payloads[-1])
    cutter.cancel()
    await fake.stream.settled(20)
    await until(lambda: len(replies(fake)) == 300, "every answer", seconds=20)
    await asyncio.sleep(0.5)
    assert replies(fake) == {session_of(p): 1 for p in payloads} and await events(db) == 300
    cuts = sum(1 for c in fake.stream.connections if c.how == "cut")
    assert cuts >= 3 and len(fake.stream.connections) == cuts + 1 == len(fake.stream.opens)
    assert sum(p.attempts - 1 for p in fake.stream.pending) >= 1  # cuts mid-frame made the gateway send again
    assert not fake.stream.bad_frames
