"""Flow control: acknowledgements wait (bounded) while handlers and unsent replies pile up; nothing is lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from bot import dispatch
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from cards.model import text
from core.models import InboundEvent
from tests.factories import seed


def _event(n: int) -> Inbound:
    return Inbound("wecom", "zhang", f"pace:{n}", datetime.now(UTC), text="帮助")


async def _stored(db) -> int:
    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one()


async def _gated(db, settings, monkeypatch, backlog: int, max_wait: float
                 ) -> tuple[dispatch.Dispatcher, TaskTracker, asyncio.Event]:
    """A dispatcher whose handlers wait for the returned gate, with the given pacing settings."""
    await db.write(seed)
    monkeypatch.setattr(dispatch, "PACE_BACKLOG", backlog)
    monkeypatch.setattr(dispatch, "PACE_MAX_WAIT", max_wait)
    gate = asyncio.Event()
    tracker = TaskTracker()
    d = dispatch.Dispatcher(db, settings, tracker)

    async def slow(_event: Inbound) -> list:
        await gate.wait()
        return [text("好的")]

    monkeypatch.setattr(d, "_route", slow)
    return d, tracker, gate


async def test_acks_wait_while_handlers_are_behind_and_go_when_they_catch_up(db, settings, monkeypatch):
    d, tracker, gate = await _gated(db, settings, monkeypatch, 2, 30.0)
    assert await d.accept(_event(1)) and await d.accept(_event(2))  # backlog 1, 2: answered at once
    third = asyncio.create_task(d.accept(_event(3)))
    await asyncio.sleep(0.3)
    assert not third.done()  # backlog 3 > 2: held back …
    assert await _stored(db) == 3  # … but stored before it was held
    gate.set()  # the handlers catch up
    assert await asyncio.wait_for(third, 10) is True
    await tracker.close()
    await d.close()


async def test_an_ack_is_held_at_most_pace_max_wait(db, settings, monkeypatch):
    d, tracker, gate = await _gated(db, settings, monkeypatch, 0, 0.2)
    assert await asyncio.wait_for(d.accept(_event(1)), 10) is True  # answered although the handler is stuck
    assert not gate.is_set() and await _stored(db) == 1
    gate.set()
    await tracker.close()
    await d.close()


async def test_unsent_replies_count_toward_the_backlog(db, settings, monkeypatch):
    await db.write(seed)
    monkeypatch.setattr(dispatch, "PACE_BACKLOG", 1)
    monkeypatch.setattr(dispatch, "PACE_MAX_WAIT", 30.0)
    delivered = 0
    tracker = TaskTracker()
    d = dispatch.Dispatcher(db, settings, tracker, delivered=lambda: delivered)
    assert await d.accept(_event(1))
    await tracker.close()  # handled: its reply row is queued, not yet sent
    tracker2 = TaskTracker()
    d.tracker = tracker2
    assert d.queued == 1
    second = asyncio.create_task(d.accept(_event(2)))  # backlog: 1 unsent reply + 1 handler > 1
    await asyncio.sleep(0.3)
    assert not second.done()
    delivered = 1  # the outbox sender delivered the first reply …
    d.backlog_shrank()  # … and says so
    await asyncio.wait_for(tracker2.close(), 10)
    assert await asyncio.wait_for(second, 10) is True
    await d.close()


async def test_replies_another_instance_sent_stop_holding_acks_once_the_outbox_is_drained(db, settings, monkeypatch):
    """Two servers on one database: this one's replies may be sent by the other's outbox sender, which this
    dispatcher never hears of. Its own sender finding nothing due lets the held acknowledgements go."""
    from bot.outbox_sender import OutboxSender
    from tests.test_outbox import FakeTransport

    await db.write(seed)
    monkeypatch.setattr(dispatch, "PACE_MAX_WAIT", 30.0)
    mine = OutboxSender(db, {"wecom": FakeTransport("wecom")})
    other_transport = FakeTransport("wecom")
    other = OutboxSender(db, {"wecom": other_transport})
    tracker = TaskTracker()
    d = dispatch.Dispatcher(db, settings, tracker, delivered=lambda: mine.done)  # PACE_BACKLOG 32 for now
    mine.on_done, mine.on_drained = d.backlog_shrank, d.outbox_drained
    assert await d.accept(_event(1)) and await d.accept(_event(2))
    await tracker.close()  # both handled: two reply rows queued here, unsent
    d.tracker = tracker2 = TaskTracker()
    monkeypatch.setattr(dispatch, "PACE_BACKLOG", 1)
    third = asyncio.create_task(d.accept(_event(3)))
    await asyncio.sleep(0.3)
    assert not third.done()  # backlog 2 unsent replies (+ a handler) > 1: held
    assert await other.run_once() >= 2  # the other instance sends them …
    await asyncio.sleep(0.3)
    assert not third.done()  # … which this dispatcher cannot know
    assert await mine.run_once() <= 1  # this instance's sender finds (at most the third reply) due: drained
    assert await asyncio.wait_for(third, 10) is True
    assert len(other_transport.sent) >= 2 and mine.done + other.done >= 3
    await tracker2.close()
    await d.close()
