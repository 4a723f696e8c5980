"""The durable outbox: enqueue in the business transaction, claim with a lease, mark sent or failed."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models.messaging import OutboxMessage, fit_key
from core.storage import Fast
from core.types import UTCDateTime

_ERROR_CHARS = 2000
_OPEN = ("pending", "sending")


@dataclass(frozen=True)
class Claimed:
    """A row claimed for sending. attempts is this claim's number: mark_* only act while it is current."""

    id: int
    dedupe_key: str
    target: dict[str, Any]
    message: dict[str, Any]
    attempts: int
    lease_until: datetime
    created_at: datetime  # when the row was queued


@dataclass(frozen=True)
class DeadLetter:
    """A message given up on, with the last error (for the admin view)."""

    id: int
    dedupe_key: str
    target: dict[str, Any]
    message: dict[str, Any]
    attempts: int
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True)
class Backlog:
    """Outbox counts for /healthz; next_due is the earliest next_attempt_at of a pending or claimed row."""

    pending: int
    sending: int
    dead: int
    next_due: datetime | None


def _dump(value: Mapping[str, Any]) -> str:
    """Canonical JSON, so equal targets are equal text."""
    return json.dumps(dict(value), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


async def enqueue(session: AsyncSession, dedupe_key: str, target: Mapping[str, Any], message: Mapping[str, Any],
                  now: datetime, *, not_before: datetime | None = None) -> bool:
    """Queue one message in the caller's transaction; False (and no second row) when the key is queued already.

    target/message are Target.to_json() / Message.to_json() dicts. not_before delays the first attempt."""
    rows = await _ENQUEUE.all(session, {
        "dedupe_key": fit_key(dedupe_key), "target": _dump(target), "message": _dump(message),
        "next_attempt_at": max(now, not_before or now), "created_at": now})
    return bool(rows)


# Text, the same on SQLite (>= 3.35) and PostgreSQL: a dialect insert(...).on_conflict_do_nothing() is not
# cacheable in SQLAlchemy and was recompiled for every message.
_ENQUEUE = Fast(text(
    "INSERT INTO outbox (dedupe_key, target, message, status, attempts, next_attempt_at, created_at) "
    "VALUES (:dedupe_key, :target, :message, 'pending', 0, :next_attempt_at, :created_at) "
    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
).bindparams(bindparam("next_attempt_at", type_=UTCDateTime()), bindparam("created_at", type_=UTCDateTime()))
    .columns(id=Integer))


async def claim_due(session: AsyncSession, now: datetime, limit: int, lease_seconds: float) -> list[Claimed]:
    """Move up to `limit` due rows to 'sending' until now + lease (a crashed sender's rows come back then).

    Due: pending with next_attempt_at <= now, or sending with an expired lease. On PostgreSQL the rows are
    picked with FOR UPDATE SKIP LOCKED, so concurrent senders take disjoint rows; on SQLite the write
    transaction already holds the database's one write lock."""
    due = (OutboxMessage.status.in_(_OPEN)) & (OutboxMessage.next_attempt_at <= now)
    pick = (select(OutboxMessage.id).where(due).order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list((await session.execute(pick)).scalars())
    if not ids:
        return []
    lease_until = now + timedelta(seconds=lease_seconds)
    t = OutboxMessage.__table__.c  # a Core UPDATE: no ORM bulk-update bookkeeping (this runs per claim)
    stmt = (update(OutboxMessage.__table__)
            .where(t.id.in_(ids), t.status.in_(_OPEN), t.next_attempt_at <= now)
            .values(status="sending", attempts=t.attempts + 1, next_attempt_at=lease_until)
            .returning(t.id, t.dedupe_key, t.target, t.message, t.attempts, t.created_at))
    rows = {r.id: r for r in await session.execute(stmt)}
    return [Claimed(i, rows[i].dedupe_key, json.loads(rows[i].target), json.loads(rows[i].message),
                    rows[i].attempts, lease_until, rows[i].created_at) for i in ids if i in rows]


async def states(session: AsyncSession, keys: Iterable[str]) -> dict[str, tuple[str, datetime]]:
    """(status, next_attempt_at) of the rows queued under these dedupe keys; keys never queued are left out."""
    fitted = {fit_key(key): key for key in keys}
    if not fitted:
        return {}
    stmt = (select(OutboxMessage.dedupe_key, OutboxMessage.status, OutboxMessage.next_attempt_at)
            .where(OutboxMessage.dedupe_key.in_(list(fitted))))
    return {fitted[r.dedupe_key]: (r.status, r.next_attempt_at) for r in await session.execute(stmt)}


def _held(item: Claimed) -> Any:
    return ((OutboxMessage.id == item.id) & (OutboxMessage.status == "sending")
            & (OutboxMessage.attempts == item.attempts))


async def mark_sent(session: AsyncSession, item: Claimed, now: datetime) -> bool:
    """Record a delivery; False when the claim was lost (the lease ran out and another sender took the row)."""
    return await _MARK_SENT.rowcount(session, {"id_": item.id, "attempts_": item.attempts, "at": now}) == 1


_ROWS = OutboxMessage.__table__
# Prepared once: one per delivered message.
_MARK_SENT = Fast(update(_ROWS).where((_ROWS.c.id == bindparam("id_")) & (_ROWS.c.status == "sending")
                                      & (_ROWS.c.attempts == bindparam("attempts_")))
                  .values(status="sent", sent_at=bindparam("at", type_=UTCDateTime()), last_error=None))


async def reserve_slot(session: AsyncSession, item: Claimed, now: datetime,
                       windows: Sequence[tuple[int, float]]) -> datetime | None:
    """Rate limits counted across every sender on this PostgreSQL database: take a slot for sending the
    claimed row now (None; the row's sent_at marks the slot until it is marked), or say when the next slot
    frees (nothing taken). windows: (count, seconds) — at most count sends to the target in any seconds.

    Serialised per target by an advisory transaction lock, so two instances cannot both take the last slot.
    A slot taken by a send that then failed still counts until its window passes (erring on the safe side)."""
    target = _dump(item.target)
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(target))))
    longest = max(seconds for _, seconds in windows)
    times = sorted((await session.execute(
        select(OutboxMessage.sent_at).where(OutboxMessage.target == target, OutboxMessage.id != item.id,
                                            OutboxMessage.sent_at > now - timedelta(seconds=longest))
    )).scalars())
    free = now
    for count, seconds in windows:
        recent = [t for t in times if t > now - timedelta(seconds=seconds)]
        if len(recent) >= count:
            free = max(free, recent[len(recent) - count] + timedelta(seconds=seconds))
    if free > now:
        return free
    await session.execute(update(OutboxMessage).where(OutboxMessage.id == item.id).values(sent_at=now))
    return None


def backoff_delay(attempts: int, base_delay: float, max_delay: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(max_delay, base_delay * 2**(attempts-1)))."""
    cap = min(max_delay, base_delay * 2 ** max(0, min(attempts - 1, 62)))
    return (rng or random).uniform(0, cap)


async def mark_failed(session: AsyncSession, item: Claimed, error: str, *, retryable: bool,
                      retry_after: float | None, now: datetime, max_attempts: int, base_delay: float,
                      max_delay: float, rng: random.Random | None = None) -> str:
    """Record a failed attempt: 'pending' (retry after backoff, never before retry_after) or 'dead'.

    Dead on a permanent error or once `max_attempts` claims have failed; '' when the claim was lost."""
    if not retryable or item.attempts >= max_attempts:
        status, when = "dead", now
    else:
        delay = max(retry_after or 0.0, backoff_delay(item.attempts, base_delay, max_delay, rng))
        status, when = "pending", now + timedelta(seconds=delay)
    stmt = (update(OutboxMessage).where(_held(item))
            .values(status=status, next_attempt_at=when, last_error=error[:_ERROR_CHARS]))
    return status if (await session.execute(stmt)).rowcount == 1 else ""


async def release(session: AsyncSession, items: list[Claimed], until: datetime) -> int:
    """Give claimed rows back unsent (rate limit, shutdown): pending again at `until`, the claim not counted."""
    count = 0
    for item in items:
        stmt = (update(OutboxMessage).where(_held(item))
                .values(status="pending", attempts=OutboxMessage.attempts - 1, next_attempt_at=until))
        count += (await session.execute(stmt)).rowcount
    return count


async def backlog(session: AsyncSession) -> Backlog:
    """Counts of pending, claimed and dead rows and the next due time."""
    stmt = (select(OutboxMessage.status, func.count(), func.min(OutboxMessage.next_attempt_at))
            .where(OutboxMessage.status.in_((*_OPEN, "dead"))).group_by(OutboxMessage.status))
    rows = {r[0]: (r[1], r[2]) for r in await session.execute(stmt)}
    dues = [rows[s][1] for s in _OPEN if s in rows]
    return Backlog(pending=rows.get("pending", (0,))[0], sending=rows.get("sending", (0,))[0],
                   dead=rows.get("dead", (0,))[0], next_due=min(dues) if dues else None)


async def dead_letters(session: AsyncSession, limit: int = 100) -> list[DeadLetter]:
    """The most recent dead letters first."""
    stmt = select(OutboxMessage).where(OutboxMessage.status == "dead").order_by(OutboxMessage.id.desc()).limit(limit)
    return [DeadLetter(r.id, r.dedupe_key, json.loads(r.target), json.loads(r.message), r.attempts, r.last_error,
                       r.created_at) for r in (await session.execute(stmt)).scalars()]


async def recent_sends(session: AsyncSession, since: datetime) -> list[tuple[dict[str, Any], datetime]]:
    """(target, sent_at) of deliveries since a time: a new sender seeds its rate-limit windows with them."""
    stmt = (select(OutboxMessage.target, OutboxMessage.sent_at)
            .where(OutboxMessage.status == "sent", OutboxMessage.sent_at >= since))
    return [(json.loads(t), at) for t, at in await session.execute(stmt)]


async def purge_sent(session: AsyncSession, sent_before: datetime) -> int:
    """Delete rows delivered before a time (their keys may then be queued again); returns the count."""
    stmt = delete(OutboxMessage).where(OutboxMessage.status == "sent", OutboxMessage.sent_at < sent_before)
    return (await session.execute(stmt)).rowcount

