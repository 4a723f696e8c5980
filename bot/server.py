"""The aiohttp application: platform callbacks, the local console, health, and the background workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot import console, files, job_wiring, platforms
from bot.dispatch import Dispatcher
from bot.outbox_sender import OutboxSender, parse_outbox_config
from bot.tasks import TaskTracker
from bot.transport import Transport
from cards.parts import split_message
from core.config import Settings
from core.messaging import outbox
from core.messaging.outbound import Outbound
from core.scheduling import runs
from core.storage import Database
from core.storage.health import ping
from jobs.scheduler import scheduler_ctx

log = logging.getLogger(__name__)

DB = web.AppKey("db", Database)
SETTINGS = web.AppKey("settings", Settings)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
SENDER = web.AppKey("sender", OutboxSender)
CONSOLE_LOG = web.AppKey("console_log", console.ConsoleLog)
TRACKER = web.AppKey("tracker", TaskTracker)

MAX_BODY = 64 * 1024  # callbacks are small; anything larger is refused with 413 before it is read


def build_app(settings: Settings, db: Database, *, transports: dict[str, Transport] | None = None,
              clock: Callable[[], datetime] = lambda: datetime.now(UTC), jobs: bool = False) -> web.Application:
    """The application; `transports` adds/overrides platform clients (tests pass fakes' clients); `jobs` runs the
    scheduler with it (`jxcbot serve` does; tests ask for it)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_log_refusals])
    console_log = console.ConsoleLog()
    tracker = TaskTracker()
    outbox_cfg = parse_outbox_config(settings.raw)
    sender = OutboxSender(db, {"console": console.ConsoleTransport(console_log), **(transports or {})},
                          outbox_cfg.limits, outbox_cfg.settings, admin_targets=outbox_cfg.admin_targets)
    wecom, dingtalk = platforms.wecom_config(settings.raw), platforms.dingtalk_config(settings.raw)
    outbound = Outbound(split_message, settings.channels, platforms.people_platforms(settings, wecom, dingtalk))
    pictures = platforms.PictureFetchers()
    dispatcher = Dispatcher(db, settings, tracker, on_enqueued=sender.wake, clock=clock, delivered=lambda: sender.done,
                            outbound=outbound, fetch_picture=pictures)
    sender.on_done, sender.on_drained = dispatcher.backlog_shrank, dispatcher.outbox_drained
    app[DB], app[SETTINGS], app[DISPATCHER], app[SENDER] = db, settings, dispatcher, sender
    app[CONSOLE_LOG], app[TRACKER] = console_log, tracker
    if settings.console_enabled:
        app.add_routes(console.routes(console_log, db, dispatcher.accept))
    app.router.add_get("/healthz", healthz)
    app.add_routes(files.routes(db, clock))  # report attachments by their unguessable link
    if wecom is not None and wecom.has_app:  # group robots alone receive nothing
        app.add_routes(platforms.wecom_routes(wecom, dispatcher.accept))
    if dingtalk is not None and dingtalk.has_app:
        app.add_routes(platforms.dingtalk_routes(dingtalk, dispatcher.accept))
    if wecom is not None or dingtalk is not None:
        def register(name: str, transport: Transport) -> None:
            sender.transports.setdefault(name, transport)  # a transport passed in (tests) wins

        app.cleanup_ctx.append(platforms.transports_ctx(wecom, dingtalk, register, pictures))
    app.cleanup_ctx.append(_workers)
    if jobs:
        items = job_wiring.scheduled_jobs(settings)
        app.cleanup_ctx.append(scheduler_ctx(items, job_wiring.deps(settings, db, outbound, items,
                                                                    outbox_cfg.admin_targets, clock)))
    if dingtalk is not None and dingtalk.stream:  # started last, stopped first: its events are stored in time
        app.cleanup_ctx.append(platforms.dingtalk_stream_ctx(app, dingtalk, dispatcher.accept, tracker))
    if wecom is not None and wecom.longconn:  # the intelligent robot's connection: as the DingTalk stream
        app.cleanup_ctx.append(platforms.wecom_longconn_ctx(app, wecom, dispatcher.accept, tracker, sender.transports,
                                                            pictures))
    return app


@web.middleware
async def _log_refusals(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """A request aiohttp refuses before our handlers can (413 body too large, 405, 400) gets a log line too."""
    try:
        return await handler(request)
    except web.HTTPClientError as e:
        level = logging.DEBUG if e.status == 404 else logging.WARNING  # scanners probing paths: no noise
        log.log(level, "%s %s from %s refused: %d %s", request.method, request.path, request.remote, e.status,
                e.reason)
        raise


async def _workers(app: web.Application) -> AsyncIterator[None]:
    """Start the outbox sender; on shutdown let handler tasks finish, then stop the sender after them."""
    sender = app[SENDER]
    await sender.start()
    resumed = await app[DISPATCHER].resume()
    if resumed:
        log.warning("resuming %d inbound events left unhandled by the last run", resumed)
    resuming = asyncio.get_running_loop().create_task(app[DISPATCHER].resume_forever(), name="resume inbound")
    yield
    resuming.cancel()
    await asyncio.gather(resuming, return_exceptions=True)
    await app[TRACKER].close()
    await app[DISPATCHER].close()
    await sender.stop()


async def healthz(request: web.Request) -> web.Response:
    """Database reachable, outbox backlog, last job run (200 when the database answers, else 503)."""
    db = request.app[DB]
    body: dict[str, Any] = {"database": "ok", "outbox": None, "last_job_run": None,
                            "handlers_running": len(request.app[TRACKER])}
    try:
        await ping(db)
        async with db.read() as s:
            backlog = await outbox.backlog(s)
        body["outbox"] = {**asdict(backlog), "next_due": backlog.next_due.isoformat() if backlog.next_due else None}
        async with db.read() as s:
            last = await runs.last_runs(s)
        body["last_job_run"] = {name: {"period": r.period, "status": r.status, "attempts": r.attempts,
                                       "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                                       "result": r.result} for name, r in sorted(last.items())} or None
    except Exception as e:  # reported, not raised: this endpoint is for monitors
        log.warning("healthz: database check failed: %s", type(e).__name__)
        body["database"] = f"error: {type(e).__name__}"
        return web.json_response(body, status=503)
    return web.json_response(body)
