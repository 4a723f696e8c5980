"""Dispatcher failures: handler errors are answered and recorded, shutdown and crashes lose no event."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot import dispatch
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from cards.model import text
from core.errors import DomainError
from core.models import InboundEvent, OutboxMessage
from handlers import registry
from tests.factories import seed

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)  # the next start: the crashed run's lease on its events has run out
APOLOGY = "抱歉，处理这条消息时出错了，已记录，请稍后再试或联系管理员。"


@pytest.fixture
def command(monkeypatch):
    """registry.command, registering into a copy of the command list that is put back after the test."""
    monkeypatch.setattr(registry, "COMMANDS", list(registry.COMMANDS))
    return registry.command


def message(key: str, body: str) -> Inbound:
    return Inbound("wecom", "zhang", key, NOW, text=body)


def dispatcher(db, settings, tracker: TaskTracker, at: datetime = NOW) -> dispatch.Dispatcher:
    return dispatch.Dispatcher(db, settings, tracker, clock=lambda: at)


async def replies(db) -> list[tuple[str, dict, str]]:
    """(dedupe key, target, text) of every outbox row."""
    async with db.read() as s:
        found = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        return [(r.dedupe_key, json.loads(r.target), json.loads(r.message)["text"]) for r in found]


async def events(db) -> dict[str, tuple[str, str | None, datetime | None]]:
    """dedupe key → (status, error, handled_at) of every stored inbound event."""
    async with db.read() as s:
        found = (await s.execute(select(InboundEvent))).scalars()
        return {e.dedupe_key: (e.status, e.error, e.handled_at) for e in found}


ZHANG = {"platform": "wecom", "kind": "user", "address": "zhang"}


# -- handler errors -----------------------------------------------------------------------------------


async def test_an_unexpected_handler_error_gets_an_apology_and_marks_the_event_failed(db, settings, command):
    await db.write(seed)

    @command("故障", summary="raises", usage="故障")
    async def broken(ctx, args):
        raise RuntimeError(f"secret table missing ({args})")

    tracker = TaskTracker()
    d = dispatcher(db, settings, tracker)
    assert await d.accept(message("m1", "故障 奶油"))
    await tracker.close()
    await d.close()

    assert await replies(db) == [("reply:m1:0", ZHANG, APOLOGY)]  # the internals are not shown to the user
    assert await events(db) == {"m1": ("failed", "RuntimeError: secret table missing (奶油)", NOW)}
    assert d.queued == 1


async def test_a_domain_error_is_the_reply_and_the_event_counts_as_handled(db, settings, command):
    await db.write(seed)

    @command("试出库", summary="refuses", usage="试出库")  # 出库 itself is handlers.movements'
    async def refused(ctx, args):
        raise DomainError("NEGATIVE_STOCK", "淡奶油在中央仓只剩 2 kg，不能出库 5 kg。", "先做采购入库，或少出一些。")

    @command("冻结", summary="refuses without a fix", usage="冻结")
    async def frozen(ctx, args):
        raise DomainError("FROZEN", "账期已冻结。", "")

    tracker = TaskTracker()
    d = dispatcher(db, settings, tracker)
    assert await d.accept(message("m1", "试出库 奶油 5"))
    assert await d.accept(message("m2", "冻结"))
    await tracker.close()
    await d.close()

    assert sorted(await replies(db)) == [
        ("reply:m1:0", ZHANG, "淡奶油在中央仓只剩 2 kg，不能出库 5 kg。\n处理办法：先做采购入库，或少出一些。"),
        ("reply:m2:0", ZHANG, "账期已冻结。"),
    ]
    assert await events(db) == {"m1": ("done", None, NOW), "m2": ("done", None, NOW)}


# -- shutdown and crashes -----------------------------------------------------------------------------


async def test_close_waits_for_running_handlers_so_their_replies_are_queued(db, settings, command):
    await db.write(seed)
    gate, all_started = asyncio.Event(), asyncio.Event()
    started = 0

    @command("慢", summary="waits for the gate", usage="慢")
    async def slow(ctx, args):
        nonlocal started
        started += 1
        if started == 3:
            all_started.set()
        await gate.wait()
        return [text(f"完成 {args}")]

    tracker = TaskTracker()
    d = dispatcher(db, settings, tracker)
    for i in range(3):
        assert await d.accept(message(f"m{i}", f"慢 {i}"))
    await asyncio.wait_for(all_started.wait(), 5)

    closing = asyncio.create_task(tracker.close())  # a graceful stop while all three are mid-handler
    await asyncio.sleep(0.1)
    assert not closing.done() and len(tracker) == 3  # close waits for them …
    with pytest.raises(RuntimeError):  # … and takes no new work meanwhile
        tracker.spawn(asyncio.sleep(0))
    gate.set()
    await asyncio.wait_for(closing, 5)
    await d.close()

    assert sorted(await replies(db)) == [(f"reply:m{i}:0", ZHANG, f"完成 {i}") for i in range(3)]
    assert {status for status, _, _ in (await events(db)).values()} == {"done"}


async def test_a_handler_cut_off_after_the_grace_period_is_handled_on_the_next_start(db, settings, command):
    await db.write(seed)
    gate = asyncio.Event()

    @command("慢", summary="waits for the gate", usage="慢")
    async def slow(ctx, args):
        await gate.wait()
        return [text("完成")]

    tracker = TaskTracker(grace=0.05)
    d = dispatcher(db, settings, tracker)
    assert await d.accept(message("m1", "慢"))
    await asyncio.wait_for(tracker.close(), 5)  # the handler outlives the grace period and is cancelled
    await d.close()
    assert await replies(db) == [] and await events(db) == {"m1": ("new", None, None)}

    gate.set()
    restarted = TaskTracker()
    d2 = dispatcher(db, settings, restarted, at=LATER)  # the next run
    assert await d2.resume() == 1
    await restarted.close()
    await d2.close()
    assert await replies(db) == [("reply:m1:0", ZHANG, "完成")]
    assert await events(db) == {"m1": ("done", None, LATER)}


async def test_an_event_arriving_during_shutdown_is_stored_answered_and_handled_on_the_next_start(db, settings):
    await db.write(seed)
    tracker = TaskTracker()
    d = dispatcher(db, settings, tracker)
    await tracker.close()  # shutting down: no new handler tasks
    assert await asyncio.wait_for(d.accept(message("late", "帮助")), 10) is True  # answered, not hung
    await d.close()
    assert (await events(db))["late"][0] == "new"
    restarted = TaskTracker()
    d2 = dispatcher(db, settings, restarted, at=LATER)
    assert await d2.resume() == 1
    await restarted.close()
    await d2.close()
    assert (await events(db))["late"][0] == "done"


async def test_resume_handles_an_event_a_crash_left_unhandled_and_queues_its_reply_once(db, settings, command,
                                                                                         monkeypatch):
    await db.write(seed)
    runs = 0

    @command("查", summary="answers", usage="查")
    async def answer(ctx, args):
        nonlocal runs
        runs += 1
        return [text(f"结果 {args}")]

    # The process dies right after the event was stored and acknowledged, before its handler ran.
    crashed = TaskTracker()
    monkeypatch.setattr(crashed, "spawn", lambda coro, name=None: coro.close())
    d = dispatcher(db, settings, crashed)
    assert await d.accept(message("m1", "查 奶油"))
    await d.close()
    assert await events(db) == {"m1": ("new", None, None)} and runs == 0
    assert not await d.accept(message("m1", "查 奶油"))  # the platform's retry is a duplicate: only resume helps

    tracker = TaskTracker()
    d2 = dispatcher(db, settings, tracker, at=LATER)
    assert await dispatcher(db, settings, TaskTracker()).resume() == 0  # within the crashed run's lease: left alone
    assert await d2.resume() == 1
    assert await d2.resume() == 0  # run again before the first handled it: claimed (leased) already
    await tracker.close()
    await d2.close()
    assert await replies(db) == [("reply:m1:0", ZHANG, "结果 奶油")]  # queued once
    assert await events(db) == {"m1": ("done", None, LATER)}
    assert d2.queued == 1

    tracker3 = TaskTracker()
    d3 = dispatcher(db, settings, tracker3, at=LATER + timedelta(minutes=5))  # a later run: nothing left
    assert await d3.resume() == 0
    await tracker3.close()
    await d3.close()
    assert len(await replies(db)) == 1
