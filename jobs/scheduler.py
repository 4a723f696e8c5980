"""APScheduler 3.11 in each instance: an in-memory job store (never shared — its FAQ), explicit job defaults
(misfire grace, coalesce, one instance per job), a listener that logs and alerts missed runs, the configured
timezone on the scheduler and on every trigger; at start and on every fire the due period is run through the
claim (jobs.runner), so a restart, an outage, a misfire or a second instance runs each period once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from core.scheduling import runs
from jobs.config import Scheduled
from jobs.runner import Deps, Outcome, run_job

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"misfire_grace_time": 3600, "coalesce": True, "max_instances": 1}
LOOKBACK = timedelta(days=40)  # a monthly job's last fire is within this


def last_fire(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The trigger's latest fire time at or before `now` (APScheduler 3 has no 'previous fire')."""
    tz = trigger.timezone
    probe = trigger.get_next_fire_time(None, now.astimezone(tz))
    after = trigger.get_next_fire_time(probe, probe + timedelta(seconds=1)) if probe else None
    step = (after - probe) if probe and after else LOOKBACK
    start = now.astimezone(tz) - min(LOOKBACK, step * 2 + timedelta(days=1))
    last, fire = None, trigger.get_next_fire_time(None, start)
    while fire is not None and fire <= now:
        last, fire = fire, trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last


async def catch_up(item: Scheduled, deps: Deps) -> list[Outcome]:
    """Run the period of the latest due fire if it has not run, and the one before it if that one failed."""
    now = deps.clock()
    fire = last_fire(item.trigger, now)
    if fire is None:
        return []
    periods = [item.job.period(fire)]
    before = last_fire(item.trigger, fire - timedelta(seconds=1))
    if before is not None and item.job.period(before) != periods[0]:
        previous = item.job.period(before)
        found = await _state(deps, item.job.name, previous)
        if found is not None and (found.status == "failed" or (found.status == "running" and found.lease_until < now)):
            periods.insert(0, previous)
    return [await run_job(item.job, p, deps) for p in periods]


async def _state(deps: Deps, job: str, period: str) -> Any:
    async with deps.db.read() as s:
        return await runs.state(s, job, period)


def build_scheduler(items: list[Scheduled], deps: Deps, spawn: Callable[[Any], Any]) -> AsyncIOScheduler:
    """The scheduler (not started): one APScheduler job per enabled jxcbot job, each fire running its catch-up
    as a tracked task (`spawn`)."""
    scheduler = AsyncIOScheduler(timezone=deps.settings.timezone, job_defaults=dict(JOB_DEFAULTS))
    by_id = {item.job.name: item for item in items}

    async def fire(name: str) -> None:  # a coroutine function: APScheduler's asyncio executor runs it on the loop
        spawn(catch_up(by_id[name], deps))  # (a plain function would run in a worker thread, with no loop there)

    for item in items:
        if item.enabled:
            scheduler.add_job(fire, item.trigger, args=[item.job.name], id=item.job.name, name=item.job.title)

    def missed(event: JobExecutionEvent) -> None:
        log.warning("job %s missed its run at %s (beyond the misfire grace); the catch-up will run it",
                    event.job_id, event.scheduled_run_time)
        if event.job_id in by_id:
            spawn(catch_up(by_id[event.job_id], deps))

    scheduler.add_listener(missed, EVENT_JOB_MISSED)
    return scheduler


def scheduler_ctx(items: list[Scheduled], deps: Deps) -> Callable[[Any], AsyncIterator[None]]:
    """An aiohttp cleanup_ctx: start the scheduler with the app (and catch up every enabled job), stop it on
    shutdown after the runs in flight finish."""

    async def ctx(_app: Any) -> AsyncIterator[None]:
        tasks: set[asyncio.Task[Any]] = set()

        def done(task: asyncio.Task[Any]) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("a job run could not start", exc_info=task.exception())

        def spawn(coro: Any) -> None:
            task = asyncio.get_running_loop().create_task(coro)
            tasks.add(task)
            task.add_done_callback(done)

        scheduler = build_scheduler(items, deps, spawn)
        scheduler.start()
        for item in items:
            if item.enabled:
                spawn(catch_up(item, deps))
        yield
        scheduler.shutdown(wait=False)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    return ctx
