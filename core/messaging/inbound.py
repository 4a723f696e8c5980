"""Inbound de-duplication: record each platform event once by its key, then mark it handled or failed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models.messaging import InboundEvent, fit_key
from core.storage import Fast
from core.types import UTCDateTime

_ERROR_CHARS = 4000


async def record_inbound(session: AsyncSession, *, platform: str, user_id: str, dedupe_key: str,
                         received_at: datetime, chat_id: str | None = None,
                         payload: Mapping[str, Any] | None = None) -> bool:
    """Record one accepted event; False when its key was seen before (a platform retry).

    A duplicate is not an error: the statement is INSERT … ON CONFLICT DO NOTHING (SQLite ≥ 3.35,
    PostgreSQL), so the surrounding transaction stays usable. payload must be JSON-able (other values,
    such as datetimes, are written as their str())."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    rows = await _RECORD.all(session, {
        "dedupe_key": fit_key(dedupe_key), "platform": platform, "user_id": user_id, "chat_id": chat_id,
        "payload": json.dumps(dict(payload or {}), ensure_ascii=False, sort_keys=True, default=str),
        "received_at": received_at})
    return bool(rows)


# The same SQL on SQLite (>= 3.35) and PostgreSQL, as text: SQLAlchemy cannot cache the compiled form of a
# dialect insert(...).on_conflict_do_nothing() and recompiled it for every callback.
_RECORD = Fast(text(
    "INSERT INTO inbound_events (dedupe_key, platform, user_id, chat_id, payload, received_at, status) "
    "VALUES (:dedupe_key, :platform, :user_id, :chat_id, :payload, :received_at, 'new') "
    "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
).bindparams(bindparam("received_at", type_=UTCDateTime())).columns(id=Integer))


async def mark_handled(session: AsyncSession, dedupe_key: str, now: datetime) -> bool:
    """Mark an event done (best in the handler's own transaction); False when no such event is recorded."""
    return await _MARK.rowcount(session, {"key": fit_key(dedupe_key), "st": "done", "at": now, "err": None}) == 1


async def mark_failed(session: AsyncSession, dedupe_key: str, error: str, now: datetime) -> bool:
    """Mark an event failed with the reason (the handler raised); False when no such event is recorded."""
    return await _MARK.rowcount(session, {"key": fit_key(dedupe_key), "st": "failed", "at": now,
                                          "err": error[:_ERROR_CHARS]}) == 1


# Prepared once (a Core update without the ORM's session synchronisation: one per handled message).
_EVENTS = InboundEvent.__table__
_MARK = Fast(update(_EVENTS).where(_EVENTS.c.dedupe_key == bindparam("key"))
             .values(status=bindparam("st"), handled_at=bindparam("at", type_=UTCDateTime()),
                     error=bindparam("err")))


async def unhandled(session: AsyncSession, limit: int = 1000) -> list[dict[str, Any]]:
    """Payloads of events recorded but never marked handled or failed (a crash in between), oldest first."""
    stmt = (select(InboundEvent.payload).where(InboundEvent.status == "new")
            .order_by(InboundEvent.received_at, InboundEvent.id).limit(limit))
    return [json.loads(p) for p in (await session.scalars(stmt))]


async def purge_inbound(session: AsyncSession, received_before: datetime) -> int:
    """Delete events received before a time (platform retries come within minutes); returns the count."""
    stmt = delete(InboundEvent).where(InboundEvent.received_at < received_before)
    return (await session.execute(stmt)).rowcount
