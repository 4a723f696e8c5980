"""Inbound events: record each platform event once by its key, hold it with a lease while it is handled, mark
it handled or failed once (a compare-and-set), and let resume claim the ones whose lease ran out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models.messaging import InboundEvent, fit_key
from core.storage import Fast
from core.types import UTCDateTime

_ERROR_CHARS = 4000


LEASE_SECONDS = 30.0  # an event is held this long by the instance that stored or claimed it (handling takes ms)


async def record_inbound(session: AsyncSession, *, platform: str, user_id: str, dedupe_key: str,
                         received_at: datetime, chat_id: str | None = None,
                         payload: Mapping[str, Any] | None = None, lease_seconds: float = LEASE_SECONDS) -> bool:
    """Record one accepted event, held by the caller for `lease_seconds` (resume leaves it alone until then);
    False when its key was seen before (a platform retry).

    A duplicate is not an error: the statement is INSERT … ON CONFLICT DO NOTHING (SQLite ≥ 3.35,
    PostgreSQL), so the surrounding transaction stays usable. payload must be JSON-able (other values,
    such as datetimes, are written as their str())."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    rows = await _RECORD.all(session, {
        "dedupe_key": fit_key(dedupe_key), "platform": platform, "user_id": user_id, "chat_id": chat_id,
        "payload": json.dumps(dict(payload or {}), ensure_ascii=False, sort_keys=True, default=str),
        "received_at": received_at, "lease_until": received_at + timedelta(seconds=lease_seconds)})
    return bool(rows)


# The same SQL on SQLite (>= 3.35) and PostgreSQL, as text: SQLAlchemy cannot cache the compiled form of a
# dialect insert(...).on_conflict_do_nothing() and recompiled it for every callback.
_RECORD = Fast(text(
    "INSERT INTO inbound_events (dedupe_key, platform, user_id, chat_id, payload, received_at, status, lease_until) "
    "VALUES (:dedupe_key, :platform, :user_id, :chat_id, :payload, :received_at, 'new', :lease_until) "
    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
).bindparams(bindparam("received_at", type_=UTCDateTime()), bindparam("lease_until", type_=UTCDateTime()))
 .columns(id=Integer))


async def mark_handled(session: AsyncSession, dedupe_key: str, now: datetime) -> bool:
    """Mark an event done, in the transaction of its effects; False when it is not open (marked already by a
    retry, a resume or another instance, or never recorded): then the caller must have no effect. On
    PostgreSQL a concurrent marker waits for this transaction and then finds the event done."""
    return await _MARK.rowcount(session, {"key": fit_key(dedupe_key), "st": "done", "at": now, "err": None}) == 1


async def mark_failed(session: AsyncSession, dedupe_key: str, error: str, now: datetime) -> bool:
    """Mark an event failed with the reason (the handler raised); False when it is not open (see mark_handled)."""
    return await _MARK.rowcount(session, {"key": fit_key(dedupe_key), "st": "failed", "at": now,
                                          "err": error[:_ERROR_CHARS]}) == 1


# Prepared once (a Core update without the ORM's session synchronisation: one per handled message).
_EVENTS = InboundEvent.__table__
_MARK = Fast(update(_EVENTS).where(_EVENTS.c.dedupe_key == bindparam("key"), _EVENTS.c.status == "new")
             .values(status=bindparam("st"), handled_at=bindparam("at", type_=UTCDateTime()),
                     error=bindparam("err")))


async def claim_unhandled(session: AsyncSession, now: datetime, limit: int = 100,
                          lease_seconds: float = LEASE_SECONDS) -> list[dict[str, Any]]:
    """Claim up to `limit` events recorded but never marked handled or failed whose lease ran out (the instance
    that stored them crashed, or a resume before this one did): each is held until now + lease, so one instance
    resumes it at a time; their payloads, oldest first. On PostgreSQL the rows are picked with FOR UPDATE SKIP
    LOCKED, so two instances resuming at once take disjoint events."""
    t = _EVENTS.c
    due = (t.status == "new") & ((t.lease_until.is_(None)) | (t.lease_until <= now))
    pick = select(t.id).where(due).order_by(t.received_at, t.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list((await session.execute(pick)).scalars())
    if not ids:
        return []
    stmt = (update(_EVENTS).where(t.id.in_(ids), due)
            .values(lease_until=now + timedelta(seconds=lease_seconds)).returning(t.id, t.payload))
    payloads = {row.id: row.payload for row in await session.execute(stmt)}
    return [json.loads(payloads[i]) for i in ids if i in payloads]


async def purge_inbound(session: AsyncSession, received_before: datetime) -> int:
    """Delete events received before a time (platform retries come within minutes); returns the count."""
    stmt = delete(InboundEvent).where(InboundEvent.received_at < received_before)
    return (await session.execute(stmt)).rowcount
