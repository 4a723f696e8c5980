"""Multi-part messages: split at enqueue time into one outbox row per send, each part delivered once, in order."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.dingtalk import client as dingtalk_client
from bot.dispatch import Dispatcher
from bot.inbound import Inbound
from bot.outbox_sender import OutboxSender, SenderSettings
from bot.tasks import TaskTracker
from bot.transport import SendError
from bot.wecom import client as wecom_client
from bot.wecom.client import APP_MARKDOWN_LIMIT, ROBOT_MARKDOWN_LIMIT, TEXT_LIMIT, WeComClient
from cards import parts
from cards.dingtalk import KEYWORD_RESERVE, MSG_PARAM_MAX_BYTES, WEBHOOK_MAX_BYTES, webhook_bodies
from cards.model import Button, Message, text
from cards.split import split_utf8
from core.messaging import outbox
from core.messaging.outbound import enqueue
from core.messaging.targets import Target
from core.models import OutboxMessage
from core.storage import Database
from tests.fakes.wecom import PATH_SEND, FakeWeCom, Fault
from tests.test_outbox import T0, Clock, FakeTransport, MaxJitter, drain

WECOM_USER = Target("wecom", "user", "zhang")
WECOM_ROBOT = Target("wecom", "robot", "warehouse")
TARGETS = [WECOM_USER, WECOM_ROBOT, Target("dingtalk", "user", "staff1"), Target("dingtalk", "group", "cid=="),
           Target("dingtalk", "robot", "alerts"),
           Target("dingtalk", "session", "https://oapi.dingtalk.com/robot/sendBySession?session=s", 10**13),
           Target("console", "user", "张库管")]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def long_text(lines: int = 300) -> str:
    return "\n".join(f"第{i}行：奶油 {i} 箱，\"引号\" 反斜杠\\ 😀" for i in range(lines))


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.read() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


# -- splitting -----------------------------------------------------------------------------------------


def test_wecom_parts_fit_the_limits_and_rejoin() -> None:
    body = long_text()
    app = parts.split_message(WECOM_USER, Message("text", title="库存", text=body))
    assert len(app) > 1 and all(p.kind == "text" and not p.title for p in app)
    assert all(len(p.text.encode()) <= TEXT_LIMIT for p in app)
    assert "".join(p.text for p in app) == "库存\n" + body
    md = parts.split_message(WECOM_USER, Message("markdown", title="预警", text=body))
    assert all(len(p.text.encode()) <= APP_MARKDOWN_LIMIT for p in md) and "".join(p.text for p in md) == \
        "**预警**\n" + body
    robot = parts.split_message(WECOM_ROBOT, Message("markdown", title="预警", text=body))
    assert len(robot) < len(md) and all(len(p.text.encode()) <= ROBOT_MARKDOWN_LIMIT for p in robot)


def test_dingtalk_parts_fit_the_limits() -> None:
    body = long_text(1200)
    for target in TARGETS[2:6]:
        pieces = parts.split_message(target, Message("markdown", title="日报", text=body))
        assert len(pieces) > 1 and "".join(p.text for p in pieces) == body
        assert all(p.kind == "markdown" and p.title == "日报" for p in pieces)
        for p in pieces:
            size = len(json.dumps({"title": p.title, "text": p.text}, ensure_ascii=False,
                                  separators=(",", ":")).encode())
            if target.kind in ("user", "group"):
                assert size <= MSG_PARAM_MAX_BYTES
            else:
                [wire] = webhook_bodies(p)
                assert len(json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode()) <= \
                    WEBHOOK_MAX_BYTES - (KEYWORD_RESERVE if target.kind == "robot" else 0)
    keyword = "进销存" * 20  # a robot keyword added when sent still leaves each part one body
    for p in parts.split_message(TARGETS[4], Message("text", text=body)):
        assert len(webhook_bodies(p, keyword=keyword)) == 1


def test_images_cards_and_console() -> None:
    image = Message("image", title="近30天趋势", png=PNG)
    assert [p.kind for p in parts.split_message(WECOM_USER, image)] == ["text", "image"]
    assert parts.split_message(WECOM_USER, image)[1] == Message("image", png=PNG)
    assert [p.kind for p in parts.split_message(TARGETS[2], image)] == ["text", "image"]
    assert parts.split_message(TARGETS[5], image) == [image]  # a session sends it as one markdown
    card = Message("card", title="审批", text="请审批", buttons=(Button("同意", "approval:1:1:approve"),))
    assert parts.split_message(WECOM_USER, card) == [card]
    assert parts.split_message(TARGETS[2], card) == [card]
    [md] = parts.split_message(WECOM_ROBOT, card)  # robots cannot click: markdown with what to do
    assert md.kind == "markdown" and "可选操作：同意" in md.text
    assert parts.split_message(TARGETS[6], Message("text", text=long_text())) == [Message("text", text=long_text())]


message_st = st.builds(
    Message, kind=st.sampled_from(["text", "markdown", "card"]),
    text=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=3000).map(
        lambda t: t * 4),
    title=st.text(max_size=20))


@settings(max_examples=60, deadline=None)
@given(message=message_st, target=st.sampled_from(TARGETS))
def test_a_part_is_its_own_only_part(message: Message, target: Target) -> None:
    """What the outbox stores per part is sent by the client in exactly one call."""
    for part in parts.split_message(target, message):
        assert parts.split_message(target, part) == [part]


def test_one_split_implementation() -> None:
    assert wecom_client.split_utf8 is dingtalk_client.split_utf8 is split_utf8


# -- enqueue -------------------------------------------------------------------------------------------


async def test_a_long_reply_becomes_one_row_per_part(db: Database) -> None:
    body = long_text()
    expected = parts.split_message(WECOM_USER, text(body))
    assert await db.write(lambda s: enqueue(s, "report:1", WECOM_USER, text(body), T0, split=parts.split_message))
    stored = await rows(db)
    n = len(expected)
    assert n > 2 and [r.dedupe_key for r in stored] == ["report:1", *(f"report:1#{i}" for i in range(2, n + 1))]
    messages = [json.loads(r.message) for r in stored]
    assert [m["part"] for m in messages] == [{"key": "report:1", "n": i, "of": n} for i in range(1, n + 1)]
    assert [Message.from_json(m) for m in messages] == expected
    assert not await db.write(lambda s: enqueue(s, "report:1", WECOM_USER, text(body + "!"), T0,
                                                split=parts.split_message))
    assert len(await rows(db)) == n
    assert await db.write(lambda s: enqueue(s, "short", WECOM_USER, text("ok"), T0, split=parts.split_message))
    assert "part" not in json.loads((await rows(db))[-1].message)


async def test_dispatcher_queues_a_long_reply_as_parts(db: Database, settings) -> None:
    tracker = TaskTracker()
    dispatcher = Dispatcher(db, settings, tracker, clock=lambda: T0)
    body = long_text()

    async def replies(event: Inbound) -> list[Message]:
        return [text(body), text("第二条")]

    dispatcher._route = replies  # type: ignore[method-assign]
    assert await dispatcher.accept(Inbound("wecom", "zhang", "wecom:zhang:m1", T0, text="库存 奶油"))
    await tracker.close()
    await dispatcher.close()
    keys = [r.dedupe_key for r in await rows(db)]
    n = len(parts.split_message(WECOM_USER, text(body)))
    assert keys == ["reply:wecom:zhang:m1:0", *(f"reply:wecom:zhang:m1:0#{i}" for i in range(2, n + 1)),
                    "reply:wecom:zhang:m1:1"]


# -- sending -------------------------------------------------------------------------------------------


def failing_once(predicate):
    failed: list[str] = []

    def fail(target: Target, message: Message) -> SendError | None:
        if predicate(message) and message.text not in failed:
            failed.append(message.text)
            return SendError("busy", retryable=True, code=-1)
        return None
    return fail


@pytest.mark.parametrize("batch_size", [10, 1, 2])
async def test_failed_part_is_retried_alone_and_parts_stay_in_order(db: Database, batch_size: int) -> None:
    body = long_text()
    expected = [p.text for p in parts.split_message(WECOM_USER, text(body))]
    await db.write(lambda s: enqueue(s, "r", WECOM_USER, text(body), T0, split=parts.split_message))
    await db.write(lambda s: enqueue(s, "other", WECOM_ROBOT, text("别的目标"), T0, split=parts.split_message))
    wecom = FakeTransport("wecom", fail=failing_once(lambda m: m.text == expected[1]))
    clock = Clock()
    sender = OutboxSender(db, {"wecom": wecom}, clock=clock, rng=MaxJitter(),
                          settings=SenderSettings(batch_size=batch_size, lease_seconds=300, send_timeout=5))
    await drain(sender, clock)
    to_user = [t for a, t in wecom.sent if a == "zhang"]
    assert to_user == expected  # each part once, in order, part 3+ only after the retried part 2
    assert ("warehouse", "别的目标") in wecom.sent
    stored = {r.dedupe_key: r for r in await rows(db)}
    assert {r.status for r in stored.values()} == {"sent"}
    assert stored["r#2"].attempts == 2 and all(r.attempts == 1 for k, r in stored.items() if k != "r#2")
    assert stored["r#3"].sent_at >= stored["r#2"].sent_at


async def test_a_dead_part_does_not_hold_the_rest_forever(db: Database) -> None:
    body = long_text()
    expected = [p.text for p in parts.split_message(WECOM_USER, text(body))]
    await db.write(lambda s: enqueue(s, "r", WECOM_USER, text(body), T0, split=parts.split_message))
    wecom = FakeTransport("wecom", fail=lambda t, m: SendError("too long", retryable=False, code=45002)
                          if m.text == expected[1] else None)
    clock = Clock()
    await drain(OutboxSender(db, {"wecom": wecom}, clock=clock, rng=MaxJitter()), clock)
    assert [t for _, t in wecom.sent] == [expected[0], *expected[2:]]
    assert [r.status for r in await rows(db)][:3] == ["sent", "dead", "sent"]


async def test_a_part_waits_for_its_predecessor_claimed_elsewhere(db: Database) -> None:
    """Another sender holds part 1 (claimed, not yet reported): part 2 is given back, not sent ahead of it."""
    await db.write(lambda s: enqueue(s, "r", WECOM_USER, text(long_text()), T0, split=parts.split_message))
    clock = Clock()
    [held] = await db.write(lambda s: outbox.claim_due(s, T0, 1, 300))  # "the other sender" claims part 1
    assert held.dedupe_key == "r"
    wecom = FakeTransport("wecom")
    second = OutboxSender(db, {"wecom": wecom}, clock=clock, rng=MaxJitter())
    assert await second.run_once() == 0 and wecom.sent == []
    pending = {r.dedupe_key: r for r in await rows(db)}
    assert pending["r#2"].status == "pending" and pending["r#2"].next_attempt_at > T0
    assert pending["r#2"].attempts == 0


@pytest.fixture
async def wecom_fake() -> AsyncIterator[FakeWeCom]:
    async with FakeWeCom(users={"zhang"}) as f:
        yield f


async def test_wecom_part_failure_through_the_fake_sends_no_duplicates(db: Database, wecom_fake: FakeWeCom) -> None:
    body = long_text()
    await db.write(lambda s: enqueue(s, "stock:report", WECOM_USER, text(body), T0, split=parts.split_message))
    n = len(await rows(db))
    wecom_fake.inject(PATH_SEND, Fault(), Fault(errcode=45009))  # part 1 goes, part 2 hits the frequency limit
    clock = Clock()
    async with aiohttp.ClientSession() as http:
        client = WeComClient(http, wecom_fake.corp_id, wecom_fake.agent_id, wecom_fake.secret, wecom_fake.base_url,
                             timeout=2)
        sender = OutboxSender(db, {"wecom": client}, clock=clock, rng=MaxJitter())
        await drain(sender, clock)
    sent = [m["text"]["content"] for m in wecom_fake.messages]
    assert len(sent) == n and "".join(sent) == body and not [t for t, c in Counter(sent).items() if c > 1]
    assert clock.now >= T0 + timedelta(seconds=5)  # part 2 waited for its backoff, and the rest behind it
