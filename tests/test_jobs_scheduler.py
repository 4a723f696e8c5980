"""The scheduler's guarantees: one run per (job, period) across retries, restarts, takeovers and two instances;
failures alerted and retried by the next catch-up; a long outage catches up once; timezones on the triggers."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.server import build_app
from cards.model import text
from cards.parts import split_message
from core.config import ConfigError
from core.messaging.outbound import Outbound
from core.messaging.recipients import ToUser
from core.messaging.targets import Target
from core.models import JobRun, OutboxMessage, User
from core.scheduling import runs
from core.storage import Database
from jobs.config import Scheduled, scheduled, trigger
from jobs.registry import JOBS, Job, day, hour
from jobs.runner import Deps, run_job
from jobs.scheduler import build_scheduler, catch_up, last_fire
from tests.conftest import test_database_url

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
async def people(db):
    async def work(s) -> int:
        u = User(name="陈经理", roles="manager", department="运营")
        s.add(u)
        await s.flush()
        return u.id

    return await db.write(work)


def deps(db, settings, clock, owner="a", admins=()) -> Deps:
    return Deps(db, settings, Outbound(split_message), owner=owner, admin_targets=admins, clock=clock)


async def outbox_keys(db) -> list[str]:
    async with db.read() as s:
        return sorted(await s.scalars(select(OutboxMessage.dedupe_key)))


async def test_a_period_is_claimed_once_and_a_failed_or_abandoned_one_is_taken_over(db):
    async def claim(owner, at):
        return await db.write(lambda s: runs.claim(s, "j", "2026-12-07", owner, at, timedelta(minutes=10)))

    first = await claim("a", T0)
    assert first is not None and first.attempt == 1
    assert await claim("b", T0 + timedelta(minutes=5)) is None  # held
    taken = await claim("b", T0 + timedelta(minutes=11))  # a crashed: its lease ran out
    assert taken is not None and taken.attempt == 2 and taken.owner == "b"
    assert not await db.write(lambda s: runs.finish(s, first, T0, ok=True, result="late"))  # a lost its claim
    assert await db.write(lambda s: runs.finish(s, taken, T0, ok=False, result="boom"))
    again = await claim("c", T0 + timedelta(minutes=12))  # a failed run is claimable
    assert again is not None and again.attempt == 3
    assert await db.write(lambda s: runs.finish(s, again, T0, ok=True, result="ok"))
    assert await claim("d", T0 + timedelta(days=1)) is None  # done: never again


async def test_two_instances_claiming_at_once_one_wins(db, tmp_path):
    other = Database(test_database_url(tmp_path))
    try:
        got = await asyncio.gather(*(d.write(lambda s, o=o: runs.claim(s, "j", "p", o, T0))
                                     for d, o in ((db, "a"), (other, "b"), (db, "c"), (other, "d"))))
    finally:
        await other.dispose()
    assert sum(c is not None for c in got) == 1


@pytest.fixture
def test_jobs():
    """Test jobs registered for the duration of a test."""
    added: list[str] = []

    def add(name: str, fn, period=day, cron="35 8 * * *") -> Job:
        JOBS[name] = Job(name, f"测试任务 {name}", cron, period, fn)
        added.append(name)
        return JOBS[name]

    yield add
    for name in added:
        JOBS.pop(name, None)


async def test_a_rerun_or_a_second_instance_sends_nothing_new(db, settings, people, test_jobs):
    async def report(ctx):
        await ctx.send(ToUser(people), text(f"日报 {ctx.period}"), "report")
        return "sent"

    job = test_jobs("daily", report)
    clock = Clock(T0)
    first = await run_job(job, "2026-12-07", deps(db, settings, clock, "a"))
    second = await run_job(job, "2026-12-07", deps(db, settings, clock, "b"))
    assert first.ran and first.queued == 1 and not second.ran
    assert await outbox_keys(db) == ["job:daily:2026-12-07:report>console:user:陈经理"]


async def test_a_run_killed_half_way_is_taken_over_and_each_message_goes_once(db, settings, people, test_jobs):
    calls = []

    async def two_parts(ctx):
        await ctx.send(ToUser(people), text("第一部分"), "a")
        calls.append(ctx.period)
        if len(calls) == 1:
            raise asyncio.CancelledError  # the process dies here: no outcome recorded, the lease runs out
        await ctx.send(ToUser(people), text("第二部分"), "b")
        return "ok"

    job = test_jobs("twice", two_parts)
    clock = Clock(T0)
    with pytest.raises(asyncio.CancelledError):
        await run_job(job, "2026-12-07", deps(db, settings, clock, "a"))
    clock.at = T0 + timedelta(minutes=11)
    done = await run_job(job, "2026-12-07", deps(db, settings, clock, "b"))
    assert done.ran and done.ok
    assert await outbox_keys(db) == ["job:twice:2026-12-07:a>console:user:陈经理",
                                     "job:twice:2026-12-07:b>console:user:陈经理"]


async def test_a_failure_is_alerted_and_retried_by_the_next_catch_up(db, settings, people, test_jobs):
    attempts = []

    async def flaky(ctx):
        attempts.append(ctx.period)
        if len(attempts) == 1:
            raise RuntimeError("数据库太忙")
        return "ok"

    job = test_jobs("flaky", flaky)
    admin = Target("console", "user", "管理员")
    clock = Clock(datetime(2026, 12, 7, 0, 40, tzinfo=UTC))  # 08:40 local, after the 08:35 fire
    d = deps(db, settings, clock, admins=(admin,))
    item = Scheduled(job, job.cron, trigger(job.cron, TZ), "", True)
    await catch_up(item, d)
    assert attempts == ["2026-12-07"]
    keys = await outbox_keys(db)
    assert keys == ["jobalert:flaky:2026-12-07:1:console:user:管理员"]
    clock.at = datetime(2026, 12, 8, 0, 40, tzinfo=UTC)  # next day's fire: yesterday's failure first, then today
    await catch_up(item, d)
    assert attempts == ["2026-12-07", "2026-12-07", "2026-12-08"]
    async with db.read() as s:
        assert {(r.period, r.status, r.attempts) for r in await s.scalars(select(JobRun))} == {
            ("2026-12-07", "done", 2), ("2026-12-08", "done", 1)}


async def test_after_a_three_hour_outage_an_hourly_job_catches_up_once(db, settings, test_jobs):
    ran = []

    async def hourly(ctx):
        ran.append(ctx.period)
        return "ok"

    job = test_jobs("hourly", hourly, period=hour, cron="7 * * * *")
    item = Scheduled(job, job.cron, trigger(job.cron, TZ), "", True)
    clock = Clock(datetime(2026, 12, 7, 2, 8, tzinfo=UTC))  # 10:08 local
    await catch_up(item, deps(db, settings, clock))
    clock.at = datetime(2026, 12, 7, 5, 20, tzinfo=UTC)  # down from 10:08 to 13:20: 11:07, 12:07, 13:07 missed
    await catch_up(item, deps(db, settings, clock))
    await catch_up(item, deps(db, settings, clock))  # a second instance's start, or the missed-run listener
    assert ran == ["2026-12-07T10", "2026-12-07T13"]


def test_triggers_carry_the_timezone_whatever_the_host(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    t = trigger("35 8 * * *", TZ)
    nxt = t.get_next_fire_time(None, datetime(2026, 12, 7, 0, 0, tzinfo=UTC))
    assert nxt == datetime(2026, 12, 7, 8, 35, tzinfo=TZ)
    assert last_fire(t, datetime(2026, 12, 7, 0, 0, tzinfo=UTC)) == datetime(2026, 12, 6, 8, 35, tzinfo=TZ)
    monthly = trigger("3 9 5 * *", TZ)
    assert last_fire(monthly, datetime(2026, 12, 20, tzinfo=UTC)) == datetime(2026, 12, 5, 9, 3, tzinfo=TZ)


def test_jobs_configuration_is_checked():
    with pytest.raises(ConfigError) as e:
        scheduled({"jobs": {"nosuch": {"cron": "1 2 * * *"}}}, TZ)
    assert "未知的定时任务" in str(e.value)
    with pytest.raises(ConfigError) as e:
        scheduled({"jobs": {"integrity": {"cron": "every day"}}}, TZ)
    assert "[jobs.integrity] cron" in str(e.value) and "不是有效的 cron" in str(e.value)
    with pytest.raises(ConfigError) as e:
        scheduled({"jobs": {"integrity": {"chanel": "x"}}}, TZ)
    assert "[jobs.integrity] chanel" in str(e.value)
    items = {i.job.name: i for i in scheduled({"jobs": {"integrity": {"minutes": 5, "enabled": False}}}, TZ)}
    assert items["integrity"].cron == "*/5 * * * *" and not items["integrity"].enabled


async def test_the_scheduler_starts_with_the_app_and_healthz_reports_the_last_runs(db, settings):
    app = build_app(settings, db, jobs=True)  # built outside a running loop's start: no RuntimeError
    async with TestClient(TestServer(app)) as client:
        for _ in range(200):
            body = await (await client.get("/healthz")).json()
            if (body["last_job_run"] or {}).get("integrity", {}).get("status") == "done":
                break
            await asyncio.sleep(0.02)
        assert body["last_job_run"]["integrity"]["status"] == "done"


async def test_build_scheduler_uses_explicit_defaults(db, settings, test_jobs):
    async def nothing(ctx):
        return "ok"

    job = test_jobs("noop", nothing)
    items = [Scheduled(job, job.cron, trigger(job.cron, TZ), "", True),
             Scheduled(replace(job, name="off"), job.cron, trigger(job.cron, TZ), "", False)]
    sched = build_scheduler(items, deps(db, settings, Clock(T0)), lambda coro: coro.close())
    assert sched._job_defaults == {"misfire_grace_time": 3600, "coalesce": True, "max_instances": 1}
    assert str(sched.timezone) == "Asia/Shanghai"
    assert [j.id for j in sched.get_jobs()] == ["noop"]  # the disabled one is not scheduled


async def test_jobs_command_and_job_run(db, tmp_path, capsys):  # db: a fresh schema
    from cli.main import run

    url = test_database_url(tmp_path)
    cfg = tmp_path / "jxcbot.toml"
    cfg.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    await run(["--config", str(cfg), "init"])
    assert await run(["--config", str(cfg), "job", "run", "integrity", "--period", "2026-12-07T09:07"]) == 0
    assert await run(["--config", str(cfg), "job", "run", "integrity", "--period", "2026-12-07T09:07"]) == 0
    out = capsys.readouterr().out
    assert "完成：无异常" in out and "已运行过" in out
    assert await run(["--config", str(cfg), "jobs"]) == 0
    listing = capsys.readouterr().out
    assert "integrity" in listing and "上次 2026-12-07T09:07 完成：无异常" in listing and "下次 20" in listing
    assert await run(["--config", str(cfg), "job", "run", "nosuch"]) == 2
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(JobRun)) == 1


async def test_two_schedulers_on_one_database_send_one_report_per_period(db, settings, people, test_jobs, tmp_path):
    """Two instances (own connections) fire the same job for the same period at the same moment."""
    ran = []

    async def report(ctx):
        ran.append(ctx.period)
        await asyncio.sleep(0.05)  # both are inside their runs at once, had both claimed
        await ctx.send(ToUser(people), text(f"日报 {ctx.period}"), "report")
        return "sent"

    job = test_jobs("twin", report)
    other = Database(test_database_url(tmp_path))
    try:
        a, b = await asyncio.gather(run_job(job, "2026-12-07", deps(db, settings, Clock(T0), "a")),
                                    run_job(job, "2026-12-07", deps(other, settings, Clock(T0), "b")))
    finally:
        await other.dispose()
    assert sorted([a.ran, b.ran]) == [False, True] and ran == ["2026-12-07"]
    assert await outbox_keys(db) == ["job:twin:2026-12-07:report>console:user:陈经理"]


async def test_a_fire_runs_the_catch_up_on_the_event_loop(db, settings, test_jobs):
    """The scheduler calls the job's fire on its own: it must start the run on the loop (a plain function would be
    run in a worker thread, where there is no loop to start it on)."""
    ran = asyncio.Event()

    async def noted(ctx):
        ran.set()
        return "ok"

    job = test_jobs("fired", noted, cron="* * * * *")
    items = [Scheduled(job, job.cron, trigger(job.cron, TZ), "", True)]
    tasks: list[asyncio.Task] = []
    sched = build_scheduler(items, deps(db, settings, Clock(datetime.now(UTC))),
                            lambda coro: tasks.append(asyncio.get_running_loop().create_task(coro)))
    sched.start()
    try:
        sched.get_job("fired").modify(next_run_time=datetime.now(TZ))
        sched.wakeup()
        await asyncio.wait_for(ran.wait(), 10)
    finally:
        sched.shutdown(wait=False)
        await asyncio.gather(*tasks, return_exceptions=True)
