"""Every copy of an approval card is updated after each decision: a role's card goes to every holder of the role,
each delivered copy is recorded with its update handle (console card id, WeCom response_code), and a decision
updates them all — in place where the handle still works, a fresh card where a WeCom code is spent or expired."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import aiohttp
import pytest
from sqlalchemy import select

from bot.console import ConsoleLog, ConsoleTransport
from bot.dispatch import Dispatcher, store_event
from bot.inbound import Inbound
from bot.outbox_sender import OutboxSender
from bot.tasks import TaskTracker
from bot.wecom.client import WeComClient, WeComTransport
from cards.parts import split_message
from core.messaging import card_copies
from core.messaging.outbound import Outbound
from core.models import CardCopy, Document, User
from tests.chat import PNG
from tests.factories import line, post, seed
from tests.fakes.wecom import FakeWeCom

SALES = ("王销售", "刘销售", "吴销售")  # 王销售 on the console only; 刘 and 吴 on WeCom too (liu, wu)


async def setup(db, settings) -> None:
    async def work(s) -> None:
        await seed(s)  # 张库管 (warehouse, WeCom "zhang"), CREAM (kg), WH1 …
        s.add_all([User(name="李采购", roles="purchasing"), User(name="王销售", roles="sales"),
                   User(name="刘销售", roles="sales", wecom_user_id="liu"),
                   User(name="吴销售", roles="sales", wecom_user_id="wu")])
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")

    await db.write(work)


class Bot:
    """A real dispatcher and outbox sender over the console (and a WeCom app client): events handled one at a
    time, then the outbox drained. `clock` is shared (move it to age the WeCom codes)."""

    def __init__(self, db, settings, wecom: WeComClient | None = None) -> None:
        self.db, self.now = db, datetime.now(UTC)
        self.log = ConsoleLog()
        transports = {"console": ConsoleTransport(self.log)}
        if wecom is not None:
            transports["wecom"] = WeComTransport(wecom, None)
        self.tracker = TaskTracker()
        self.d = Dispatcher(db, settings, self.tracker, clock=self.clock,
                            outbound=Outbound(split_message, {}, frozenset(transports)))
        self.sender = OutboxSender(db, transports, limits={}, clock=self.clock)

    def clock(self) -> datetime:
        return self.now

    async def event(self, platform: str, user: str, *, text: str | None = None, click: str | None = None,
                    image: bytes | None = None, reply: dict | None = None) -> None:
        pic = {"data": base64.b64encode(image).decode(), "content_type": "image/png"} if image is not None else None
        event = Inbound(platform, user, f"{platform}:{uuid.uuid4().hex}", self.now, text=text, action=click,
                        image=pic, reply=MappingProxyType(reply or {}))
        await self.db.write(lambda s: store_event(s, event))
        await self.d.handle(event)
        while await self.sender.run_once():
            pass

    async def say(self, user: str, text: str) -> None:
        await self.event("console", user, text=text)

    def cards(self, user: str) -> list[dict]:
        """The cards the console showed `user`, in order."""
        return [e["message"] for e in self.log.entries
                if e["direction"] == "bot" and e["target"]["address"] == user and e["message"]["kind"] == "card"]

    def showing(self, user: str, card_id: str) -> dict:
        """What the console shows for one card now: the latest message sent with its card id."""
        return [c for c in self.cards(user) if c.get("card_id") == card_id][-1]

    async def close(self) -> None:
        await self.tracker.close()
        await self.d.close()


async def sign_off_opened(bot: Bot) -> str:
    """张库管 counts 10 kg of cream (book 12), types the line, sends the photo: the sign-off opens; the number."""
    await bot.say("张库管", "盘点 开始 WH1")
    await bot.say("张库管", "盘点 CREAM 10kg")
    await bot.say("张库管", "盘点 提交")
    async with bot.db.read() as s:
        number = (await s.scalars(select(Document.number).where(Document.type == "discrepancy"))).one()
    await bot.say("张库管", f"差异 {number} 1 客户借货未还")
    await bot.say("张库管", f"凭证 {number}")
    await bot.event("console", "张库管", image=PNG)
    return number


async def copies(db) -> dict[tuple[str, str, str], CardCopy]:
    async with db.read() as s:
        return {(c.group_key.rsplit(":", 1)[1], c.platform, c.address): c
                for c in (await s.execute(select(CardCopy))).scalars()}


@pytest.fixture
async def bot(db, settings):
    await setup(db, settings)
    b = Bot(db, settings)
    yield b
    await b.close()


@pytest.fixture
async def wecom_bot(db, settings):
    await setup(db, settings)
    async with FakeWeCom() as fake, aiohttp.ClientSession() as http:
        b = Bot(db, settings, WeComClient(http, fake.corp_id, fake.agent_id, fake.secret, fake.base_url))
        yield b, fake
        await b.close()


async def test_every_holder_of_a_role_gets_the_card_and_every_console_copy_shows_the_decision(bot):
    await sign_off_opened(bot)
    asked = {u: bot.cards(u)[-1] for u in (*SALES, "李采购")}
    for user, card in asked.items():  # each holder: a card with buttons, delivered with a card id to update it by
        assert [b["label"] for b in card["buttons"]] == ["同意", "驳回"] and card["card_id"], (user, card)
    assert len({c["card_id"] for c in asked.values()}) == 4  # one copy each
    recorded = await copies(bot.db)
    assert {(r, a) for r, p, a in recorded if p == "console" and r == "sales"} == {("sales", u) for u in SALES}

    await bot.event("console", "王销售", click=asked["王销售"]["buttons"][0]["key"])
    for user in SALES:  # the role's copies: updated in place (same card id), the buttons gone, the decision shown
        now = bot.showing(user, asked[user]["card_id"])
        assert "王销售 已以「销售」身份通过" in now["title"] and not now.get("buttons"), (user, now)
        assert "销售：已通过 王销售" in now["text"]
    other = bot.showing("李采购", asked["李采购"]["card_id"])  # another role's copy: the decision, still its buttons
    assert "销售：已通过 王销售" in other["text"] and [b["label"] for b in other["buttons"]] == ["同意", "驳回"]
    assert len([c for c in bot.cards("刘销售") if c.get("card_id") == asked["刘销售"]["card_id"]]) == 2


async def test_the_wecom_copies_are_updated_with_their_response_codes_and_a_spent_code_gets_a_fresh_card(wecom_bot):
    bot, fake = wecom_bot
    await sign_off_opened(bot)
    sent = {m["touser"]: m for m in fake.messages if m["msgtype"] == "template_card"}
    assert {"liu", "wu", "zhang"} <= set(sent)  # sales on WeCom, and 张库管 for the warehouse role
    recorded = await copies(bot.db)
    codes = {u: recorded[(role, "wecom", u)].ref for role, u in (("sales", "liu"), ("sales", "wu"),
                                                                 ("warehouse", "zhang"))}
    assert all(fake.response_codes[c].users == (u,) and not recorded[(r, "wecom", u)].spent
               for (r, _p, u), c in ((k, codes[k[2]]) for k in recorded if k[1] == "wecom"))

    await bot.say("王销售", f"同意 {await number_of(bot.db)}")  # decided on the console
    updates = {u["userids"][0]: u for u in fake.updates}
    assert {u: updates[u]["response_code"] for u in ("liu", "wu", "zhang")} == codes  # each copy by its own code
    for user in ("liu", "wu"):  # the decided role's copies: buttons greyed out with the decision
        view = fake.card_views[(sent[user]["template_card"]["task_id"], user)]
        assert view.replace_name and "王销售" in view.replace_name
    zhang = fake.card_views[(sent["zhang"]["template_card"]["task_id"], "zhang")]
    assert "销售：已通过 王销售" in zhang.card["sub_title_text"] and zhang.card["button_list"]  # still to sign
    assert all(c.spent for k, c in (await copies(bot.db)).items() if k[1] == "wecom")

    before = len(fake.messages)
    await bot.say("李采购", f"同意 {await number_of(bot.db)}")  # every WeCom code is used up now: fresh cards
    assert len(fake.updates) == 3
    fresh = {m["touser"]: m for m in fake.messages[before:] if m["msgtype"] == "template_card" or
             ("采购：已通过 李采购" in m.get("markdown", {}).get("content", "") and m["touser"] != "zhang")}
    assert set(fresh) == {"liu", "wu", "zhang"}  # (张库管 also hears it as the requester, in markdown)
    assert fresh["liu"]["msgtype"] == "markdown" and "采购：已通过 李采购" in fresh["liu"]["markdown"]["content"]
    assert fresh["zhang"]["msgtype"] == "template_card"  # warehouse still to sign: a new card with buttons
    again = (await copies(bot.db))[("warehouse", "wecom", "zhang")]
    assert not again.spent and again.ref != codes["zhang"] and fake.response_codes[again.ref].users == ("zhang",)

    # 张库管 clicks the fresh card on WeCom: the click's own code updates it; the last approval posts.
    task = fresh["zhang"]["template_card"]["task_id"]
    key = fresh["zhang"]["template_card"]["button_list"][0]["key"]
    click_code = fake.click("zhang", task)
    await bot.event("wecom", "zhang", click=key, reply={"response_code": click_code, "task_id": task})
    assert fake.updates[-1]["response_code"] == click_code and fake.response_codes[click_code].used
    assert "已过账" in fake.card_views[(task, "zhang")].replace_name
    async with bot.db.read() as s:
        assert (await s.scalars(select(Document.status).where(Document.type == "discrepancy"))).one() == "posted"


async def test_a_wecom_code_older_than_72_hours_is_not_tried_the_copy_gets_a_fresh_card(wecom_bot):
    bot, fake = wecom_bot
    await sign_off_opened(bot)
    before = len(fake.messages)
    bot.now += timedelta(hours=73)
    fake.advance(73 * 3600)
    await bot.say("王销售", f"同意 {await number_of(bot.db)}")
    assert fake.updates == [] and fake.calls("/cgi-bin/message/update_template_card") == 0
    assert {m["touser"] for m in fake.messages[before:]} == {"liu", "wu", "zhang"}


async def test_a_withdrawal_takes_the_buttons_off_every_copy(bot):
    number = await sign_off_opened(bot)
    asked = {u: bot.cards(u)[-1] for u in (*SALES, "李采购")}
    await bot.say("张库管", f"撤回 {number}")
    for user, card in asked.items():
        now = bot.showing(user, card["card_id"])
        assert "张库管 已撤回" in now["title"] and not now.get("buttons"), (user, now)


def test_usable_handles():
    now = datetime.now(UTC)
    copy = card_copies.Copy("approval:1:sales", "wecom", "liu", "rc1", False, now - timedelta(hours=1))
    assert card_copies.usable(copy, now) == "rc1"
    assert card_copies.usable(copy, now + timedelta(hours=72)) is None  # expired (72 h, less a margin)
    assert card_copies.usable(replace(copy, spent=True), now) is None  # used once already
    assert card_copies.usable(card_copies.Copy("g", "console", "王销售", "card-1", False, now - timedelta(days=30)),
                              now) == "card-1"  # the console's ids never expire
    assert card_copies.usable(card_copies.Copy("g", "dingtalk", "m1", "", True, now), now) is None  # went as text


async def number_of(db) -> str:
    async with db.read() as s:
        return (await s.scalars(select(Document.number).where(Document.type == "discrepancy"))).one()
