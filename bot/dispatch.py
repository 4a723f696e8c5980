"""The dispatcher: store an inbound event once, then (tracked, in the background) find its sender,
run the command and queue the replies in the outbox — the replies in the same transaction as the mark."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import bindparam, select

import handlers  # noqa: F401  (registers the commands)
from bot import parts
from bot.group_commit import GroupCommit
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from bot.transport import Target
from cards.model import Message, text
from core.errors import DomainError
from core.messaging import inbound as inbound_events
from core.models import User
from core.models.masters import parse_roles, roles_zh
from core.storage import Fast
from handlers.registry import Context, Sender, find

log = logging.getLogger(__name__)

UNREGISTERED = ("你还没有在 jxcbot 登记，暂时不能使用。请把这条消息转给管理员：管理员在用户表中填写你的{field}"
                "「{user_id}」后用 `jxcbot import users 用户表.xlsx` 导入即可。")
SENDER_TTL = 60.0  # seconds a known sender's roles are reused before they are read again
UNKNOWN_TTL = 5.0  # an unregistered sender is looked up again soon (they are being registered)
SENDER_CACHE = 10_000
PACE_BACKLOG = 32  # events being handled + replies not yet sent, beyond which acknowledgements wait
PACE_MAX_WAIT = 2.0  # seconds an acknowledgement waits at most (platforms retry after 5 s)
SESSION_MARGIN = 120  # seconds a DingTalk session webhook must still be valid to carry a reply
_ID_FIELD = {"wecom": ("wecom_user_id", "企业微信账号"), "dingtalk": ("dingtalk_staff_id", "钉钉员工 ID"),
             "console": ("name", "姓名")}


class Dispatcher:
    """Accepts inbound events (deduplicated, stored before the platform is answered) and handles them."""

    def __init__(self, db: Any, settings: Any, tracker: TaskTracker,
                 on_enqueued: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 delivered: Callable[[], int] | None = None) -> None:
        self.db, self.settings, self.tracker = db, settings, tracker
        # Reply rows queued by this dispatcher, and how many of them the outbox has finished with (by default
        # all: without a sender there is no reply backlog to pace by).
        self.queued = 0
        self._delivered = delivered or (lambda: self.queued)
        self.on_enqueued, self.clock = on_enqueued, clock
        # Events arriving together are stored in one transaction, and so are handlers' replies (group commit):
        # SQLite has one writer, and a transaction per callback made every acknowledgement queue behind it.
        self.stores, self.finishes = GroupCommit(db), GroupCommit(db)
        self._senders: dict[tuple[str, str], tuple[float, Sender | None]] = {}
        self._running = 0  # handlers spawned and not yet finished
        self._paced: list[asyncio.Future[None]] = []

    async def accept(self, event: Inbound) -> bool:
        """Store the event under its dedupe_key (committed before this returns) and start handling it;
        False for a platform retry."""

        def stored(new: bool) -> None:  # runs at commit, even if the platform's request was cancelled meanwhile
            if not new:
                return
            try:
                self.tracker.spawn(self._counted(event), name=f"handle {event.dedupe_key}")
            except RuntimeError:  # shutting down: it is stored, and the next start handles it (resume)
                log.warning("inbound %s stored during shutdown; it is handled on the next start", event.dedupe_key)
                return
            self._running += 1

        if not await self.stores.submit(lambda session: store_event(session, event), on_commit=stored):
            log.info("duplicate inbound %s ignored", event.dedupe_key)
            return False
        await self._pace()
        return True

    async def _pace(self) -> None:
        """Flow control: while many events are being handled or their replies wait to be sent, hold this
        acknowledgement back (at most PACE_MAX_WAIT; the event is stored already) so a burst does not pile up
        replies behind acknowledgements the bot cannot keep up with."""
        if self._backlog() <= PACE_BACKLOG:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._paced.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), PACE_MAX_WAIT)
        except TimeoutError:
            pass
        finally:
            if waiter in self._paced:
                self._paced.remove(waiter)

    async def _counted(self, event: Inbound) -> None:
        try:
            await self.handle(event)
        finally:
            self._running -= 1
            self.backlog_shrank()

    def _backlog(self) -> int:
        return self._running + max(0, self.queued - self._delivered())

    def backlog_shrank(self) -> None:
        """Let the held acknowledgements go once the backlog is down to the mark (the outbox sender calls
        this after each row it finishes with). All of them: their events are counted already, and letting
        them go together keeps the group commits large."""
        if self._backlog() <= PACE_BACKLOG:
            paced, self._paced = self._paced, []
            for waiter in paced:
                if not waiter.done():
                    waiter.set_result(None)

    def outbox_drained(self, in_flight: int) -> None:
        """The outbox sender found no more due rows: of the replies queued here only the `in_flight` rows it
        holds are still unsent (the rest were sent — maybe by another server instance, which `delivered` does not
        count —, or wait for a retry, which is no reason to hold acknowledgements)."""
        self.queued = self._delivered() + in_flight
        self.backlog_shrank()

    async def close(self) -> None:
        """Commit what is queued (call after the handler tasks have finished)."""
        await self.stores.close()
        await self.finishes.close()

    async def resume(self) -> int:
        """Handle again the events a crash left stored but unhandled; returns how many (replies are keyed by
        the event, so one already queued before the crash is not queued twice)."""
        async with self.db.read() as s:
            pending = await inbound_events.unhandled(s)
        for data in pending:
            try:
                event = _event(data)
            except (KeyError, TypeError, ValueError):
                log.error("stored inbound event %s cannot be read back; left unhandled", data.get("dedupe_key"))
                continue
            self.tracker.spawn(self.handle(event), name=f"resume {event.dedupe_key}")
        return len(pending)

    async def handle(self, event: Inbound) -> None:
        """Run the event's command and queue the replies; a failure is answered and recorded, never lost."""
        error: str | None = None
        try:
            replies = await self._replies(event)
        except DomainError as e:
            replies = [text(f"{e.message_zh}\n处理办法：{e.fix_zh}" if e.fix_zh else e.message_zh)]
        except Exception as e:  # the sender still gets an answer; the event is marked failed with the reason
            log.exception("handling %s failed", event.dedupe_key)
            error = f"{type(e).__name__}: {e}"
            replies = [text("抱歉，处理这条消息时出错了，已记录，请稍后再试或联系管理员。")]
        target = reply_target(event)
        now = self.clock()

        async def finish(session: Any) -> int:
            rows = 0
            for i, message in enumerate(replies):  # a long reply: one row per part (bot.parts)
                rows += await parts.enqueue(session, f"reply:{event.dedupe_key}:{i}", target, message, now)
            if error is None:
                await inbound_events.mark_handled(session, event.dedupe_key, now)
            else:
                await inbound_events.mark_failed(session, event.dedupe_key, error, now)
            return rows

        rows = await self.finishes.submit(finish)  # not `self.queued += await …`: that reads queued before waiting
        self.queued += rows
        self.on_enqueued()

    async def _replies(self, event: Inbound) -> list[Message]:
        sender = await self.sender(event)
        if sender is None:
            label = _ID_FIELD[event.platform][1]
            return [text(UNREGISTERED.format(field=label, user_id=event.user_id))]
        if event.action is not None:
            return [text("这个按钮对应的审批功能还未开放，请稍后再试。")]
        ctx = Context(sender=sender, platform=event.platform, now=self.clock(), db=self.db, settings=self.settings)
        found = find(event.text or "")
        if found is None:
            return [text(f"没有看懂「{_short(event.text or '')}」。发送「帮助」查看可用的命令，例如：库存 奶油")]
        cmd, args = found
        if not cmd.allowed(sender):
            return [text(f"「{cmd.names[0]}」需要以下角色之一：{roles_zh(cmd.roles)}。"
                         "如需开通请联系管理员。")]
        return await cmd.run(ctx, args)

    async def sender(self, event: Inbound) -> Sender | None:
        """The registered jxcbot user behind the event's platform id, or None.

        Kept for SENDER_TTL seconds (a read session per message was a sixth of the server's CPU under load),
        so a change of roles or a new registration applies within that time."""
        key = (event.platform, event.user_id)
        now = time.monotonic()
        hit = self._senders.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        rows = await self.db.fetch(_SENDER[event.platform], {"uid": event.user_id})
        user = rows[0] if rows else None
        found = None
        if user is not None:
            found = Sender(user.id, user.name, parse_roles(user.roles), user.department or "")
        if len(self._senders) >= SENDER_CACHE:
            self._senders.clear()
        self._senders[key] = (now + (SENDER_TTL if found is not None else UNKNOWN_TTL), found)
        return found


# One prepared statement per platform id column (the lookup runs for every message of a sender not cached).
_SENDER = {platform: Fast(select(User.id, User.name, User.roles, User.department)
                          .where(getattr(User, column) == bindparam("uid")))
           for platform, (column, _) in _ID_FIELD.items()}


def reply_target(event: Inbound) -> Target:
    """Where the answer goes: the DingTalk session webhook while valid (falling back to the group or the
    sender should it expire before the reply is sent), else the group, else the sender."""
    if event.platform == "dingtalk":
        direct = Target("dingtalk", "group", event.chat_id) if event.chat_id else Target("dingtalk", "user",
                                                                                         event.user_id)
        hook, expires = event.reply.get("session_webhook"), event.reply.get("session_webhook_expires")
        # A session webhook lives ~1.5 h; one about to expire would only delay the reply.
        if hook and expires and int(expires) > (time.time() + SESSION_MARGIN) * 1000:
            return Target("dingtalk", "session", str(hook), int(expires), fallback=direct)
        return direct
    return Target(event.platform, "user", event.user_id)


async def store_event(session: Any, event: Inbound) -> bool:
    """Record an inbound event under its dedupe_key in the caller's transaction; False for a platform retry."""
    return await inbound_events.record_inbound(
        session, platform=event.platform, user_id=event.user_id, dedupe_key=event.dedupe_key,
        chat_id=event.chat_id, payload=event_payload(event), received_at=event.received_at)


def event_payload(event: Inbound) -> dict[str, Any]:
    """What is stored of an inbound event (JSON-able; `resume` reads it back)."""
    return {"platform": event.platform, "user_id": event.user_id, "dedupe_key": event.dedupe_key,
            "received_at": event.received_at.isoformat(), "chat_id": event.chat_id, "text": event.text,
            "action": event.action, "reply": dict(event.reply)}


def _event(data: dict[str, Any]) -> Inbound:
    return Inbound(data["platform"], data["user_id"], data["dedupe_key"],
                   datetime.fromisoformat(data["received_at"]), chat_id=data.get("chat_id"),
                   text=data.get("text"), action=data.get("action"), reply=MappingProxyType(data.get("reply") or {}))


def _short(s: str, limit: int = 20) -> str:
    return s if len(s) <= limit else s[:limit] + "…"
