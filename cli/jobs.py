"""jxcbot jobs (schedule, next and last run of each job) and jxcbot job run <名称> [--period P] (one run now, through
the same claim as the scheduler: a period already done is not run again)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bot import job_wiring, platforms
from bot.outbox_sender import parse_outbox_config
from cards.parts import split_message
from core.config import Settings
from core.errors import DomainError
from core.messaging.outbound import Outbound
from core.scheduling import runs
from core.storage import Database
from jobs.runner import run_job
from jobs.scheduler import last_fire

EXIT_OK, EXIT_FAILED = 0, 1


async def cmd_jobs(settings: Settings, _args: argparse.Namespace, db: Database) -> int:
    """Each job: name, title, schedule, channel, next run, last run with its result."""
    items = job_wiring.scheduled_jobs(settings)
    async with db.read() as s:
        last = await runs.last_runs(s)
    now = datetime.now(UTC).astimezone(settings.timezone)
    for item in items:
        nxt = item.trigger.get_next_fire_time(None, now) if item.enabled else None
        run = last.get(item.job.name)
        ran = (f"{run.period} {dict(running='运行中', done='完成', failed='失败')[run.status]}"
               f"{'（第 ' + str(run.attempts) + ' 次）' if run.attempts > 1 else ''}：{run.result[:60]}"
               if run else "尚未运行")
        when = f"{nxt:%Y-%m-%d %H:%M}" if nxt else "—"
        print(f"{item.job.name:<18} {item.job.title}\n  时间表 {item.cron}（{settings.timezone.key}）"
              f"{'' if item.enabled else ' 已停用'}  频道 {item.channel or '—'}\n  下次 {when}  上次 {ran}")
    return EXIT_OK


async def cmd_job_run(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    """Run one job now for its due period (or --period), once across instances."""
    items = {i.job.name: i for i in job_wiring.scheduled_jobs(settings)}
    item = items.get(args.name)
    if item is None:
        raise DomainError("UNKNOWN_JOB", f"没有名为「{args.name}」的定时任务", "可选：" + "、".join(sorted(items)))
    wecom, dingtalk = platforms.wecom_config(settings.raw), platforms.dingtalk_config(settings.raw)
    outbound = Outbound(split_message, settings.channels, platforms.people_platforms(settings, wecom, dingtalk))
    admins = parse_outbox_config(settings.raw).admin_targets
    deps = job_wiring.deps(settings, db, outbound, list(items.values()), admins)
    period = args.period
    if period is None:
        fire = last_fire(item.trigger, datetime.now(UTC)) or datetime.now(UTC).astimezone(settings.timezone)
        period = item.job.period(fire)
    print(f"运行 {item.job.title}（{item.job.name}），周期 {period} …")
    outcome = await run_job(item.job, period, deps)
    if not outcome.ran:
        print(f"周期 {period} 已运行过（或正在其他实例上运行），本次不再重复发送。")
        return EXIT_OK
    if not outcome.ok:
        print(f"失败：{outcome.result}")
        return EXIT_FAILED
    print(f"完成：{outcome.result}；排队消息 {outcome.queued} 条（由运行中的 jxcbot serve 发出）。")
    return EXIT_OK
