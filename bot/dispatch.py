"""The dispatcher: store an inbound event once, then (tracked, in the background) find its sender, route it to
its command or card action and queue the replies and notices in the outbox, in the same transaction as the
event's handled mark (and, for a handler that writes, as its unit of work)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import handlers  # noqa: F401  (registers the commands and card actions)
from bot.group_commit import GroupCommit
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from cards.model import Message, text
from cards.parts import split_message
from core.errors import DomainError
from core.ledger.freeze import freeze_held
from core.messaging import inbound as inbound_events
from core.messaging import people, recipients
from core.messaging.outbound import Outbound
from core.messaging.recipients import Recipient
from core.messaging.targets import Target
from handlers.help import not_understood
from handlers.registry import PICTURES, SCANS, Action, Answer, Command, Context, Picture, Sender, find, find_action

log = logging.getLogger(__name__)

UNREGISTERED = ("你还没有在 jxcbot 登记，暂时不能使用。请把这条消息转给管理员：管理员在用户表中填写你的{field}"
                "「{user_id}」后用 `jxcbot import users 用户表.xlsx` 导入即可。")
SENDER_TTL = 60.0  # seconds a known sender's roles are reused before they are read again
UNKNOWN_TTL = 5.0  # an unregistered sender is looked up again soon (they are being registered)
SENDER_CACHE = 10_000
PACE_BACKLOG = 32  # events being handled + replies not yet sent, beyond which acknowledgements wait
PACE_MAX_WAIT = 2.0  # seconds an acknowledgement waits at most (platforms retry after 5 s)
SESSION_MARGIN = 120  # seconds a DingTalk session webhook must still be valid to carry a reply
_ID_LABEL = {"wecom": "企业微信账号", "dingtalk": "钉钉员工 ID", "console": "姓名"}
UNKNOWN_BUTTON = ("这个按钮已失效或无法识别（{key}）。卡片可能来自旧版本或已被处理，"
                  "请发送「帮助」查看可用的命令。")
RESUME_EVERY = 15.0  # seconds between looks for events whose handling instance died (their lease ran out)


class Dispatcher:
    """Accepts inbound events (deduplicated, stored before the platform is answered) and handles them."""

    def __init__(self, db: Any, settings: Any, tracker: TaskTracker,
                 on_enqueued: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 delivered: Callable[[], int] | None = None, outbound: Outbound | None = None,
                 fetch_picture: Callable[[Inbound], Awaitable[Picture]] | None = None) -> None:
        self.db, self.settings, self.tracker = db, settings, tracker
        # How a picture message's bytes are fetched (bot.platforms: WeCom media/get, DingTalk downloadCode).
        self.fetch_picture = fetch_picture or console_picture
        # Where replies and notices go: people on the platforms served, [channels] by name (bot.platforms).
        self.outbound = outbound or Outbound(split_message, getattr(settings, "channels", {}), frozenset({"console"}))
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
        """Claim (with a lease) and handle again the events a crash left stored but unhandled — this
        instance's or another's whose lease ran out; returns how many. The handled mark is a compare-and-set,
        so an event another instance finishes meanwhile has no second effect."""
        pending = await self.db.write(lambda s: inbound_events.claim_unhandled(s, self.clock()))
        for data in pending:
            try:
                event = _event(data)
            except (KeyError, TypeError, ValueError):
                log.error("stored inbound event %s cannot be read back; left unhandled", data.get("dedupe_key"))
                continue
            self.tracker.spawn(self.handle(event), name=f"resume {event.dedupe_key}")
        return len(pending)

    async def resume_forever(self, every: float = RESUME_EVERY) -> None:
        """resume() every `every` seconds (a tracked task: events of an instance that died are taken over)."""
        while True:
            await asyncio.sleep(every)
            try:
                if resumed := await self.resume():
                    log.warning("resumed %d inbound events whose handling was interrupted", resumed)
            except Exception:  # the database is down: try again next round
                log.exception("resuming unhandled inbound events failed")

    async def handle(self, event: Inbound) -> None:
        """Run the event's command or card action and queue what it says; a failure is answered and recorded,
        never lost. A handler that writes runs in one transaction with its replies and the handled mark."""
        error: str | None = None
        notices: list[tuple[Recipient, Message]] = []
        try:
            routed = await self._route(event)
            if isinstance(routed, list):
                replies = routed
            elif routed[0].writes:
                pic = await self.fetch_picture(event) if event.image is not None else None
                await self._unit_of_work(event, *routed, picture=pic)
                return
            else:
                ctx = self._context(event, routed[2])
                replies = await routed[0].run(ctx, routed[1])
                await self._resolvable(ctx.notices)  # an unknown channel is the sender's error, not the batch's
                notices = ctx.notices
        except Answer as a:  # a pick list or a question back: nothing changed
            replies = a.messages
        except DomainError as e:  # bad input or a refused rule: said to the sender; nothing else changed
            replies = [text(f"{e.message_zh}\n处理办法：{e.fix_zh}" if e.fix_zh else e.message_zh)]
            if e.code == "MAGNITUDE_GUARD":  # a held quantity freezes its pair, though the handler's work rolled back
                held = e
                await self.db.write(lambda s: freeze_held(s, held, self.clock(), event.user_id))
        except Exception as e:  # the sender still gets an answer; the event is marked failed with the reason
            log.exception("handling %s failed", event.dedupe_key)
            error = f"{type(e).__name__}: {e}"
            replies = [text("抱歉，处理这条消息时出错了，已记录，请稍后再试或联系管理员。")]
        now = self.clock()

        async def finish(session: Any) -> int:
            if error is None:
                marked = await inbound_events.mark_handled(session, event.dedupe_key, now)
            else:
                marked = await inbound_events.mark_failed(session, event.dedupe_key, error, now)
            # Not open any more: a retry, a resume or another instance handled it — say nothing twice.
            return await self._queue(session, event, replies, notices, now) if marked else 0

        rows = await self.finishes.submit(finish)  # not `self.queued += await …`: that reads queued before waiting
        self._queued(rows)

    async def _unit_of_work(self, event: Inbound, entry: Command | Action, args: str, sender: Sender,
                            picture: Picture | None = None) -> None:
        """A writing handler's whole effect in one transaction: the handled mark first (a compare-and-set: on a
        second handling it finds the event done and nothing happens), the handler's changes, its replies and
        notices. A DomainError rolls everything back and reaches handle() as the answer."""
        now = self.clock()

        async def work(session: Any) -> int:
            if not await inbound_events.mark_handled(session, event.dedupe_key, now):
                return 0
            ctx = self._context(event, sender, session, picture)  # afresh on each attempt: a retried transaction
            replies = await entry.run(ctx, args)
            return await self._queue(session, event, replies, ctx.notices, now)

        self._queued(await self.db.write(work))

    async def _resolvable(self, notices: list[tuple[Recipient, Message]]) -> None:
        """Raise the DomainError a read-only handler's notice would raise when queued (an unconfigured
        channel), before its finish joins a group-commit batch whose other events it would fail."""
        if not notices:
            return
        async with self.db.read() as session:
            for to, _message in notices:
                await recipients.resolve(session, to, self.outbound.channels, self.outbound.platforms)

    def _queued(self, rows: int) -> None:
        self.queued += rows
        self.on_enqueued()

    async def _queue(self, session: Any, event: Inbound, replies: list[Message],
                     notices: list[tuple[Recipient, Message]], now: datetime) -> int:
        """Replies to where the event came from, then notices, keyed reply:{dedupe_key}:{i}."""
        target = reply_target(event)
        items: list[tuple[Recipient, Message]] = [(target, m) for m in replies] + notices
        return await self.outbound.send_all(session, f"reply:{event.dedupe_key}", items, now)

    def _context(self, event: Inbound, sender: Sender, session: Any = None, picture: Picture | None = None) -> Context:
        card = event.reply.get("response_code") or event.reply.get("card_id") if event.action is not None else None
        return Context(sender=sender, platform=event.platform, now=self.clock(), db=self.db,
                       settings=self.settings, event_key=event.dedupe_key, session=session,
                       card_ref=str(card) if card else None, picture=picture)

    async def _route(self, event: Inbound) -> list[Message] | tuple[Command | Action, str, Sender]:
        """The handler and its argument text, or the replies when there is none to run (an unregistered
        sender, an unknown command or button, a missing role)."""
        sender = await self.sender(event)
        if sender is None:
            return [text(UNREGISTERED.format(field=_ID_LABEL[event.platform], user_id=event.user_id))]
        if event.image is not None:
            if not PICTURES:
                return [text("收到图片。目前图片只用作单据凭证：请先发送「凭证 <单号>」，再发图片。")]
            found: tuple[Command | Action, str] | None = (PICTURES[0], "")
        elif event.scan is not None:
            if not SCANS:
                return [text("收到扫码结果，但还没有处理扫码的功能。")]
            found = (SCANS[0], event.scan)
        elif event.action is not None:
            found = find_action(event.action)
            if found is None:
                return [text(UNKNOWN_BUTTON.format(key=_short(event.action, 40)))]
        else:
            found = find(event.text or "")
            if found is None:
                return [text(not_understood(event.text or ""))]
        entry, args = found
        if not entry.allowed(sender):
            return [text(entry.refusal())]
        return entry, args, sender

    async def sender(self, event: Inbound) -> Sender | None:
        """The registered jxcbot user behind the event's platform id, or None.

        Kept for SENDER_TTL seconds (a read session per message was a sixth of the server's CPU under load),
        so a change of roles or a new registration applies within that time."""
        key = (event.platform, event.user_id)
        now = time.monotonic()
        hit = self._senders.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        person = await people.by_platform_id(self.db, event.platform, event.user_id)
        found = Sender(person.id, person.name, person.roles, person.department) if person is not None else None
        if len(self._senders) >= SENDER_CACHE:
            self._senders.clear()
        self._senders[key] = (now + (SENDER_TTL if found is not None else UNKNOWN_TTL), found)
        return found


def reply_target(event: Inbound) -> Target:
    """Where the answer goes: the DingTalk session webhook while valid (falling back to the group or the
    sender should it expire before the reply is sent), else the group, else the sender; for the WeCom intelligent
    robot the callback's req_id (falling back to a push to the group or the sender)."""
    if event.platform == "dingtalk":
        direct = Target("dingtalk", "group", event.chat_id) if event.chat_id else Target("dingtalk", "user",
                                                                                         event.user_id)
        hook, expires = event.reply.get("session_webhook"), event.reply.get("session_webhook_expires")
        # A session webhook lives ~1.5 h; one about to expire would only delay the reply.
        if hook and expires and int(expires) > (time.time() + SESSION_MARGIN) * 1000:
            return Target("dingtalk", "session", str(hook), int(expires), fallback=direct)
        return direct
    if event.platform == "wecom" and event.reply.get("req_id"):  # the intelligent robot: answer on the callback
        direct = Target("wecom", "group", event.chat_id) if event.chat_id else Target("wecom", "user", event.user_id)
        return Target("wecom", "aibot", str(event.reply["req_id"]), fallback=direct)
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
            "action": event.action, "image": dict(event.image) if event.image is not None else None,
            "scan": event.scan, "reply": dict(event.reply)}


def _event(data: dict[str, Any]) -> Inbound:
    return Inbound(data["platform"], data["user_id"], data["dedupe_key"],
                   datetime.fromisoformat(data["received_at"]), chat_id=data.get("chat_id"),
                   text=data.get("text"), action=data.get("action"), image=data.get("image"),
                   scan=data.get("scan"), reply=MappingProxyType(data.get("reply") or {}))


def _short(s: str, limit: int = 20) -> str:
    return s if len(s) <= limit else s[:limit] + "…"


async def console_picture(event: Inbound) -> Picture:
    """A console picture: the page sent it inline as base64 (checked by the console API and again by the handler)."""
    assert event.image is not None
    try:
        data = base64.b64decode(str(event.image.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise DomainError("BAD_PICTURE", "图片数据无法读取", "请重新上传 PNG 或 JPEG 图片") from None
    return Picture(data, str(event.image.get("content_type", "")))
