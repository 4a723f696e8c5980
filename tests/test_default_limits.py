"""The outbox sender's default rate limits: WeCom app 30/min + 1000/h per user, DingTalk group robot 20/min."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.outbox_sender import OutboxSender, parse_outbox_config
from cards.model import Message, text
from cards.parts import split_message
from core.messaging.outbound import enqueue
from core.messaging.targets import Target
from core.models import OutboxMessage
from core.storage import Database
from tests.test_outbox import T0, Clock, MaxJitter

ZHANG = Target("wecom", "user", "zhang")
LI = Target("wecom", "user", "li")
DT_WAREHOUSE = Target("dingtalk", "robot", "warehouse")
DT_OPS = Target("dingtalk", "robot", "ops")


class StampedTransport:
    """An in-memory platform that records (address, text, simulated time) of every delivery."""

    def __init__(self, platform: str, clock: Clock) -> None:
        self.platform = platform
        self.clock = clock
        self.sent: list[tuple[str, str, datetime]] = []

    async def send(self, target: Target, message: Message) -> None:
        self.sent.append((target.address, message.text, self.clock()))


def default_sender(db: Database, settings, clock: Clock, *transports: StampedTransport) -> OutboxSender:
    """A sender built the way bot.server builds it, from a configuration without an [outbox] section."""
    assert "outbox" not in settings.raw
    cfg = parse_outbox_config(settings.raw)
    return OutboxSender(db, {t.platform: t for t in transports}, cfg.limits, cfg.settings, clock=clock,
                        rng=MaxJitter())


async def put(db: Database, key: str, target: Target, body: str, now: datetime) -> None:
    assert await db.write(lambda s: enqueue(s, key, target, text(body), now, split=split_message))


async def send_due(sender: OutboxSender) -> None:
    while await sender.run_once():
        pass


def canonical(value: dict) -> str:
    """JSON as core.messaging.outbox stores it."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


async def row(db: Database, key: str) -> OutboxMessage:
    async with db.read() as s:
        return (await s.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))).scalar_one()


async def test_31st_app_message_to_one_user_in_a_minute_waits_and_other_users_are_not_blocked(db, settings):
    clock = Clock()
    wecom = StampedTransport("wecom", clock)
    sender = default_sender(db, settings, clock, wecom)
    for i in range(31):  # one message a second to zhang: the 31st comes 30 s after the first
        clock.now = T0 + timedelta(seconds=i)
        await put(db, f"z{i}", ZHANG, f"z{i}", clock.now)
        await send_due(sender)
    await put(db, "l0", LI, "l0", clock.now)  # another user of the same app, in the same second
    await send_due(sender)

    assert [b for a, b, _ in wecom.sent if a == "zhang"] == [f"z{i}" for i in range(30)]
    assert wecom.sent[-1] == ("li", "l0", T0 + timedelta(seconds=30))  # not held behind zhang's limit
    deferred = await row(db, "z30")
    # deferred, not failed: no attempt counted, due when the first send leaves the 60 s window
    assert (deferred.status, deferred.attempts, deferred.last_error) == ("pending", 0, None)
    assert deferred.next_attempt_at == T0 + timedelta(seconds=60)

    clock.now = T0 + timedelta(seconds=59.5)
    assert await sender.run_once() == 0
    clock.now = T0 + timedelta(seconds=60)
    await send_due(sender)
    assert wecom.sent[-1] == ("zhang", "z30", T0 + timedelta(seconds=60))
    assert len(wecom.sent) == 32


async def test_21st_message_to_one_dingtalk_robot_in_a_minute_waits_and_other_robots_are_not_blocked(db, settings):
    clock = Clock()
    dingtalk = StampedTransport("dingtalk", clock)
    sender = default_sender(db, settings, clock, dingtalk)
    for i in range(21):
        await put(db, f"w{i}", DT_WAREHOUSE, f"w{i}", T0)
    await put(db, "ops", DT_OPS, "ops", T0)
    await send_due(sender)

    assert Counter(a for a, _, _ in dingtalk.sent) == {"warehouse": 20, "ops": 1}
    deferred = await row(db, "w20")
    assert (deferred.status, deferred.attempts) == ("pending", 0)
    assert deferred.next_attempt_at == T0 + timedelta(seconds=60)
    clock.now = T0 + timedelta(seconds=59)
    assert await sender.run_once() == 0
    clock.now = T0 + timedelta(seconds=60)
    await send_due(sender)
    assert dingtalk.sent[-1] == ("warehouse", "w20", T0 + timedelta(seconds=60))


async def test_an_app_user_gets_at_most_1000_messages_an_hour(db, settings):
    # The last hour's history, as a new sender finds it: 1000 messages to zhang, one every 3.5 s from
    # T0 - 3590 s (never more than 18 in a minute, none in the last 90 s).
    first = T0 - timedelta(seconds=3590)
    target, message = canonical(ZHANG.to_json()), canonical(text("old").to_json())

    async def history(s):
        s.add_all(OutboxMessage(dedupe_key=f"old{i}", target=target, message=message, status="sent", attempts=1,
                                next_attempt_at=first + timedelta(seconds=3.5 * i), created_at=first,
                                sent_at=first + timedelta(seconds=3.5 * i)) for i in range(1000))

    await db.write(history)
    clock = Clock()
    wecom = StampedTransport("wecom", clock)
    sender = default_sender(db, settings, clock, wecom)
    await sender.seed_limits()  # what start() does
    await put(db, "z", ZHANG, "z", T0)
    await put(db, "l", LI, "l", T0)
    await send_due(sender)

    assert wecom.sent == [("li", "l", T0)]  # a user without history is not held
    deferred = await row(db, "z")
    assert (deferred.status, deferred.attempts) == ("pending", 0)
    assert deferred.next_attempt_at == first + timedelta(hours=1)  # when the oldest send leaves the hour
    clock.now = first + timedelta(hours=1, seconds=-1)
    assert await sender.run_once() == 0
    clock.now = first + timedelta(hours=1)
    await send_due(sender)
    assert wecom.sent[-1] == ("zhang", "z", first + timedelta(hours=1))
