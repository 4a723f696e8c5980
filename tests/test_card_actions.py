"""Card actions: @action registration, routing a button key by its prefix (find_action), and the dispatcher's
answers to a click — the action's replies, an unknown or stale key, a missing role."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot import dispatch
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from cards.model import text
from core.models import Document, InboundEvent, OutboxMessage, User
from handlers import registry
from tests.factories import line, post, seed

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
ZHANG = {"platform": "wecom", "kind": "user", "address": "zhang"}
LI = {"platform": "wecom", "kind": "user", "address": "li"}
STALE = "这个按钮已失效或无法识别"


class Clicks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, bool]] = []  # (action, rest, clicker, had a unit of work)


@pytest.fixture
def actions():
    """Test-only actions in the real registry (ACTIONS, a dict by prefix), removed afterwards:
    测试卡 (open to all, writes: posts a receipt when its key ends in :receive), 测试卡片 (a longer word that
    starts like it; read-only), 测试签 (managers only)."""
    clicks = Clicks()
    before = dict(registry.ACTIONS)

    @registry.action("测试卡", summary="测试卡片按钮")
    async def card(ctx, rest):
        clicks.calls.append(("测试卡", rest, ctx.sender.name, ctx.session is not None))
        if rest.endswith(":receive"):
            await post(ctx.unit, ctx.settings, "purchase_receipt", [line("CREAM", 1, "kg")], warehouse="WH1",
                       supplier="SUP1")
        return [text(f"测试卡 {rest}")]

    @registry.action("测试卡片", summary="另一个按钮", writes=False)
    async def longer(ctx, rest):
        clicks.calls.append(("测试卡片", rest, ctx.sender.name, ctx.session is not None))
        return [text(f"测试卡片 {rest}")]

    @registry.action("测试签", summary="测试签核", roles=("manager",))
    async def sign(ctx, rest):
        clicks.calls.append(("测试签", rest, ctx.sender.name, ctx.session is not None))
        return [text(f"已签 {rest}")]

    yield clicks
    for prefix in ("测试卡", "测试卡片", "测试签"):
        registry.ACTIONS.pop(prefix)
    assert registry.ACTIONS == before


@pytest.fixture
async def seeded(db):
    """seed() (张库管, warehouse, WeCom "zhang") plus 李经理 (manager, "li") and 王管理 (admin, "wang")."""

    async def work(s) -> None:
        await seed(s)
        s.add_all([User(name="李经理", department="管理部", roles="manager", wecom_user_id="li"),
                   User(name="王管理", department="信息部", roles="admin", wecom_user_id="wang")])

    await db.write(work)
    return db


def click(key: str, dedupe: str, user: str = "zhang") -> Inbound:
    return Inbound("wecom", user, dedupe, NOW, action=key)


async def dispatch_all(db, settings, *events: Inbound, at: datetime = NOW) -> dispatch.Dispatcher:
    tracker = TaskTracker()
    d = dispatch.Dispatcher(db, settings, tracker, clock=lambda: at)
    for e in events:
        assert await d.accept(e)
    await tracker.close()
    await d.close()
    return d


async def replies(db) -> dict[str, tuple[dict, str]]:
    """dedupe key → (target, text) of every outbox row."""
    async with db.read() as s:
        found = (await s.execute(select(OutboxMessage))).scalars()
        return {r.dedupe_key: (json.loads(r.target), json.loads(r.message)["text"]) for r in found}


async def statuses(db) -> dict[str, str]:
    async with db.read() as s:
        return {e.dedupe_key: e.status for e in (await s.execute(select(InboundEvent))).scalars()}


async def documents(db) -> int:
    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(Document))).scalar_one()


# -- registration and find_action ------------------------------------------------------------------------


def test_an_action_is_registered_under_its_prefix_with_its_roles_and_writing_by_default(actions):
    card, longer, sign = (registry.ACTIONS[p] for p in ("测试卡", "测试卡片", "测试签"))
    assert (card.prefix, card.summary, card.roles, card.writes) == ("测试卡", "测试卡片按钮", frozenset(), True)
    assert longer.writes is False
    assert sign.roles == frozenset({"manager"})


def test_find_action_routes_by_the_word_before_the_first_colon(actions):
    found = registry.find_action("测试卡:12:1:approve")
    assert found is not None and found[0] is registry.ACTIONS["测试卡"] and found[1] == "12:1:approve"
    # a longer prefix word is its own action, not the shorter one it starts with (and vice versa)
    found = registry.find_action("测试卡片:7")
    assert found is not None and found[0] is registry.ACTIONS["测试卡片"] and found[1] == "7"
    assert registry.find_action("测试:7") is None
    assert registry.find_action("测试卡片子:7") is None
    assert registry.find_action("nosuch:1") is None
    assert registry.find_action("") is None
    found = registry.find_action("测试签:")
    assert found is not None and found[1] == ""


def test_an_action_prefix_is_one_word_and_taken_once(actions):
    for bad in ("", "a:b"):
        with pytest.raises(ValueError, match="one word without ':'"):
            registry.action(bad, summary="x")
    with pytest.raises(ValueError, match="action prefix already taken: '测试卡'"):
        registry.action("测试卡", summary="again")(lambda ctx, rest: None)
    assert registry.ACTIONS["测试卡"].summary == "测试卡片按钮"  # the first one stays


# -- the dispatcher ---------------------------------------------------------------------------------------


async def test_a_click_runs_its_action_with_the_rest_of_the_key_in_a_unit_of_work(seeded, settings, actions):
    await dispatch_all(seeded, settings, click("测试卡:42:receive", "c1"), click("测试卡片:7", "c2"))
    assert sorted(actions.calls) == [("测试卡", "42:receive", "张库管", True), ("测试卡片", "7", "张库管", False)]
    assert await replies(seeded) == {"reply:c1:0": (ZHANG, "测试卡 42:receive"),
                                     "reply:c2:0": (ZHANG, "测试卡片 7")}
    assert await documents(seeded) == 1  # the writing action's posting committed with its reply
    assert await statuses(seeded) == {"c1": "done", "c2": "done"}


async def test_a_click_on_a_key_no_action_declares_is_told_the_button_is_stale(seeded, settings, actions):
    long_key = "oldfeature:" + "9" * 60
    await dispatch_all(seeded, settings, click("oldfeature:12:go", "c1"), click(long_key, "c2"),
                       click("测试:1", "c3"))
    got = await replies(seeded)
    assert got["reply:c1:0"] == (ZHANG, "这个按钮已失效或无法识别（oldfeature:12:go）。卡片可能来自旧版本或已被处理，"
                                        "请发送「帮助」查看可用的命令。")
    target, body = got["reply:c2:0"]
    assert target == ZHANG and body.startswith(f"{STALE}（{long_key[:40]}…）")  # a long key is shortened
    assert got["reply:c3:0"][1].startswith(f"{STALE}（测试:1）")
    assert actions.calls == []
    assert await statuses(seeded) == {"c1": "done", "c2": "done", "c3": "done"}  # answered, not failed


async def test_a_button_key_sent_as_text_is_no_click(seeded, settings, actions):
    await dispatch_all(seeded, settings, Inbound("wecom", "zhang", "t1", NOW, text="测试卡:1"))
    assert actions.calls == []
    assert (await replies(seeded))["reply:t1:0"][1].startswith("没有看懂「测试卡:1」")


async def test_a_clicker_without_the_role_is_refused_with_the_role_named(seeded, settings, actions):
    await dispatch_all(seeded, settings, click("测试签:DOC1", "c1"), click("测试签:DOC2", "c2", user="li"),
                       click("测试签:DOC3", "c3", user="wang"))
    got = await replies(seeded)
    assert got["reply:c1:0"] == (ZHANG, "这个按钮（测试签核）需要以下角色之一：主管。如需开通请联系管理员。")
    assert got["reply:c2:0"] == (LI, "已签 DOC2")
    assert got["reply:c3:0"][1] == "已签 DOC3"  # an admin may click every button
    # 张库管's click ran nothing
    assert sorted(actions.calls) == [("测试签", "DOC2", "李经理", True), ("测试签", "DOC3", "王管理", True)]


async def test_a_click_from_an_unregistered_user_runs_nothing(seeded, settings, actions):
    await dispatch_all(seeded, settings, click("测试卡:1:receive", "c1", user="stranger"))
    assert actions.calls == [] and await documents(seeded) == 0
    body = (await replies(seeded))["reply:c1:0"][1]
    assert body.startswith("你还没有在 jxcbot 登记") and "「stranger」" in body


async def test_a_click_left_unhandled_by_a_crash_is_resumed_with_its_key_once(seeded, settings, actions, monkeypatch):
    crashed = TaskTracker()
    monkeypatch.setattr(crashed, "spawn", lambda coro, name=None: coro.close())
    d = dispatch.Dispatcher(seeded, settings, crashed, clock=lambda: NOW)
    assert await d.accept(click("测试卡:5:receive", "c1"))
    assert not await d.accept(click("测试卡:5:receive", "c1"))  # the platform's retry of the click
    await d.close()
    assert actions.calls == []

    tracker = TaskTracker()
    d2 = dispatch.Dispatcher(seeded, settings, tracker, clock=lambda: NOW + timedelta(minutes=1))
    assert await d2.resume() == 1
    await tracker.close()
    await d2.close()
    assert actions.calls == [("测试卡", "5:receive", "张库管", True)]
    assert await documents(seeded) == 1
    assert await replies(seeded) == {"reply:c1:0": (ZHANG, "测试卡 5:receive")}
    assert await statuses(seeded) == {"c1": "done"}
