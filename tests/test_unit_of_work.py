"""The unit of work: a writes=True handler, its replies and notices and the event's handled mark commit together
or not at all; a retried or resumed event has one effect; resume claims stored events with a lease."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot import dispatch
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from cards.model import text
from core.errors import DomainError
from core.messaging import inbound as inbound_events
from core.messaging import outbound as outbound_module
from core.messaging.outbound import Outbound, whole
from core.messaging.recipients import ToRole
from core.models import Document, InboundEvent, OutboxMessage, StockMove, User
from core.storage import Database
from handlers import registry
from tests.conftest import test_database_url
from tests.factories import line, post, seed

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)  # the storing instance's 30 s lease has run out
APOLOGY = "抱歉，处理这条消息时出错了，已记录，请稍后再试或联系管理员。"
ZHANG = {"platform": "wecom", "kind": "user", "address": "zhang"}
LI_WECOM = {"platform": "wecom", "kind": "user", "address": "li"}
LI_DINGTALK = {"platform": "dingtalk", "kind": "user", "address": "staff-li"}
RECEIVED = "已入库 淡奶油 5 kg"
NOTICE = "张库管 入库了 淡奶油 5 kg"


class Handlers:
    """What the test commands did: every run's event key, and the context each run got."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.sessions: list[object] = []
        self.gate: asyncio.Event | None = None  # when set up, the first run of 慢查 waits for it


@pytest.fixture
def handlers():
    """Test-only commands in the real registry (COMMANDS, a list), removed again afterwards:
    入库测试 (writes=True: posts 5 kg of cream into WH1, tells the managers; its argument picks a failure),
    只读 (read-only: answers), 只读改账 (read-only but reaches for ctx.unit), 慢查 (read-only, waits for a gate
    on its first run)."""
    calls = Handlers()
    before = list(registry.COMMANDS)

    @registry.command("入库测试", summary="test: receive 5 kg of cream", usage="入库测试 [raise|refuse]", writes=True)
    async def receive(ctx, args):
        calls.runs.append(ctx.event_key)
        calls.sessions.append(ctx.session)
        await post(ctx.unit, ctx.settings, "purchase_receipt", [line("CREAM", 5, "kg")], warehouse="WH1",
                   supplier="SUP1")
        ctx.tell(ToRole("manager"), text(NOTICE))
        if args == "raise":
            raise RuntimeError("disk on fire after posting")
        if args == "refuse":
            raise DomainError("TEST_REFUSED", "入库被拒绝。", "换个仓库再试。")
        return [text(RECEIVED)]

    @registry.command("只读", summary="test: answers", usage="只读")
    async def read_only(ctx, args):
        calls.runs.append(ctx.event_key)
        calls.sessions.append(ctx.session)
        return [text(f"只读 {args}")]

    @registry.command("只读改账", summary="test: a read-only handler wanting a unit", usage="只读改账")
    async def sneaky(ctx, args):
        calls.runs.append(ctx.event_key)
        await post(ctx.unit, ctx.settings, "purchase_receipt", [line("CREAM", 5, "kg")], warehouse="WH1",
                   supplier="SUP1")
        return [text("不该到这里")]

    @registry.command("慢查", summary="test: slow on its first run", usage="慢查")
    async def slow(ctx, args):
        calls.runs.append(ctx.event_key)
        if len(calls.runs) == 1 and calls.gate is not None:
            await calls.gate.wait()
        return [text(f"第 {len(calls.runs)} 次")]

    ours = (receive, read_only, sneaky, slow)
    assert {c.names[0] for c in registry.COMMANDS if c.run in ours} == {"入库测试", "只读", "只读改账", "慢查"}
    assert [c.writes for c in registry.COMMANDS if c.run in ours] == [True, False, False, False]
    yield calls
    registry.COMMANDS[:] = [c for c in registry.COMMANDS if c.run not in ours]
    assert registry.COMMANDS == before


@pytest.fixture
async def seeded(db):
    """seed() (张库管 warehouse on WeCom "zhang") plus 李经理, a manager on WeCom and DingTalk."""

    async def work(s) -> None:
        await seed(s)
        s.add(User(name="李经理", department="管理部", roles="manager", wecom_user_id="li",
                   dingtalk_staff_id="staff-li"))

    await db.write(work)
    return db


def message(key: str, body: str) -> Inbound:
    return Inbound("wecom", "zhang", key, NOW, text=body)


def dispatcher(db, settings, tracker: TaskTracker, at: datetime = NOW) -> dispatch.Dispatcher:
    """Over `db`, serving people on WeCom and DingTalk (no splitting), with a fixed clock."""
    return dispatch.Dispatcher(db, settings, tracker, clock=lambda: at,
                               outbound=Outbound(whole, {}, frozenset({"wecom", "dingtalk"})))


def meet_first(monkeypatch, db, name: str, parties: int = 2) -> None:
    """On PostgreSQL, make `parties` concurrent calls of inbound_events.<name> meet inside their transactions
    before any of them goes on, so that they really overlap (a fresh connection otherwise lets one finish
    first). Not on SQLite: there one write transaction holds the database lock and the others wait for it."""
    if db.is_sqlite:
        return
    real, arrived, met = getattr(inbound_events, name), [], asyncio.Event()

    async def meeting(session, *args, **kw):
        await session.execute(select(1))  # this transaction has its connection
        arrived.append(1)
        if len(arrived) == parties:
            met.set()
        await asyncio.wait_for(met.wait(), 10)
        return await real(session, *args, **kw)

    monkeypatch.setattr(inbound_events, name, meeting)


def crashed_tracker(monkeypatch) -> TaskTracker:
    """A tracker whose process 'dies' before any handler runs: spawned coroutines are dropped unrun."""
    tracker = TaskTracker()
    monkeypatch.setattr(tracker, "spawn", lambda coro, name=None: coro.close())
    return tracker


async def store(db, *events: Inbound) -> None:
    """Store events as accept() does (held by the storing instance for the lease), without handling them."""

    async def work(s) -> None:
        for e in events:
            assert await dispatch.store_event(s, e)

    await db.write(work)


async def outbox_rows(db) -> list[tuple[str, dict, str]]:
    """(dedupe key, target, text) of every outbox row, by key."""
    async with db.read() as s:
        found = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.dedupe_key))).scalars()
        return [(r.dedupe_key, json.loads(r.target), json.loads(r.message)["text"]) for r in found]


async def events(db) -> dict[str, tuple[str, str | None]]:
    """dedupe key → (status, error) of every stored inbound event."""
    async with db.read() as s:
        found = (await s.execute(select(InboundEvent))).scalars()
        return {e.dedupe_key: (e.status, e.error) for e in found}


async def ledger(db) -> tuple[int, list[float]]:
    """(documents, quantities of every stock move): what a handler's posting changes."""
    async with db.read() as s:
        docs = (await s.execute(select(func.count()).select_from(Document))).scalar_one()
        moves = [float(q) for q in (await s.execute(select(StockMove.qty).order_by(StockMove.id))).scalars()]
        return docs, moves


def effect(key: str) -> list[tuple[str, dict, str]]:
    """The outbox rows of one successful 入库测试: the reply to the sender, the notice to 李经理 on both platforms."""
    return [(f"reply:{key}:0", ZHANG, RECEIVED),
            (f"reply:{key}:1>dingtalk:user:staff-li", LI_DINGTALK, NOTICE),
            (f"reply:{key}:1>wecom:user:li", LI_WECOM, NOTICE)]


async def run(d: dispatch.Dispatcher, tracker: TaskTracker, *events: Inbound) -> list[bool]:
    accepted = [await d.accept(e) for e in events]
    await tracker.close()
    await d.close()
    return accepted


# -- a write handler commits whole or not at all ----------------------------------------------------------


async def test_a_write_handler_commits_its_posting_replies_notices_and_mark_together(seeded, settings, handlers):
    tracker = TaskTracker()
    d = dispatcher(seeded, settings, tracker)
    assert await run(d, tracker, message("m1", "入库测试")) == [True]

    assert await ledger(seeded) == (1, [5.0])
    assert await outbox_rows(seeded) == effect("m1")
    assert await events(seeded) == {"m1": ("done", None)}
    assert handlers.runs == ["m1"] and handlers.sessions[0] is not None  # it ran in a unit of work
    assert d.queued == 3


async def test_a_write_handler_raising_after_posting_leaves_no_ledger_change_and_only_the_apology(
        seeded, settings, handlers):
    tracker = TaskTracker()
    d = dispatcher(seeded, settings, tracker)
    assert await run(d, tracker, message("m1", "入库测试 raise")) == [True]

    assert handlers.runs == ["m1"]  # it did run (and posted, in its unit) …
    assert await ledger(seeded) == (0, [])  # … but nothing of the posting is left
    assert await outbox_rows(seeded) == [("reply:m1:0", ZHANG, APOLOGY)]  # no reply, no notice to 李经理
    assert await events(seeded) == {"m1": ("failed", "RuntimeError: disk on fire after posting")}


async def test_a_domain_error_after_posting_rolls_back_and_is_the_answer(seeded, settings, handlers):
    tracker = TaskTracker()
    d = dispatcher(seeded, settings, tracker)
    assert await run(d, tracker, message("m1", "入库测试 refuse")) == [True]

    assert await ledger(seeded) == (0, [])
    assert await outbox_rows(seeded) == [("reply:m1:0", ZHANG, "入库被拒绝。\n处理办法：换个仓库再试。")]
    assert await events(seeded) == {"m1": ("done", None)}  # a refusal is an answer, not a failure


async def test_a_read_only_handler_has_no_unit_of_work(seeded, settings, handlers):
    tracker = TaskTracker()
    d = dispatcher(seeded, settings, tracker)
    assert await run(d, tracker, message("m1", "只读 x"), message("m2", "只读改账")) == [True, True]

    assert handlers.sessions == [None]  # 只读 got no session
    assert await ledger(seeded) == (0, [])  # 只读改账 could not post
    assert await outbox_rows(seeded) == [("reply:m1:0", ZHANG, "只读 x"), ("reply:m2:0", ZHANG, APOLOGY)]
    status, error = (await events(seeded))["m2"]
    assert status == "failed" and error.startswith("RuntimeError: this handler is not declared writes=True")


# -- one effect per event ---------------------------------------------------------------------------------


async def test_a_platform_retry_of_the_same_event_has_one_effect(seeded, settings, handlers):
    tracker = TaskTracker()
    d = dispatcher(seeded, settings, tracker)
    assert await run(d, tracker, message("m1", "入库测试"), message("m1", "入库测试")) == [True, False]

    assert handlers.runs == ["m1"]
    assert await ledger(seeded) == (1, [5.0])
    assert await outbox_rows(seeded) == effect("m1")


async def test_handling_the_same_event_twice_has_one_effect(seeded, settings, handlers):
    """A resume and the original run both reach handle(): the handled mark (first in the unit) stops the second."""
    e = message("m1", "入库测试")
    await store(seeded, e)
    d = dispatcher(seeded, settings, TaskTracker())
    await d.handle(e)
    await d.handle(e)
    await d.close()

    assert handlers.runs == ["m1"]  # the second handling found the event done before running the handler
    assert await ledger(seeded) == (1, [5.0])
    assert await outbox_rows(seeded) == effect("m1")
    assert await events(seeded) == {"m1": ("done", None)}


async def test_two_instances_handling_the_same_event_at_once_have_one_effect(seeded, settings, handlers, tmp_path,
                                                                            monkeypatch):
    """Two Dispatchers over their own connections to one database (two servers), at the same moment."""
    e = message("m1", "入库测试")
    await store(seeded, e)
    other = Database(test_database_url(tmp_path))
    try:
        d1, d2 = dispatcher(seeded, settings, TaskTracker()), dispatcher(other, settings, TaskTracker())
        meet_first(monkeypatch, seeded, "mark_handled")  # both reach the compare-and-set before either marks
        await asyncio.gather(d1.handle(e), d2.handle(e))
        await d1.close()
        await d2.close()
    finally:
        await other.dispose()

    assert await ledger(seeded) == (1, [5.0])
    assert await outbox_rows(seeded) == effect("m1")
    assert await events(seeded) == {"m1": ("done", None)}
    assert d1.queued + d2.queued == 3


# -- resume and its lease ---------------------------------------------------------------------------------


async def test_claim_unhandled_holds_an_event_for_the_lease_and_reclaims_it_once_the_lease_ran_out(seeded):
    async def claim(at: datetime) -> list[str]:
        found = await seeded.write(lambda s: inbound_events.claim_unhandled(s, at, lease_seconds=30))
        return [p["dedupe_key"] for p in found]

    await store(seeded, message("m1", "只读"))  # held by the storing instance until NOW + 30 s
    assert await claim(NOW + timedelta(seconds=10)) == []  # the storing instance is on it
    assert await claim(NOW + timedelta(seconds=31)) == ["m1"]  # it died: claimed, held until NOW + 61 s
    assert await claim(NOW + timedelta(seconds=40)) == []  # the claimer is on it
    assert await claim(NOW + timedelta(seconds=62)) == ["m1"]  # the claimer died too: reclaimed

    assert await seeded.write(lambda s: inbound_events.mark_handled(s, "m1", NOW + timedelta(seconds=63)))
    assert not await seeded.write(lambda s: inbound_events.mark_handled(s, "m1", NOW + timedelta(seconds=64)))
    assert not await seeded.write(lambda s: inbound_events.mark_failed(s, "m1", "late", NOW + timedelta(seconds=64)))
    assert await claim(NOW + timedelta(hours=1)) == []  # handled: never claimed again
    assert await events(seeded) == {"m1": ("done", None)}


async def test_claim_unhandled_takes_oldest_first_up_to_the_limit(seeded):
    await store(seeded, *(Inbound("wecom", "zhang", f"m{i}", NOW + timedelta(seconds=i), text="只读")
                          for i in (2, 0, 1)))
    first = await seeded.write(lambda s: inbound_events.claim_unhandled(s, LATER, limit=2))
    rest = await seeded.write(lambda s: inbound_events.claim_unhandled(s, LATER, limit=2))
    assert [p["dedupe_key"] for p in first] == ["m0", "m1"]
    assert [p["dedupe_key"] for p in rest] == ["m2"]
    assert first[0]["text"] == "只读" and first[0]["platform"] == "wecom"  # the payload resume rebuilds from


async def test_two_resumers_at_once_handle_each_unhandled_event_exactly_once(seeded, settings, handlers, tmp_path,
                                                                             monkeypatch):
    keys = [f"m{i}" for i in range(8)]
    crashed = dispatcher(seeded, settings, crashed_tracker(monkeypatch))
    for k in keys:  # stored and acknowledged; the instance died before handling any
        assert await crashed.accept(message(k, "入库测试"))
    await crashed.close()
    assert handlers.runs == []

    other = Database(test_database_url(tmp_path))
    try:
        t1, t2 = TaskTracker(), TaskTracker()
        d1, d2 = dispatcher(seeded, settings, t1, at=LATER), dispatcher(other, settings, t2, at=LATER)
        meet_first(monkeypatch, seeded, "claim_unhandled")  # both claim while the other's claim is open
        claimed = await asyncio.gather(d1.resume(), d2.resume())
        await asyncio.gather(t1.close(), t2.close())
        await d1.close()
        await d2.close()
        assert await d1.resume() == 0 and await d2.resume() == 0  # nothing left, and nothing claimed twice
    finally:
        await other.dispose()

    assert sum(claimed) == len(keys)
    assert sorted(handlers.runs) == keys  # each handler ran once, on one of the two
    docs, moves = await ledger(seeded)
    assert (docs, moves) == (len(keys), [5.0] * len(keys))
    assert await outbox_rows(seeded) == sorted(row for k in keys for row in effect(k))
    assert await events(seeded) == {k: ("done", None) for k in keys}


async def test_an_expired_lease_is_reclaimed_and_the_slow_first_run_has_no_second_effect(seeded, settings, handlers,
                                                                                        monkeypatch):
    handlers.gate = asyncio.Event()
    crashed = dispatcher(seeded, settings, crashed_tracker(monkeypatch))
    assert await crashed.accept(message("m1", "慢查"))
    await crashed.close()

    t1 = TaskTracker()
    d1 = dispatcher(seeded, settings, t1, at=LATER)
    assert await d1.resume() == 1  # claimed until LATER + 30 s; its handler hangs
    await asyncio.sleep(0.05)
    assert handlers.runs == ["m1"]
    t2 = TaskTracker()
    within = dispatcher(seeded, settings, t2, at=LATER + timedelta(seconds=20))
    assert await within.resume() == 0  # d1's lease holds
    t3 = TaskTracker()
    d3 = dispatcher(seeded, settings, t3, at=LATER + timedelta(seconds=31))
    assert await d3.resume() == 1  # d1's lease ran out: taken over
    await t3.close()
    await d3.close()
    assert await outbox_rows(seeded) == [("reply:m1:0", ZHANG, "第 2 次")]

    handlers.gate.set()  # d1's run finally finishes: the event is done already, it says nothing
    await t1.close()
    await d1.close()
    await t2.close()
    await within.close()
    assert handlers.runs == ["m1", "m1"]
    assert await outbox_rows(seeded) == [("reply:m1:0", ZHANG, "第 2 次")]
    assert await events(seeded) == {"m1": ("done", None)}
    assert d1.queued == 0 and d3.queued == 1


# -- the mark and the replies: nothing half done ----------------------------------------------------------


def fail_enqueue(monkeypatch, when=lambda key: True) -> list[str]:
    """Make core.messaging.outbound.enqueue crash for the keys `when` picks (a crash between the handled mark
    and the replies); returns the keys it was asked to queue."""
    real, seen = outbound_module.enqueue, []

    async def flaky(session, dedupe_key, *args, **kw):
        seen.append(dedupe_key)
        if when(dedupe_key):
            raise RuntimeError("crash while queuing")
        return await real(session, dedupe_key, *args, **kw)

    monkeypatch.setattr(outbound_module, "enqueue", flaky)
    return seen


async def test_a_crash_queuing_the_replies_of_a_write_handler_leaves_it_open_for_resume(seeded, settings, handlers,
                                                                                       monkeypatch):
    e = message("m1", "入库测试")
    await store(seeded, e)
    seen = fail_enqueue(monkeypatch)
    d = dispatcher(seeded, settings, TaskTracker())
    with pytest.raises(RuntimeError, match="crash while queuing"):
        await d.handle(e)  # the unit failed, then queuing the apology failed too
    await d.close()
    assert seen == ["reply:m1:0", "reply:m1:0"]  # the unit's reply, then the apology
    assert handlers.runs == ["m1"]
    assert await ledger(seeded) == (0, [])  # the posting went with the mark …
    assert await outbox_rows(seeded) == []  # … and the replies
    assert await events(seeded) == {"m1": ("new", None)}  # still open: not marked done without its replies

    monkeypatch.undo()  # the next start
    tracker = TaskTracker()
    d2 = dispatcher(seeded, settings, tracker, at=LATER)
    assert await d2.resume() == 1
    await tracker.close()
    await d2.close()
    assert await ledger(seeded) == (1, [5.0])
    assert await outbox_rows(seeded) == effect("m1")
    assert await events(seeded) == {"m1": ("done", None)}


async def test_a_crash_queuing_a_notice_takes_back_the_reply_queued_before_it(seeded, settings, handlers,
                                                                              monkeypatch):
    seen = fail_enqueue(monkeypatch, when=lambda key: key.startswith("reply:m1:1"))  # the notice to 李经理
    tracker = TaskTracker()
    d = dispatcher(seeded, settings, tracker)
    assert await run(d, tracker, message("m1", "入库测试")) == [True]

    assert seen[:2] == ["reply:m1:0", "reply:m1:1>wecom:user:li"]  # the reply was queued, then the notice crashed
    assert await ledger(seeded) == (0, [])
    assert await outbox_rows(seeded) == [("reply:m1:0", ZHANG, APOLOGY)]  # the queued reply went with the unit
    assert await events(seeded) == {"m1": ("failed", "RuntimeError: crash while queuing")}


async def test_a_crash_queuing_a_read_only_reply_leaves_the_event_unmarked(seeded, settings, handlers, monkeypatch):
    e = message("m1", "只读 x")
    await store(seeded, e)
    fail_enqueue(monkeypatch)
    d = dispatcher(seeded, settings, TaskTracker())
    with pytest.raises(RuntimeError, match="crash while queuing"):
        await d.handle(e)
    await d.close()
    assert await outbox_rows(seeded) == [] and await events(seeded) == {"m1": ("new", None)}

    monkeypatch.undo()
    tracker = TaskTracker()
    d2 = dispatcher(seeded, settings, tracker, at=LATER)
    assert await d2.resume() == 1
    await tracker.close()
    await d2.close()
    assert await outbox_rows(seeded) == [("reply:m1:0", ZHANG, "只读 x")]
    assert await events(seeded) == {"m1": ("done", None)}
