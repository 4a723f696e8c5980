"""The outbox sender: a tracked background loop that delivers queued messages, rate-limited, with retries."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.group_commit import GroupCommit
from bot.rate_limit import DEFAULT_LIMITS, RateLimit, RateLimiter
from bot.transport import RESEND_WINDOW, Delivered, SendError, Transport
from cards.model import Message
from cards.parts import split_message
from cards.split import TooLarge
from core.config import ConfigError
from core.messaging import card_copies, outbound, outbox
from core.messaging.parts import Part
from core.messaging.targets import Target, parse_target
from core.models.base import utcnow
from core.models.messaging import fit_key
from core.storage import Database

log = logging.getLogger(__name__)

BATCHES_IN_FLIGHT = 2  # a claimed batch may still be sending while the next one is claimed
RESEND_WINDOW_MAX = 4 * 3600  # seconds: WeCom's largest duplicate_check_interval
ALERT_PREFIX = "outbox-dead:"  # dedupe_key prefix of the admin alert about a dead letter
# Webhook keys, tokens and session ids travel in URLs, and URLs end up in exception texts.
# Platforms that update a card shown by the card id it was given (the console page); the sender gives the ids.
CARD_ID_PLATFORMS = frozenset({"console"})
_SECRET_PARAM = re.compile(r"\b((?:key|access_token|token|sign|secret|session)=)[^&\s'\"]+", re.IGNORECASE)


def redact(text: str) -> str:
    """The text with URL parameters that carry credentials masked (it is stored, logged and sent to admins)."""
    return _SECRET_PARAM.sub(r"\1***", text)


@dataclass(frozen=True)
class SenderSettings:
    """How the sender works (all times in seconds).

    batch_size: rows claimed per transaction; lease_seconds: how long a claim lasts before another
    sender may take the row (must cover batch_size sends of send_timeout each); max_attempts: failed
    sends before a message is dead; base_delay/max_delay: backoff cap base·2^(n-1) up to max_delay, full
    jitter; poll_interval: idle wait between looks at the outbox (wake() cuts it short)."""

    batch_size: int = 10
    lease_seconds: float = 300.0
    send_timeout: float = 20.0
    max_attempts: int = 16
    base_delay: float = 5.0
    max_delay: float = 1800.0
    poll_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be at least 1")
        if min(self.send_timeout, self.base_delay, self.max_delay, self.poll_interval) <= 0:
            raise ValueError("times must be positive")
        if self.lease_seconds < self.batch_size * self.send_timeout + 10:
            raise ValueError("lease_seconds must exceed batch_size × send_timeout (+10 s)")


@dataclass(frozen=True)
class OutboxConfig:
    """The [outbox] section of the configuration, parsed."""

    settings: SenderSettings = field(default_factory=SenderSettings)
    limits: Mapping[str, tuple[RateLimit, ...]] = field(default_factory=lambda: DEFAULT_LIMITS)
    admin_targets: tuple[Target, ...] = ()


_LIMIT_HINT = '必须写成 "次数/秒数"，例如 "20/60" 或 "30/60, 1000/3600"'
_TARGETS_HINT = '必须是 "平台:类型:地址" 的列表，例如 ["wecom:robot:admins"]'
_INTEGERS = ("batch_size", "max_attempts")


def _parse_limits(spec: object) -> tuple[RateLimit, ...]:
    windows = [w.split("/") for w in str(spec).replace(" ", "").split(",") if w]
    return tuple(RateLimit(int(count), float(seconds)) for count, seconds in windows)


def parse_outbox_config(raw: Mapping[str, Any]) -> OutboxConfig:
    """Read `[outbox]` (settings keys, admin_targets, and an `[outbox.limits]` table) from Settings.raw.

    admin_targets: a list or comma-separated string of "platform:kind:address"; limits: "platform:kind" =
    "count/seconds[, count/seconds …]" (replaces that kind's default; "" removes it). ConfigError if bad."""
    section = dict(raw.get("outbox", {}))
    limits = dict(DEFAULT_LIMITS)
    for kind, spec in dict(section.pop("limits", {})).items():
        try:
            limits[kind] = _parse_limits(spec)
        except ValueError:
            raise ConfigError(f"[outbox.limits] {kind}", _LIMIT_HINT) from None
    targets = section.pop("admin_targets", ())
    if isinstance(targets, str):
        targets = [t for t in targets.split(",") if t.strip()]
    try:
        admin_targets = tuple(parse_target(t) for t in targets)
    except (ValueError, AttributeError):
        raise ConfigError("[outbox] admin_targets", _TARGETS_HINT) from None
    names = SenderSettings.__dataclass_fields__
    kwargs: dict[str, Any] = {}
    for name, value in section.items():
        if name not in names:
            raise ConfigError(f"[outbox] {name}", f"未知的配置项，允许：{'、'.join(names)}、admin_targets、limits")
        try:
            kwargs[name] = int(value) if name in _INTEGERS else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"[outbox] {name}", "必须是数字") from None
    try:
        settings = SenderSettings(**kwargs)
    except ValueError as exc:
        raise ConfigError("[outbox]", str(exc)) from None
    return OutboxConfig(settings, limits, admin_targets)


class OutboxSender:
    """Claims due outbox rows in short transactions and sends them through the platform's Transport.

    No transaction is open during a send. Sends to one target go one after another (rate limited);
    different targets go concurrently. Part n of a multi-part message (core.messaging.parts) goes only after part n-1
    was delivered (or given up on): a part whose predecessor is still queued is given back until then.
    A claim is a lease: rows of a sender that died come back after it.
    clock/sleep/rng are injectable so tests run in simulated time."""

    def __init__(self, db: Database, transports: Mapping[str, Transport],
                 limits: Mapping[str, Sequence[RateLimit]] = DEFAULT_LIMITS,
                 settings: SenderSettings | None = None, *, admin_targets: Iterable[Target] = (),
                 clock: Callable[[], datetime] = utcnow, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.db = db
        self.transports = dict(transports)
        self.settings = settings or SenderSettings()
        self.admin_targets = tuple(admin_targets)
        self.limiter = RateLimiter(limits)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._wake = asyncio.Event()
        self._marks = GroupCommit(db)
        self._target_locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, batches holding or waiting
        self.done = 0  # rows this process delivered or gave up on (the dispatcher paces acknowledgements by it)
        self.on_done: Callable[[], None] = lambda: None
        # Called with the rows still in this sender's hands when a claim finds no more due rows: then whatever
        # the dispatcher queued is sent, scheduled for later or claimed — maybe by another instance, whose
        # deliveries `done` never counts (two servers on PostgreSQL).
        self.on_drained: Callable[[int], None] = lambda _in_flight: None
        self.in_flight = 0  # rows claimed by this sender whose batch has not finished
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Seed the rate limits with recent deliveries, then run the loop as a tracked task."""
        if self._task is not None:
            raise RuntimeError("the outbox sender is already running")
        await self.seed_limits()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="jxcbot-outbox-sender")

    async def stop(self) -> None:
        """Let the send in flight finish, give back rows claimed but not yet sent, and return."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            await task
        finally:
            self._stopping = False

    def wake(self) -> None:
        """Look at the outbox now (call after a commit that enqueued something)."""
        self._wake.set()

    async def seed_limits(self) -> None:
        """Count deliveries of the last window (by any earlier run) against the rate limits."""
        window = self.limiter.longest_window
        if window <= 0:
            return
        async with self.db.read() as session:
            sends = await outbox.recent_sends(session, self._clock() - timedelta(seconds=window))
        for target, at in sends:
            try:
                self.limiter.record(Target.from_json(target), at)
            except (KeyError, TypeError, ValueError):  # an unreadable row: it went dead, it was not sent
                continue

    async def _run(self) -> None:
        failures = 0
        sending: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    items = await self._claim()
                    failures = 0
                except Exception:  # database down: keep the loop alive, back off
                    failures += 1
                    log.exception("outbox sender: cycle failed (%d in a row)", failures)
                    items = []
                if items:
                    # The next claim overlaps this batch's sends (per-target order is kept by _target_locks).
                    task = asyncio.create_task(self._send(items), name="jxcbot-outbox-batch")
                    sending.add(task)
                    task.add_done_callback(sending.discard)
                    if len(sending) >= BATCHES_IN_FLIGHT:
                        await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                if len(items) < self.settings.batch_size and not self._stopping:
                    await self._idle(min(30.0, self.settings.poll_interval * 2 ** min(failures, 5)))
        finally:
            if sending:
                await asyncio.gather(*sending, return_exceptions=True)

    async def _idle(self, seconds: float) -> None:
        if self._wake.is_set():
            return
        waits = [asyncio.ensure_future(self._sleep(seconds)), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    # -- one cycle ---------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim one batch of due rows and send them; returns how many rows were claimed."""
        items = await self._claim()
        await self._send(items)
        return len(items)

    async def _claim(self) -> list[outbox.Claimed]:
        now, s = self._clock(), self.settings

        async def claim(session: AsyncSession) -> tuple[list[outbox.Claimed], list[outbox.Claimed]]:
            claimed = await outbox.claim_due(session, now, s.batch_size, s.lease_seconds)
            return claimed, await self._hold_parts(session, claimed, now)

        claimed, items = await self.db.write(claim)
        self.in_flight += len(items)
        if len(claimed) < s.batch_size:
            self.on_drained(self.in_flight)
        return items

    async def _send(self, items: list[outbox.Claimed]) -> None:
        groups: dict[str, list[outbox.Claimed]] = {}
        for item in items:
            groups.setdefault(_rate_key(item.target), []).append(item)
        try:
            results = await asyncio.gather(*(self._send_locked(k, g) for k, g in groups.items()),
                                           return_exceptions=True)
        finally:
            self.in_flight -= len(items)
        for result in results:
            if isinstance(result, BaseException):
                log.error("outbox sender: a send group failed", exc_info=result)

    async def _send_locked(self, key: str, items: list[outbox.Claimed]) -> None:
        """_send_group under the target's lock: batches in flight together send to one target in claim order
        (asyncio.Lock is first come, first served, and batches ask for it in the order they were claimed)."""
        lock, users = self._target_locks.get(key, (asyncio.Lock(), 0))
        self._target_locks[key] = (lock, users + 1)
        try:
            async with lock:
                await self._send_group(items)
        finally:
            lock, users = self._target_locks[key]
            if users == 1:
                del self._target_locks[key]  # nobody else holds or waits for it
            else:
                self._target_locks[key] = (lock, users - 1)

    async def _hold_parts(self, session: AsyncSession, items: list[outbox.Claimed],
                          now: datetime) -> list[outbox.Claimed]:
        """The claimed rows that may go now; parts whose previous part is still queued (pending, or claimed and
        not earlier in this batch) are given back in the claim's transaction, until that part is due."""
        previous = {item.id: fit_key(part.previous) for item in items
                    if (part := Part.of_row(item.message)) is not None and part.previous is not None}
        if not previous:
            return items
        position = {item.dedupe_key: n for n, item in enumerate(items)}
        lookup = [key for n, item in enumerate(items)
                  if (key := previous.get(item.id)) is not None and position.get(key, n) >= n]
        found = await outbox.states(session, lookup)
        held: dict[str, datetime] = {}  # dedupe key → until, for the rows given back
        for n, item in enumerate(items):
            key = previous.get(item.id)
            if key is None:
                continue
            if position.get(key, n) < n:  # the previous part goes first in this batch: wait only if it waits
                if key in held:
                    held[item.dedupe_key] = held[key]
                continue
            status, due = found.get(key, ("sent", now))
            if status in ("pending", "sending"):
                hold = now + timedelta(seconds=self.settings.poll_interval)
                held[item.dedupe_key] = due if status == "pending" and due > hold else hold
        by_until: dict[datetime, list[outbox.Claimed]] = {}
        for item in items:
            if item.dedupe_key in held:
                by_until.setdefault(held[item.dedupe_key], []).append(item)
        for until, batch in by_until.items():
            await outbox.release(session, batch, until)
        return [item for item in items if item.dedupe_key not in held]

    async def _send_group(self, items: list[outbox.Claimed]) -> None:
        """Send one target's rows in order; on a rate limit or a platform block give the rest back. After a part
        of a message that is not delivered (and not given up on), its later parts are given back: the next
        claim holds them until that part is due again."""
        stalled: set[str] = set()  # keys (core.messaging.parts) of messages with a part still waiting
        for n, item in enumerate(items):
            if self._stopping:
                await self._release(items[n:], self._clock())
                return
            part = Part.of_row(item.message)
            if part is not None and part.key in stalled:
                await self._release([item], self._clock())
                continue
            status, rest_until = await self._send_one(item)
            if rest_until is not None:
                await self._release(items[n if status == "released" else n + 1:], rest_until)
                return
            if part is not None and status not in ("sent", "dead"):
                stalled.add(part.key)

    async def _send_one(self, item: outbox.Claimed) -> tuple[str, datetime | None]:
        """Send one row → (its status: sent, pending, dead, released, or "" when the claim was lost; the time to
        give the target's remaining rows back until, when the target must wait)."""
        if item.attempts > self.settings.max_attempts:  # claimed again and again, never reported: a crash loop
            return await self._failed(item, "abandoned: every claim ended without a result", retryable=False), None
        try:
            target, message = Target.from_json(item.target), Message.from_json(item.message)
        except (KeyError, TypeError, ValueError) as exc:
            return await self._failed(item, f"unreadable outbox row: {exc!r}", retryable=False), None
        transport = self.transports.get(target.platform)
        if transport is None:
            return await self._failed(item, f"no transport for platform {target.platform!r}", retryable=False), None
        now = self._clock()  # an expired session webhook is the DingTalk client's to route (Target.fallback)
        later = self.limiter.reserve(target, now)
        if later is None and self.db.dialect == "postgresql":
            later = await self._shared_slot(item, target, now)
            if later is not None:
                self.limiter.unreserve(target, now)
        if later is not None:
            return "released", later
        copy_at = copy_address(target, message)
        if copy_at is not None:
            message = await self._with_handle(message, copy_at, now)
        window = RESEND_WINDOW.set(_resend_window(item, now))
        try:
            async with asyncio.timeout(self.settings.send_timeout):
                delivered = await transport.send(target, message)
        except SendError as exc:
            if exc.retry_after:
                self.limiter.block(target, now + timedelta(seconds=exc.retry_after))
            status = await self._failed(item, f"{exc.code}: {exc}", retryable=exc.retryable,
                                        retry_after=exc.retry_after)
            return status, now + timedelta(seconds=exc.retry_after) if exc.retry_after else None
        except TooLarge as exc:  # cannot be cut to the platform's limit: never sendable
            return await self._failed(item, f"too-long: {exc}", retryable=False), None
        except TimeoutError:
            return await self._failed(item, f"timeout after {self.settings.send_timeout:g} s", retryable=True), None
        except Exception as exc:  # a transport bug or an unwrapped network error: retry, keep the loop
            log.debug("outbox sender: traceback of %s", item.dedupe_key, exc_info=True)
            return await self._failed(item, f"unexpected {type(exc).__name__}: {exc}", retryable=True), None
        finally:
            RESEND_WINDOW.reset(window)
        if copy_at is not None and delivered is None and copy_at.platform in CARD_ID_PLATFORMS and message.card_id:
            delivered = Delivered(message.card_id)
        await self._sent(item, (message.group, copy_at, delivered) if copy_at is not None else None)
        return "sent", None

    async def _with_handle(self, message: Message, at: Target, now: datetime) -> Message:
        """A card of a copy group about to go to a user: with the handle that updates their copy in place (a
        card_id the message has already — the clicked card's — wins), else as it is: a fresh card (the console
        gets a new card id to update it by later)."""
        if message.card_id:
            return message
        async with self.db.read() as session:
            found = await card_copies.find(session, message.group, at.platform, at.address)
        ref = card_copies.usable(found, now)
        if ref is None and at.platform in CARD_ID_PLATFORMS:
            ref = f"card-{uuid.uuid4().hex}"
        return replace(message, card_id=ref) if ref else message

    async def _shared_slot(self, item: outbox.Claimed, target: Target, now: datetime) -> datetime | None:
        """On PostgreSQL other instances may send to the same target: check its limits across all of them
        (one short transaction; none for targets without limits). None when this send may go now."""
        windows = [(w.count, w.seconds) for w in self.limiter.windows(target)]
        if not windows:
            return None
        return await self.db.write(lambda session: outbox.reserve_slot(session, item, now, windows))

    # -- bookkeeping (one short transaction each) ----------------------------------------------------

    async def _sent(self, item: outbox.Claimed,
                    copy: tuple[str, Target, Delivered | None] | None = None) -> None:
        """Mark the row sent; for a card of a copy group (group, where, what it left) record that copy's handle
        in the same transaction (ref "": none — the next update of it is a fresh card)."""
        now = self._clock()

        async def mark(session: AsyncSession) -> bool:
            if copy is not None:
                group, at, delivered = copy
                await card_copies.record(session, group, at.platform, at.address,
                                         delivered.ref if delivered else "", delivered.spent if delivered else True,
                                         now)
            return await outbox.mark_sent(session, item, now)

        # Marks of sends finishing together share one transaction (group commit); a crash before it commits
        # re-sends after the lease — the at-least-once window every mark has anyway.
        if not await self._marks.submit(mark):
            log.warning("outbox sender: %s was sent after its claim expired", item.dedupe_key)
        self.done += 1
        self.on_done()

    async def _release(self, items: list[outbox.Claimed], until: datetime) -> None:
        if items:
            await self.db.write(lambda session: outbox.release(session, items, until))

    async def _failed(self, item: outbox.Claimed, error: str, *, retryable: bool,
                      retry_after: float | None = None) -> str:
        """Record a failed attempt → the row's status: pending, dead, or "" when the claim was lost."""
        now, s, error = self._clock(), self.settings, redact(error)
        alerts = self._alerts(item, error)

        async def work(session: AsyncSession) -> str:
            status = await outbox.mark_failed(session, item, error, retryable=retryable, retry_after=retry_after,
                                              now=now, max_attempts=s.max_attempts, base_delay=s.base_delay,
                                              max_delay=s.max_delay, rng=self._rng)
            if status == "dead":
                for key, target, message in alerts:
                    await outbound.enqueue(session, key, target, message, now, split=split_message)
            return status

        status = await self.db.write(work)
        if status == "dead":
            self.done += 1
            self.on_done()
        level = logging.ERROR if status == "dead" else logging.WARNING
        log.log(level, "outbox sender: %s attempt %d failed (%s) -> %s", item.dedupe_key, item.attempts, error,
                status or "claim lost")
        if status == "dead" and alerts:
            self.wake()
        return status

    def _alerts(self, item: outbox.Claimed, error: str) -> list[tuple[str, Target, Message]]:
        """The admin alerts for a dead letter (none about an alert itself, so a broken admin target cannot loop)."""
        if item.dedupe_key.startswith(ALERT_PREFIX):
            return []
        where = _rate_key(item.target) if item.target.get("kind") != "session" else "dingtalk:session"
        body = (f"【消息发送失败】已放弃发送一条消息（尝试 {item.attempts} 次）。\n"
                f"目标：{where}\n标识：{item.dedupe_key}\n原因：{error[:300]}")
        message = Message("text", text=body)
        return [(f"{ALERT_PREFIX}{item.id}:{n}", t, message) for n, t in enumerate(self.admin_targets)]


def copy_address(target: Target, message: Message) -> Target | None:
    """Where a card of a copy group lands as one person's copy: a user target, or the user a DingTalk session
    reply falls back to (cards go that way); None for anything else (groups, robots: not tracked)."""
    if message.kind != "card" or not message.group:
        return None
    if target.kind == "user":
        return target
    if target.kind == "session" and target.fallback is not None and target.fallback.kind == "user":
        return target.fallback
    return None


def _resend_window(item: outbox.Claimed, now: datetime) -> int | None:
    """For RESEND_WINDOW: None on a first attempt; else the seconds since the row was queued plus a minute,
    within WeCom's 4 h maximum (an earlier attempt of this row may have been delivered at any time since)."""
    if item.attempts <= 1:
        return None
    since = (now - item.created_at).total_seconds()
    return int(min(RESEND_WINDOW_MAX, max(60.0, since + 60.0)))


def _rate_key(target: dict[str, Any]) -> str:
    return f"{target.get('platform')}:{target.get('kind')}:{target.get('address')}"
