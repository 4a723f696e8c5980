"""Recipients (users, roles, channels) resolved to platform targets; people by platform id; parse_target."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot import dispatch
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from cards.model import text
from core.config import load_config
from core.errors import DomainError
from core.messaging import people
from core.messaging.outbound import Outbound, whole
from core.messaging.recipients import ToChannel, ToRole, ToUser, channel_targets, person_targets, resolve
from core.messaging.targets import Target, parse_target
from core.models import InboundEvent, OutboxMessage, User
from handlers import registry
from tests.factories import seed

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
BOTH = frozenset({"wecom", "dingtalk"})
EVERY = frozenset({"wecom", "dingtalk", "console"})
CHANNELS = {"supervisors": (Target("wecom", "robot", "warehouse"),),
            "purchasing": (Target("wecom", "robot", "purchasing"), Target("dingtalk", "robot", "ops"))}


@pytest.fixture
async def staff(db):
    """Users by name → id: 李经理 (manager, WeCom + DingTalk), 赵主管 (warehouse + manager, DingTalk only, roles
    written with a space), 钱库管 (warehouse, WeCom only), 孙管理 (admin, WeCom), 周新人 (manager, no platform id),
    吴组长 (a role code "warehouse_lead" that merely contains "warehouse", WeCom)."""

    async def work(s) -> dict[str, int]:
        users = [User(name="李经理", department="管理部", roles="manager", wecom_user_id="li",
                      dingtalk_staff_id="staff-li"),
                 User(name="赵主管", department="仓储部", roles="warehouse, manager", dingtalk_staff_id="staff-zhao"),
                 User(name="钱库管", department="仓储部", roles="warehouse", wecom_user_id="qian"),
                 User(name="孙管理", department="信息部", roles="admin", wecom_user_id="sun"),
                 User(name="周新人", department="管理部", roles="manager"),
                 User(name="吴组长", department="仓储部", roles="warehouse_lead", wecom_user_id="wu")]
        s.add_all(users)
        await s.flush()
        return {u.name: u.id for u in users}

    return await db.write(work)


async def resolved(db, to, channels=None, platforms=BOTH) -> list[Target]:
    async with db.read() as s:
        return await resolve(s, to, CHANNELS if channels is None else channels, platforms)


# -- people ---------------------------------------------------------------------------------------------------


async def test_people_by_platform_id_on_each_platform(db, staff):
    li = await people.by_platform_id(db, "wecom", "li")
    assert li is not None and (li.id, li.name, li.roles, li.department) == (staff["李经理"], "李经理",
                                                                            frozenset({"manager"}), "管理部")
    assert await people.by_platform_id(db, "dingtalk", "staff-li") == li
    assert await people.by_platform_id(db, "console", "李经理") == li  # the console speaks as a user by name
    assert (li.platform_id("wecom"), li.platform_id("dingtalk"), li.platform_id("console")) == ("li", "staff-li",
                                                                                                "李经理")
    assert await people.by_platform_id(db, "wecom", "staff-li") is None  # a DingTalk id is no WeCom id
    assert await people.by_platform_id(db, "dingtalk", "nobody") is None
    with pytest.raises(KeyError):
        await people.by_platform_id(db, "slack", "li")


async def test_people_by_id_everyone_and_with_role(db, staff):
    async with db.read() as s:
        zhao = await people.by_id(s, staff["赵主管"])
        assert zhao is not None and zhao.roles == frozenset({"warehouse", "manager"}) and zhao.wecom_user_id is None
        assert await people.by_id(s, max(staff.values()) + 1) is None
        assert [p.name for p in await people.everyone(s)] == list(staff)  # id order
        assert [p.name for p in await people.with_role(s, "manager")] == ["李经理", "赵主管", "周新人"]
        assert [p.name for p in await people.with_role(s, "warehouse")] == ["赵主管", "钱库管"]  # not 吴组长
        assert await people.with_role(s, "sales") == []


# -- users, roles, channels -------------------------------------------------------------------------------------


async def test_a_person_on_wecom_and_dingtalk_gets_one_target_per_platform(db, staff):
    li = ToUser(staff["李经理"])
    assert await resolved(db, li) == [Target("wecom", "user", "li"), Target("dingtalk", "user", "staff-li")]
    assert await resolved(db, li, platforms={"dingtalk"}) == [Target("dingtalk", "user", "staff-li")]
    assert await resolved(db, li, platforms=EVERY) == [Target("wecom", "user", "li"),
                                                       Target("dingtalk", "user", "staff-li"),
                                                       Target("console", "user", "李经理")]
    assert await resolved(db, ToUser(staff["赵主管"])) == [Target("dingtalk", "user", "staff-zhao")]  # on one only


async def test_a_person_without_an_address_on_the_platforms_served_resolves_to_nothing(db, staff, caplog):
    with caplog.at_level(logging.WARNING, logger="core.messaging.recipients"):
        assert await resolved(db, ToUser(staff["周新人"])) == []
        assert await resolved(db, ToUser(staff["钱库管"]), platforms={"dingtalk"}) == []
        assert await resolved(db, ToUser(max(staff.values()) + 1)) == []  # no such user
    assert len(caplog.records) == 3 and "nothing queued" in caplog.records[0].getMessage()


async def test_a_role_resolves_to_every_holder_on_each_of_their_platforms(db, staff):
    assert await resolved(db, ToRole("manager")) == [
        Target("wecom", "user", "li"), Target("dingtalk", "user", "staff-li"),  # 李经理, on both
        Target("dingtalk", "user", "staff-zhao"),  # 赵主管 holds it beside warehouse
    ]  # 周新人 holds it but has no address; 孙管理 (admin) does not hold it
    assert await resolved(db, ToRole("warehouse"), platforms={"wecom"}) == [Target("wecom", "user", "qian")]
    assert await resolved(db, ToRole("admin"), platforms=EVERY) == [Target("wecom", "user", "sun"),
                                                                    Target("console", "user", "孙管理")]
    assert await resolved(db, ToRole("sales")) == []
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        ToRole("boss")


async def test_a_configured_channel_resolves_to_its_group_robots(db, tmp_path):
    path = tmp_path / "jxcbot.toml"
    path.write_text('[channels]\nsupervisors = "wecom:robot:warehouse"\n'
                    'purchasing = ["wecom:robot:purchasing", "dingtalk:robot:ops"]\n', encoding="utf-8")
    channels = load_config(path, env={}).channels
    assert await resolved(db, ToChannel("supervisors"), channels) == [Target("wecom", "robot", "warehouse")]
    assert await resolved(db, ToChannel("purchasing"), channels) == [Target("wecom", "robot", "purchasing"),
                                                                     Target("dingtalk", "robot", "ops")]
    # configured wins over the console's stand-in group, and a served console does not change it
    assert await resolved(db, ToChannel("supervisors"), channels, EVERY) == [Target("wecom", "robot", "warehouse")]


async def test_an_unconfigured_channel_is_a_console_group_when_the_console_is_served(db):
    assert await resolved(db, ToChannel("night-shift"), platforms=EVERY) == [Target("console", "group", "night-shift")]
    assert channel_targets("night-shift", {}, ["console"]) == [Target("console", "group", "night-shift")]


async def test_an_unconfigured_channel_without_a_console_is_a_domain_error_naming_the_fix(db):
    with pytest.raises(DomainError) as info:
        await resolved(db, ToChannel("night-shift"), platforms=BOTH)
    err = info.value
    assert err.code == "UNKNOWN_CHANNEL"
    assert err.message_zh == "没有配置群组频道「night-shift」"
    assert "[channels]" in err.fix_zh and 'night-shift = "wecom:robot:' in err.fix_zh
    with pytest.raises(DomainError):
        channel_targets("supervisors", {}, [])  # nothing configured, nothing served


async def test_a_target_is_its_own_recipient_and_anything_else_is_refused(db):
    session_target = Target("dingtalk", "session", "https://oapi.example/hook", 1_800_000_000_000,
                            fallback=Target("dingtalk", "user", "staff-li"))
    assert await resolved(db, session_target) == [session_target]
    with pytest.raises(TypeError, match="not a recipient"):
        await resolved(db, "wecom:user:li")


def test_person_targets_lists_platforms_in_a_fixed_order():
    p = people.Person(7, "李经理", frozenset({"manager"}), "管理部", "li", "staff-li")
    assert person_targets(p, ["console", "dingtalk", "wecom"]) == [Target("wecom", "user", "li"),
                                                                   Target("dingtalk", "user", "staff-li"),
                                                                   Target("console", "user", "李经理")]
    assert person_targets(p, []) == []


# -- outbound: one row per target, once ------------------------------------------------------------------------


async def outbox_rows(db) -> list[tuple[str, dict, str]]:
    async with db.read() as s:
        found = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        return [(r.dedupe_key, json.loads(r.target), json.loads(r.message)["text"]) for r in found]


async def test_outbound_queues_a_person_once_per_platform_and_a_repeat_not_at_all(db, staff):
    out = Outbound(whole, CHANNELS, BOTH)

    async def send(s) -> list[int]:
        return [await out.send(s, "n1", ToUser(staff["李经理"]), text("到货了"), NOW),
                await out.send(s, "n2", ToRole("manager"), text("请审批"), NOW),
                await out.send(s, "n3", ToChannel("purchasing"), text("补货"), NOW),
                await out.send(s, "n4", Target("wecom", "user", "qian"), text("直接"), NOW)]

    assert await db.write(send) == [2, 3, 2, 1]
    assert await db.write(send) == [0, 0, 0, 0]  # a retry (or a second instance) queues nothing twice
    assert await outbox_rows(db) == [
        ("n1>wecom:user:li", {"platform": "wecom", "kind": "user", "address": "li"}, "到货了"),
        ("n1>dingtalk:user:staff-li", {"platform": "dingtalk", "kind": "user", "address": "staff-li"}, "到货了"),
        ("n2>wecom:user:li", {"platform": "wecom", "kind": "user", "address": "li"}, "请审批"),
        ("n2>dingtalk:user:staff-li", {"platform": "dingtalk", "kind": "user", "address": "staff-li"}, "请审批"),
        ("n2>dingtalk:user:staff-zhao", {"platform": "dingtalk", "kind": "user", "address": "staff-zhao"}, "请审批"),
        ("n3>wecom:robot:purchasing", {"platform": "wecom", "kind": "robot", "address": "purchasing"}, "补货"),
        ("n3>dingtalk:robot:ops", {"platform": "dingtalk", "kind": "robot", "address": "ops"}, "补货"),
        ("n4", {"platform": "wecom", "kind": "user", "address": "qian"}, "直接"),  # a Target keeps its key
    ]


# -- parse_target ------------------------------------------------------------------------------------------------


def test_parse_target_reads_platform_kind_address():
    assert parse_target("wecom:robot:warehouse") == Target("wecom", "robot", "warehouse")
    assert parse_target("  dingtalk:group:cidAbC==  ") == Target("dingtalk", "group", "cidAbC==")
    # only the first two colons separate: an address may hold more
    assert parse_target("dingtalk:session:https://oapi.example/robot?x=1") == Target(
        "dingtalk", "session", "https://oapi.example/robot?x=1")
    assert parse_target("console:group:夜班") == Target("console", "group", "夜班")


@pytest.mark.parametrize("bad", ["", "wecom", "wecom:robot", "wecom:robot:", ":robot:warehouse", "wecom::warehouse",
                                 "   ", "wecom robot warehouse"])
def test_parse_target_rejects_a_string_without_three_parts(bad):
    with pytest.raises(ValueError, match="not platform:kind:address") as info:
        parse_target(bad)
    assert repr(bad.strip()) in str(info.value) or repr(bad) in str(info.value)  # the string is quoted back


def test_parse_target_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown target kind 'bot'"):
        parse_target("wecom:bot:warehouse")


def test_targets_round_trip_through_json():
    t = Target("dingtalk", "session", "https://hook", 123, fallback=Target("dingtalk", "group", "cid1"))
    assert Target.from_json(json.loads(json.dumps(t.to_json()))) == t
    assert t.rate_key == "dingtalk:session:https://hook"


# -- notices to channels from handlers ----------------------------------------------------------------------------


@pytest.fixture
def telling():
    """Test commands telling a channel: 通知写 (writes=True) and 通知读 (read-only); removed afterwards."""

    @registry.command("通知写", summary="test: tells a channel in a unit", usage="通知写 <频道>", writes=True)
    async def tell_writing(ctx, args):
        ctx.tell(ToChannel(args), text(f"写：{args}"))
        return [text("已通知")]

    @registry.command("通知读", summary="test: tells a channel", usage="通知读 <频道>")
    async def tell_reading(ctx, args):
        ctx.tell(ToChannel(args), text(f"读：{args}"))
        return [text("已通知")]

    yield
    registry.COMMANDS[:] = [c for c in registry.COMMANDS if c.run not in (tell_writing, tell_reading)]


def message(key: str, body: str) -> Inbound:
    return Inbound("wecom", "zhang", key, NOW, text=body)


async def events(db) -> dict[str, str]:
    async with db.read() as s:
        return {e.dedupe_key: e.status for e in (await s.execute(select(InboundEvent))).scalars()}


ZHANG = {"platform": "wecom", "kind": "user", "address": "zhang"}


async def test_a_handler_telling_a_configured_channel_queues_to_its_robot(db, settings, telling):
    await db.write(seed)
    tracker = TaskTracker()
    d = dispatch.Dispatcher(db, settings, tracker, clock=lambda: NOW, outbound=Outbound(whole, CHANNELS, BOTH))
    assert await d.accept(message("m1", "通知写 supervisors"))
    assert await d.accept(message("m2", "通知读 supervisors"))
    await tracker.close()
    await d.close()
    robot = {"platform": "wecom", "kind": "robot", "address": "warehouse"}
    assert sorted(await outbox_rows(db)) == [("reply:m1:0", ZHANG, "已通知"),
                                             ("reply:m1:1>wecom:robot:warehouse", robot, "写：supervisors"),
                                             ("reply:m2:0", ZHANG, "已通知"),
                                             ("reply:m2:1>wecom:robot:warehouse", robot, "读：supervisors")]
    assert await events(db) == {"m1": "done", "m2": "done"}


async def test_a_write_handler_telling_an_unconfigured_channel_is_rolled_back_and_told_why(db, settings, telling):
    await db.write(seed)
    tracker = TaskTracker()
    d = dispatch.Dispatcher(db, settings, tracker, clock=lambda: NOW, outbound=Outbound(whole, CHANNELS, BOTH))
    assert await d.accept(message("m1", "通知写 night-shift"))
    await tracker.close()
    await d.close()
    [(key, target, body)] = await outbox_rows(db)
    assert (key, target) == ("reply:m1:0", ZHANG)
    assert body.startswith("没有配置群组频道「night-shift」\n处理办法：请在配置文件的 [channels] 中添加")
    assert await events(db) == {"m1": "done"}


async def test_a_read_only_handler_telling_an_unconfigured_channel_is_answered_and_harms_no_other_event(
        db, settings, telling):
    await db.write(seed)
    es = [message("m1", "通知读 night-shift"), message("m2", "帮助")]

    async def store(s) -> None:
        for e in es:
            await dispatch.store_event(s, e)

    await db.write(store)
    d = dispatch.Dispatcher(db, settings, TaskTracker(), clock=lambda: NOW, outbound=Outbound(whole, CHANNELS, BOTH))

    async def busy(_s) -> None:  # holds the group commit, so that both events' finishes queue for the next batch
        await asyncio.sleep(0.3)

    blocker = asyncio.create_task(d.finishes.submit(busy))
    await asyncio.sleep(0)
    await asyncio.gather(*(d.handle(e) for e in es), return_exceptions=True)
    await blocker
    await d.close()
    rows = {key: body for key, _, body in await outbox_rows(db)}
    status = await events(db)
    assert status["m2"] == "done" and rows.get("reply:m2:0", "").startswith("**张库管，你可以这样用 jxcbot")
    assert status["m1"] != "new" and "reply:m1:0" in rows  # the sender is answered and the event closed
