"""Running one job for one period: claim it, run it with its lease kept alive, record the outcome; a failure is
logged and told to `[outbox] admin_targets`, and the period stays claimable for the next catch-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cards.model import text
from core.config import Settings
from core.messaging.outbound import Outbound
from core.messaging.targets import Target
from core.scheduling import runs
from core.storage import Database
from jobs.context import JobContext
from jobs.registry import Job

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """What every run needs, wired by the server or the CLI."""

    db: Database
    settings: Settings
    outbound: Outbound
    owner: str
    admin_targets: Sequence[Target] = ()
    channels: dict[str, str] = field(default_factory=dict)  # job name → its configured channel
    extras: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    lease: timedelta = runs.LEASE


@dataclass(frozen=True)
class Outcome:
    """What a run did: ran (False: done already or held by another instance), ok, the summary or error, rows."""

    job: str
    period: str
    ran: bool
    ok: bool = True
    result: str = ""
    queued: int = 0


async def run_job(job: Job, period: str, deps: Deps) -> Outcome:
    """Run `job` for `period` once across every instance and retry: the claim decides who runs it."""
    now = deps.clock()
    claim = await deps.db.write(lambda s: runs.claim(s, job.name, period, deps.owner, now, deps.lease))
    if claim is None:
        log.info("job %s %s: done already or running elsewhere", job.name, period)
        return Outcome(job.name, period, ran=False)
    ctx = JobContext(job.name, period, now, deps.db, deps.settings, deps.outbound,
                     deps.channels.get(job.name, job.channel), dict(deps.extras))
    keeper = asyncio.get_running_loop().create_task(_keep(claim, deps), name=f"lease {job.name}")
    try:
        summary = await job.run(ctx)
    except Exception as e:  # recorded and alerted; the period is retried by the next catch-up
        log.exception("job %s %s failed", job.name, period)
        error = f"{type(e).__name__}: {e}"
        await deps.db.write(lambda s: runs.finish(s, claim, deps.clock(), ok=False, result=error))
        await _alert(job, period, claim.attempt, error, deps)
        return Outcome(job.name, period, ran=True, ok=False, result=error, queued=ctx.queued)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    await deps.db.write(lambda s: runs.finish(s, claim, deps.clock(), ok=True, result=summary))
    log.info("job %s %s done: %s (%d messages queued)", job.name, period, summary, ctx.queued)
    return Outcome(job.name, period, ran=True, ok=True, result=summary, queued=ctx.queued)


async def _keep(claim: runs.Claim, deps: Deps) -> None:
    """Extend the lease while the run works (a third of the lease each time)."""
    while True:
        await asyncio.sleep(deps.lease.total_seconds() / 3)
        if not await deps.db.write(lambda s: runs.extend(s, claim, deps.clock(), deps.lease)):
            log.warning("job run %d: lease lost to another instance", claim.run_id)
            return


async def _alert(job: Job, period: str, attempt: int, error: str, deps: Deps) -> None:
    """Tell the admins (once per attempt) that a run failed and will be retried."""
    if not deps.admin_targets:
        return
    message = text(f"【jxcbot 定时任务失败】{job.title}（{job.name}，周期 {period}，第 {attempt} 次）：{error[:300]}\n"
                   f"下一次定时运行时会自动补跑；也可手动运行：jxcbot job run {job.name} --period {period}")

    async def queue(s: Any) -> int:
        rows = 0
        for target in deps.admin_targets:
            rows += await deps.outbound.send(s, f"jobalert:{job.name}:{period}:{attempt}:{target.rate_key}",
                                             target, message, deps.clock())
        return rows

    try:
        await deps.db.write(queue)
    except Exception:  # the alert must not hide the failure it reports
        log.exception("job %s %s: the failure alert could not be queued", job.name, period)
