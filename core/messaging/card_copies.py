"""Delivered copies of a card, by group: recorded with each platform's update handle, looked up to update them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.models.chat_state import CardCopy

# WeCom's response_code is valid 72 h (older docs said 24 h; the lifetime is WeCom's, not configurable there). A
# code this old is not tried: the copy gets a fresh card. The margin covers the time a queued update waits.
WECOM_CODE_TTL = timedelta(hours=72) - timedelta(minutes=10)


@dataclass(frozen=True)
class Copy:
    """One delivered copy: where (platform, user address), its update handle, whether that is used up, since when."""

    group: str
    platform: str
    address: str
    ref: str
    spent: bool
    at: datetime


def usable(copy: Copy | None, now: datetime, *, wecom_ttl: timedelta = WECOM_CODE_TTL) -> str | None:
    """The handle that updates this copy in place now, or None (send a fresh card): none recorded (the card went as
    text), a WeCom code already used or too old. DingTalk's outTrackId and the console's card id do not expire."""
    if copy is None or not copy.ref or copy.spent:
        return None
    if copy.platform == "wecom" and now - copy.at >= wecom_ttl:
        return None
    return copy.ref


async def find(session: AsyncSession, group: str, platform: str, address: str) -> Copy | None:
    """The copy of `group` delivered to this address on this platform, or None."""
    row = (await session.execute(select(CardCopy).where(
        CardCopy.group_key == group, CardCopy.platform == platform, CardCopy.address == address))).scalar_one_or_none()
    return _copy(row) if row is not None else None


async def of_group(session: AsyncSession, group: str, platforms: Iterable[str] | None = None) -> list[Copy]:
    """Every recorded copy of a group (on these platforms), in the order they were first recorded."""
    stmt = select(CardCopy).where(CardCopy.group_key == group).order_by(CardCopy.id)
    if platforms is not None:
        stmt = stmt.where(CardCopy.platform.in_(sorted(set(platforms))))
    return [_copy(r) for r in (await session.execute(stmt)).scalars()]


async def record(session: AsyncSession, group: str, platform: str, address: str, ref: str, spent: bool,
                 now: datetime) -> None:
    """Remember the copy just delivered (or updated) and its handle; it replaces what was recorded for that
    address (the newest card is the one to update). ref "": no handle (the card went as text)."""
    values = {"group_key": group, "platform": platform, "address": address, "ref": ref, "spent": spent, "at": now}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(CardCopy).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=["group_key", "platform", "address"],
                                      set_={"ref": ref, "spent": spent, "at": now})
    await session.execute(stmt)


def _copy(row: CardCopy) -> Copy:
    return Copy(row.group_key, row.platform, row.address, row.ref, bool(row.spent), row.at)
