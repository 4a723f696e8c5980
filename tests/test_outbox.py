"""The durable outbox and inbound de-duplication: exactly-once delivery, retries, rate limits, crashes."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy import text as sql

from bot.outbox_sender import OutboxSender, SenderSettings, parse_outbox_config
from bot.rate_limit import RateLimit, RateLimiter
from bot.transport import SendError
from cards.model import Message, text
from cards.parts import split_message
from core.config import ConfigError
from core.messaging import outbox
from core.messaging.inbound import mark_failed, mark_handled, purge_inbound, record_inbound
from core.messaging.outbound import enqueue
from core.messaging.targets import Target
from core.models import Customer, InboundEvent, OutboxMessage
from core.models.messaging import fit_key
from core.storage import Database
from tests.conftest import PG_URL, reset_schema, test_database_url

T0 = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
WH_ROBOT = Target("wecom", "robot", "warehouse")
OPS_ROBOT = Target("wecom", "robot", "ops")
DT_ROBOT = Target("dingtalk", "robot", "warehouse")
ADMIN = Target("wecom", "user", "admin01")


_pg_schema_built = False


@pytest.fixture
async def db(tmp_path):
    """conftest's fresh database, except that on PostgreSQL the schema is built once for this module and
    each test only empties the tables it uses (a schema rebuild there costs ~0.3 s per test)."""
    global _pg_schema_built
    database = Database(test_database_url(tmp_path))
    if PG_URL and _pg_schema_built:
        async with database.engine.begin() as conn:
            for table in ("outbox", "inbound_events", "customers"):
                await conn.execute(sql(f"DELETE FROM {table}"))
    else:
        await reset_schema(database)
        _pg_schema_built = bool(PG_URL)
    yield database
    await database.dispose()


class Clock:
    """A controllable clock for the sender (no real waiting)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


class MaxJitter(random.Random):
    """'Jitter' that always takes the whole backoff cap, so delays are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


class FakeTransport:
    """An in-memory platform: records deliveries; `fail(target, message)` may return an exception to raise."""

    def __init__(self, platform: str, fail=None, sent: list | None = None, gate: asyncio.Event | None = None):
        self.platform = platform
        self.fail = fail
        self.sent = [] if sent is None else sent
        self.calls = 0
        self.gate = gate
        self.entered = asyncio.Event()

    async def send(self, target: Target, message: Message) -> None:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        error = self.fail(target, message) if self.fail else None
        if error is not None:
            raise error
        self.sent.append((target.address, message.text))


def sender_for(db: Database, clock: Clock, *transports: FakeTransport, **kw) -> OutboxSender:
    kw.setdefault("settings", SenderSettings(batch_size=10, lease_seconds=300, send_timeout=5))
    kw.setdefault("rng", MaxJitter())
    return OutboxSender(db, {t.platform: t for t in transports}, clock=clock, **kw)


async def put(db: Database, key: str, target: Target, body: str, now: datetime = T0) -> bool:
    return await db.write(lambda s: enqueue(s, key, target, text(body), now, split=split_message))


async def drain(sender: OutboxSender, clock: Clock, step: float = 1.0, rounds: int = 2000) -> None:
    """Run the sender in simulated time until nothing is open: jump the clock to the next due row.

    While another sender holds claims, wait for it instead (jumping would expire its lease)."""
    for _ in range(rounds):
        if await sender.run_once():
            continue
        async with sender.db.read() as s:
            backlog = await outbox.backlog(s)
        if backlog.next_due is None:
            return
        if backlog.sending:
            await asyncio.sleep(0.001)
            continue
        clock.now = max(clock.now + timedelta(seconds=step), backlog.next_due)
    raise AssertionError("outbox did not drain")


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.read() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


# -- enqueue ------------------------------------------------------------------------------------------


async def test_enqueue_commits_and_rolls_back_with_the_business_change(db):
    async with db.session() as s:
        s.add(Customer(code="C9", name="新客户"))
        assert await enqueue(s, "customer:C9", ADMIN, text("新客户 C9"), T0, split=split_message)

    with pytest.raises(RuntimeError):
        async with db.session() as s:
            s.add(Customer(code="C10", name="不会保存"))
            await enqueue(s, "customer:C10", ADMIN, text("新客户 C10"), T0, split=split_message)
            raise RuntimeError("the handler failed after enqueuing")

    async with db.read() as s:
        assert list((await s.execute(select(Customer.code))).scalars()) == ["C9"]
    assert [r.dedupe_key for r in await rows(db)] == ["customer:C9"]


async def test_duplicate_dedupe_key_gives_one_row_and_one_send(db):
    assert await put(db, "report:2026-11-25", WH_ROBOT, "日报")
    assert not await put(db, "report:2026-11-25", WH_ROBOT, "日报（重跑）")
    async with db.session() as s:  # a duplicate inside a bigger transaction does not break it
        assert not await enqueue(s, "report:2026-11-25", WH_ROBOT, text("again"), T0, split=split_message)
        s.add(Customer(code="C9", name="照常提交"))
    wecom = FakeTransport("wecom")
    clock = Clock()
    await drain(sender_for(db, clock, wecom), clock)
    await drain(sender_for(db, clock, wecom), clock)  # another sender finds nothing left
    assert wecom.sent == [("warehouse", "日报")]
    assert [(r.status, r.attempts) for r in await rows(db)] == [("sent", 1)]


# -- failures -----------------------------------------------------------------------------------------


async def test_retryable_failure_is_retried_with_growing_delay_until_sent(db):
    failures = iter([SendError("busy", retryable=True, code=-1)] * 3)
    wecom = FakeTransport("wecom", fail=lambda t, m: next(failures, None))
    clock = Clock()
    sender = sender_for(db, clock, wecom, settings=SenderSettings(base_delay=5, max_delay=1800))
    await put(db, "k1", ADMIN, "hello")
    delays = []
    while True:
        await sender.run_once()
        (row,) = await rows(db)
        if row.status == "sent":
            break
        assert row.status == "pending" and row.last_error == "-1: busy"
        delays.append((row.next_attempt_at - clock.now).total_seconds())
        clock.now = row.next_attempt_at - timedelta(seconds=1)
        assert await sender.run_once() == 0  # not due a second early
        clock.now = row.next_attempt_at
    assert delays == [5, 10, 20]  # base·2^(n-1), jitter at its cap
    assert wecom.calls == 4 and row.attempts == 4 and wecom.sent == [("admin01", "hello")]


def test_backoff_has_full_jitter_under_an_exponential_cap():
    rng = random.Random(7)
    for attempts, cap in [(1, 5), (2, 10), (5, 80), (12, 1800), (500, 1800)]:
        samples = [outbox.backoff_delay(attempts, 5, 1800, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in samples)
        assert max(samples) > cap * 0.9 and min(samples) < cap * 0.1


async def test_permanent_error_is_dead_at_once_with_one_admin_alert(db):
    wecom = FakeTransport("wecom", fail=lambda t, m: SendError("invalid webhook url", retryable=False, code=93000)
                          if t.kind == "robot" else None)
    clock = Clock()
    sender = sender_for(db, clock, wecom, admin_targets=[ADMIN])
    await put(db, "alert:freeze:1", WH_ROBOT, "冻结")
    await drain(sender, clock)
    await drain(sender, clock)
    dead, alert = await rows(db)
    assert (dead.status, dead.attempts, dead.last_error) == ("dead", 1, "93000: invalid webhook url")
    assert (alert.status, alert.dedupe_key) == ("sent", f"outbox-dead:{dead.id}:0")
    assert wecom.calls == 2 and len(wecom.sent) == 1
    address, body = wecom.sent[0]
    assert address == "admin01" and "alert:freeze:1" in body and "93000" in body
    async with db.read() as s:
        assert [d.dedupe_key for d in await outbox.dead_letters(s)] == ["alert:freeze:1"]
        assert (await outbox.backlog(s)) == outbox.Backlog(pending=0, sending=0, dead=1, next_due=None)


async def test_max_attempts_means_dead_and_one_alert_and_a_dead_alert_raises_no_other(db):
    down = SendError("busy", retryable=True, code=-1)
    dingtalk = FakeTransport("dingtalk", fail=lambda t, m: down)
    clock = Clock()
    # the admin target's platform has no transport: the alert dies too, but is not alerted about again
    sender = sender_for(db, clock, dingtalk, admin_targets=[Target("wecom", "robot", "admins")],
                        settings=SenderSettings(max_attempts=3, base_delay=1, max_delay=10))
    await put(db, "k1", DT_ROBOT, "x")
    await drain(sender, clock)
    first, alert = await rows(db)
    assert (first.status, first.attempts, dingtalk.calls) == ("dead", 3, 3)
    assert alert.dedupe_key == f"outbox-dead:{first.id}:0"
    assert (alert.status, alert.last_error) == ("dead", "no transport for platform 'wecom'")


async def test_unexpected_transport_errors_are_retried_and_credentials_never_stored(db):
    leak = RuntimeError("POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-secret&debug=1 failed")
    failures = iter([leak, TimeoutError()])
    wecom = FakeTransport("wecom", fail=lambda t, m: next(failures, None))
    clock = Clock()
    sender = sender_for(db, clock, wecom)
    await put(db, "k1", WH_ROBOT, "x")
    await sender.run_once()
    (row,) = await rows(db)
    assert row.status == "pending" and "secret" not in row.last_error and "key=***&debug=1" in row.last_error
    await drain(sender, clock)
    (row,) = await rows(db)
    assert (row.status, row.attempts, wecom.calls) == ("sent", 3, 3)


async def test_a_slow_send_times_out_and_is_retried(db):
    class Slow(FakeTransport):
        async def send(self, target, message):
            if not self.calls:
                self.calls += 1
                await asyncio.sleep(10)
            await super().send(target, message)

    wecom = Slow("wecom")
    clock = Clock()
    sender = sender_for(db, clock, wecom, settings=SenderSettings(send_timeout=0.01, lease_seconds=300))
    await put(db, "k1", WH_ROBOT, "x")
    await sender.run_once()
    (row,) = await rows(db)
    assert (row.status, row.last_error) == ("pending", "timeout after 0.01 s")
    await drain(sender, clock)
    assert wecom.sent == [("warehouse", "x")]


# -- rate limits and platform blocks ------------------------------------------------------------------


async def test_21_robot_messages_in_a_minute_send_20_and_defer_the_rest_without_blocking_others(db):
    clock = Clock()
    wecom = FakeTransport("wecom")
    sender = sender_for(db, clock, wecom)
    for i in range(21):
        await put(db, f"wh{i}", WH_ROBOT, f"wh{i}")
        if i % 7 == 0:
            await put(db, f"ops{i}", OPS_ROBOT, f"ops{i}")
    while await sender.run_once():
        pass
    sent = Counter(address for address, _ in wecom.sent)
    assert sent == {"warehouse": 20, "ops": 3}
    (waiting,) = [r for r in await rows(db) if r.status != "sent"]
    assert (waiting.dedupe_key, waiting.status, waiting.attempts) == ("wh20", "pending", 0)  # deferred, not failed
    assert waiting.next_attempt_at == T0 + timedelta(seconds=60)
    clock.at(59)
    assert await sender.run_once() == 0
    clock.at(60)
    await sender.run_once()
    assert wecom.sent[-1] == ("warehouse", "wh20") and wecom.calls == 24


def test_limiter_applies_every_window_and_the_longest_decides():
    limiter = RateLimiter({"wecom:user": (RateLimit(3, 60), RateLimit(5, 3600))})
    user, other = Target("wecom", "user", "u1"), Target("dingtalk", "user", "u1")
    assert [limiter.reserve(user, T0) for _ in range(3)] == [None] * 3
    assert limiter.reserve(user, T0) == T0 + timedelta(seconds=60)
    assert limiter.reserve(other, T0) is None  # not limited
    assert [limiter.reserve(user, T0 + timedelta(seconds=60)) for _ in range(2)] == [None, None]
    assert limiter.reserve(user, T0 + timedelta(seconds=120)) == T0 + timedelta(seconds=3600)


def test_a_slot_given_back_is_free_again():
    limiter = RateLimiter({"wecom:robot": (RateLimit(2, 60),)})
    robot = Target("wecom", "robot", "r")
    assert limiter.reserve(robot, T0) is None and limiter.reserve(robot, T0) is None
    assert limiter.reserve(robot, T0) is not None
    limiter.unreserve(robot, T0)  # e.g. another instance had the slot: this send did not happen
    assert limiter.reserve(robot, T0) is None


async def test_retry_after_blocks_the_target_and_is_honoured(db):
    clock = Clock()
    throttled = {"on": True}

    def fail(target, message):
        if target == DT_ROBOT and throttled.pop("on", False):
            return SendError("send too fast", retryable=True, code=130101, retry_after=600)
        return None

    dingtalk = FakeTransport("dingtalk", fail=fail)
    sender = sender_for(db, clock, dingtalk)
    for i in range(3):
        await put(db, f"d{i}", DT_ROBOT, f"d{i}")
    await put(db, "other", Target("dingtalk", "robot", "ops"), "other")
    await sender.run_once()
    assert dingtalk.calls == 2 and dingtalk.sent == [("ops", "other")]
    assert {r.dedupe_key: (r.status, r.attempts, r.next_attempt_at) for r in await rows(db) if r.status != "sent"} == {
        "d0": ("pending", 1, T0 + timedelta(seconds=600)),
        "d1": ("pending", 0, T0 + timedelta(seconds=600)),
        "d2": ("pending", 0, T0 + timedelta(seconds=600)),
    }
    clock.at(10)
    await put(db, "d3", DT_ROBOT, "d3", clock.now)  # new, due now, but the robot is blocked
    await sender.run_once()
    clock.at(599)
    assert await sender.run_once() == 0
    assert dingtalk.calls == 2
    clock.at(600)
    await drain(sender, clock)
    assert [b for _, b in dingtalk.sent] == ["other", "d0", "d1", "d2", "d3"]


# -- crashes, restarts, outages -----------------------------------------------------------------------


async def test_claims_of_a_sender_that_dies_come_back_after_the_lease_and_are_sent_once(db):
    clock = Clock()
    delivered: list = []
    stuck = FakeTransport("wecom", sent=delivered, gate=asyncio.Event())  # never answers
    first = sender_for(db, clock, stuck)
    for i in range(5):
        await put(db, f"k{i}", Target("wecom", "user", f"u{i}"), f"m{i}")
    task = asyncio.create_task(first.run_once())
    await asyncio.wait_for(stuck.entered.wait(), 2)
    task.cancel()  # the process dies mid-send
    with pytest.raises(asyncio.CancelledError):
        await task
    claimed = await rows(db)
    assert {(r.status, r.attempts) for r in claimed} == {("sending", 1)}
    stale = outbox.Claimed(claimed[0].id, "k0", {}, {}, 1, T0 + timedelta(seconds=300), T0)

    second = sender_for(db, clock, FakeTransport("wecom", sent=delivered))
    clock.at(299)
    assert await second.run_once() == 0  # the lease still holds
    clock.at(300)
    assert await second.run_once() == 5
    assert sorted(delivered) == [(f"u{i}", f"m{i}") for i in range(5)]
    assert [(r.status, r.attempts) for r in await rows(db)] == [("sent", 2)] * 5
    # the dead sender's late report cannot undo the delivery (its claim number is stale)
    assert await db.write(lambda s: outbox.mark_failed(s, stale, "late", retryable=True, retry_after=None,
                                                       now=clock.now, max_attempts=9, base_delay=1,
                                                       max_delay=9)) == ""
    assert {r.status for r in await rows(db)} == {"sent"}


async def test_a_new_sender_delivers_the_backlog_and_remembers_the_rate_window(db):
    clock = Clock()
    delivered: list = []
    before = sender_for(db, clock, FakeTransport("wecom", sent=delivered))
    for i in range(15):
        await put(db, f"a{i}", WH_ROBOT, f"a{i}")
    await drain(before, clock)
    for i in range(10):
        await put(db, f"b{i}", WH_ROBOT, f"b{i}")
    # restart: a new instance (new limiter) ten seconds later
    clock.at(10)
    after = sender_for(db, clock, FakeTransport("wecom", sent=delivered))
    await after.start()
    await after.stop()  # seeded the window; the loop ran at most once
    while await after.run_once():
        pass
    assert len(delivered) == 20  # 15 + 5 in the first minute, not 15 + 10
    await drain(after, clock)
    assert sorted(b for _, b in delivered) == sorted([f"a{i}" for i in range(15)] + [f"b{i}" for i in range(10)])
    assert clock.now == T0 + timedelta(seconds=60)


async def test_platform_down_for_ten_minutes_then_everything_arrives_once(db):
    clock = Clock()
    down = SendError("system busy", retryable=True, code=-1)
    wecom = FakeTransport("wecom", fail=lambda t, m: down if clock.now < T0 + timedelta(seconds=600) else None)
    sender = sender_for(db, clock, wecom, rng=random.Random(3))  # default settings: real jitter
    for i in range(8):
        await put(db, f"k{i}", Target("wecom", "user", f"u{i % 4}"), f"m{i}")
    await drain(sender, clock)
    assert wecom.calls > 8 * 4
    assert sorted(b for _, b in wecom.sent) == sorted(f"m{i}" for i in range(8))
    assert all(r.status == "sent" and r.sent_at >= T0 + timedelta(seconds=600) for r in await rows(db))


async def test_start_wake_and_stop_let_the_send_in_flight_finish(db):
    gate = asyncio.Event()
    wecom = FakeTransport("wecom", gate=gate)
    sender = sender_for(db, Clock(), wecom, settings=SenderSettings(poll_interval=30))
    await sender.start()
    for i in range(3):
        await put(db, f"k{i}", WH_ROBOT, f"m{i}")
    sender.wake()
    await asyncio.wait_for(wecom.entered.wait(), 2)
    stopping = asyncio.create_task(sender.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # waits for the send in flight
    gate.set()
    await asyncio.wait_for(stopping, 2)
    assert wecom.sent == [("warehouse", "m0")]
    assert [(r.status, r.attempts) for r in await rows(db)] == [("sent", 1), ("pending", 0), ("pending", 0)]


async def test_overlapping_batches_keep_each_targets_order(db):
    """While one batch is still sending, the next is claimed; its rows for the same target wait their turn,
    rows for other targets go at once."""
    gate = asyncio.Event()
    slow = FakeTransport("wecom", gate=gate)
    sender = sender_for(db, Clock(), slow, settings=SenderSettings(batch_size=1, lease_seconds=300,
                                                                   send_timeout=5, poll_interval=30))
    for i in range(2):
        await put(db, f"k{i}", WH_ROBOT, f"m{i}")
    await sender.start()
    sender.wake()
    await asyncio.wait_for(slow.entered.wait(), 2)  # m0 is being sent, held at the gate
    for _ in range(100):  # the loop claims the next batch (m1) meanwhile
        if [r.status for r in await rows(db)] == ["sending", "sending"]:
            break
        await asyncio.sleep(0.01)
    assert [r.status for r in await rows(db)] == ["sending", "sending"]
    assert slow.calls == 1  # m1 waits for m0: same target
    gate.set()
    for _ in range(200):
        if len(slow.sent) == 2:
            break
        await asyncio.sleep(0.01)
    await sender.stop()
    assert slow.sent == [("warehouse", "m0"), ("warehouse", "m1")]


async def test_two_senders_on_postgresql_deliver_each_message_once(db):
    if db.is_sqlite:
        pytest.skip("SQLite has one writer at a time; concurrent senders need PostgreSQL (SKIP LOCKED)")
    other = Database(db.url)
    try:
        # a claim holds row locks until it commits: the other instance skips those rows, it does not wait
        async with db.session() as s:
            for i in range(10):
                await enqueue(s, f"p{i}", Target("dingtalk", "user", f"u{i}"), text("x"), T0, split=split_message)
        async with db.session() as s:
            mine = await outbox.claim_due(s, T0, 5, 300)
            theirs = await asyncio.wait_for(other.write(lambda s2: outbox.claim_due(s2, T0, 5, 300)), 5)
            assert not {c.id for c in mine} & {c.id for c in theirs} and len(theirs) == 5
        async with db.session() as s:
            await s.execute(OutboxMessage.__table__.delete())

        async with db.session() as s:
            for i in range(60):
                await enqueue(s, f"k{i}", Target("dingtalk", "user", f"u{i % 12}"), text(f"m{i}"), T0,
                              split=split_message)
        delivered: list = []
        clock = Clock()
        settings = SenderSettings(batch_size=4, lease_seconds=300, send_timeout=5)
        one = sender_for(db, clock, FakeTransport("dingtalk", sent=delivered), settings=settings)
        two = sender_for(other, clock, FakeTransport("dingtalk", sent=delivered), settings=settings)
        await asyncio.gather(drain(one, clock), drain(two, clock))
        assert sorted(b for _, b in delivered) == sorted(f"m{i}" for i in range(60))
        assert one.transports["dingtalk"].sent is two.transports["dingtalk"].sent
        assert one.transports["dingtalk"].calls and two.transports["dingtalk"].calls
    finally:
        await other.dispose()


async def test_two_senders_on_postgresql_share_a_robots_rate_limit(db):
    """Each instance counts its own sends; on PostgreSQL the outbox counts everyone's, so two instances
    together still send at most 3 per minute to one robot (without the shared check: 3 each)."""
    if db.is_sqlite:
        pytest.skip("concurrent sender instances need PostgreSQL")
    other = Database(db.url)
    try:
        for i in range(8):
            await put(db, f"r{i}", WH_ROBOT, f"m{i}")
        limits = {"wecom:robot": (RateLimit(3, 60),)}
        delivered: list = []
        clock = Clock()
        settings = SenderSettings(batch_size=2, lease_seconds=300, send_timeout=5)  # both get rows to send
        one = sender_for(db, clock, FakeTransport("wecom", sent=delivered), limits=limits, settings=settings)
        two = sender_for(other, clock, FakeTransport("wecom", sent=delivered), limits=limits, settings=settings)
        for _ in range(3):
            await asyncio.gather(one.run_once(), two.run_once())
        assert one.transports["wecom"].calls and two.transports["wecom"].calls  # both instances sent
        assert len(delivered) == 3  # within the first minute, across both instances
        clock.at(61)
        for _ in range(3):
            await asyncio.gather(one.run_once(), two.run_once())
        assert len(delivered) == 6
        assert sorted(b for _, b in delivered) == sorted({b for _, b in delivered})  # none twice
    finally:
        await other.dispose()


# -- inbound de-duplication ---------------------------------------------------------------------------


async def test_inbound_dedupe_true_false_false_and_the_transaction_stays_usable(db):
    event = dict(platform="wecom", user_id="zhang", dedupe_key="zhang:7301", received_at=T0,
                 payload={"text": "库存 奶油", "at": T0})
    async with db.session() as s:
        assert [await record_inbound(s, **event) for _ in range(3)] == [True, False, False]
        s.add(Customer(code="C9", name="同一事务"))
        assert await mark_handled(s, "zhang:7301", T0)
    long_key = "zhang:" + "E" * 1024  # a WeCom click key can be longer than the column
    async with db.session() as s:
        assert await record_inbound(s, platform="wecom", user_id="zhang", dedupe_key=long_key, received_at=T0,
                                    chat_id="g1")
        assert not await record_inbound(s, platform="wecom", user_id="zhang", dedupe_key=long_key, received_at=T0)
        assert await mark_failed(s, long_key, "handler raised", T0)
        assert not await mark_handled(s, "unknown", T0)
    async with db.read() as s:
        got = list((await s.execute(select(InboundEvent).order_by(InboundEvent.id))).scalars())
        assert (await s.execute(select(func.count()).select_from(Customer))).scalar_one() == 1
    assert [(e.dedupe_key, e.status, e.chat_id) for e in got] == [
        ("zhang:7301", "done", None), (fit_key(long_key), "failed", "g1")]
    assert got[0].payload == '{"at": "2026-11-25 01:00:00+00:00", "text": "库存 奶油"}'
    async with db.session() as s:
        assert await purge_inbound(s, T0 + timedelta(days=1)) == 2


# -- configuration ------------------------------------------------------------------------------------


def test_outbox_config_from_the_raw_settings():
    cfg = parse_outbox_config({})
    assert cfg.settings == SenderSettings() and cfg.admin_targets == () and cfg.limits["wecom:robot"][0].count == 20
    cfg = parse_outbox_config({"outbox": {
        "max_attempts": "5", "base_delay": 2, "admin_targets": "wecom:robot:admins, dingtalk:user:mgr01",
        "limits": {"dingtalk:robot": "10/60", "wecom:user": "", "dingtalk:group": "20/60, 100/3600"}}})
    assert cfg.settings.max_attempts == 5 and cfg.settings.base_delay == 2
    assert cfg.admin_targets == (Target("wecom", "robot", "admins"), Target("dingtalk", "user", "mgr01"))
    assert cfg.limits["dingtalk:robot"] == (RateLimit(10, 60),) and cfg.limits["wecom:user"] == ()
    assert cfg.limits["dingtalk:group"] == (RateLimit(20, 60), RateLimit(100, 3600))
    for bad in ({"limits": {"wecom:robot": "20"}}, {"admin_targets": ["wecom:robot"]}, {"retries": 3},
                {"max_attempts": "many"}, {"lease_seconds": 10}):
        with pytest.raises(ConfigError):
            parse_outbox_config({"outbox": bad})


async def test_a_wecom_send_whose_answer_was_lost_does_not_reach_the_user_twice(db):
    """WeCom delivered the message but its answer came too late: the sender times out and tries again. The
    re-send asks WeCom to drop it if an identical message reached the user since the row was queued
    (enable_duplicate_check), so the user gets it once; a first attempt never asks."""
    import aiohttp

    from bot.wecom.client import WeComClient, WeComTransport
    from tests.fakes.wecom import PATH_SEND, FakeWeCom, Fault

    async with FakeWeCom(users={"zhang"}) as fake, aiohttp.ClientSession() as http:
        fake.inject(PATH_SEND, Fault(late=1.0))
        app = WeComClient(http, fake.corp_id, fake.agent_id, fake.secret, fake.base_url, timeout=5.0)
        sender = OutboxSender(db, {"wecom": WeComTransport(app, None)},
                              settings=SenderSettings(send_timeout=0.3, base_delay=0.05, max_delay=0.1))
        await put(db, "k1", Target("wecom", "user", "zhang"), "淡奶油 12 kg", datetime.now(UTC))
        for _ in range(200):
            await sender.run_once()
            if (await rows(db))[0].status == "sent":
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # the first attempt's late answer has come and gone
        assert [m["text"]["content"] for m in fake.messages] == ["淡奶油 12 kg"]
        assert "enable_duplicate_check" not in fake.messages[0]  # the first attempt is never swallowed
        assert len(fake.duplicates) == 1 and fake.duplicates[0]["enable_duplicate_check"] == 1
        assert 60 <= fake.duplicates[0]["duplicate_check_interval"] <= 120
        assert (await rows(db))[0].attempts == 2
