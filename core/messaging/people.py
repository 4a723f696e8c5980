"""Who is who: a platform id to its jxcbot user, and users (one, by role, all) with their platform ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import User
from core.models.masters import parse_roles
from core.storage import Database, Fast

# The column holding each platform's user id ("console": the demo console speaks as a user by name).
ID_COLUMNS = {"wecom": "wecom_user_id", "dingtalk": "dingtalk_staff_id", "console": "name"}


@dataclass(frozen=True)
class Person:
    """A registered user as messaging sees them: name, roles, and their id on each platform (None: not on it)."""

    id: int
    name: str
    roles: frozenset[str]
    department: str
    wecom_user_id: str | None = None
    dingtalk_staff_id: str | None = None

    def platform_id(self, platform: str) -> str | None:
        """The person's id on a platform (their name on the console), or None."""
        if platform == "console":
            return self.name
        return {"wecom": self.wecom_user_id, "dingtalk": self.dingtalk_staff_id}.get(platform)


_COLUMNS = (User.id, User.name, User.roles, User.department, User.wecom_user_id, User.dingtalk_staff_id)
# One prepared statement per platform id column (the lookup runs for every message of a sender not cached).
_BY_PLATFORM_ID = {platform: Fast(select(*_COLUMNS).where(getattr(User, column) == bindparam("uid")))
                   for platform, column in ID_COLUMNS.items()}


def _person(row: Sequence[Any]) -> Person:
    uid, name, roles, department, wecom_id, dingtalk_id = row
    return Person(uid, name, parse_roles(roles), department or "", wecom_id or None, dingtalk_id or None)


async def by_platform_id(db: Database, platform: str, platform_id: str) -> Person | None:
    """The registered user behind a platform's user id, or None (KeyError for an unknown platform)."""
    rows = await db.fetch(_BY_PLATFORM_ID[platform], {"uid": platform_id})
    return _person(rows[0]) if rows else None


async def by_id(session: AsyncSession, user_id: int) -> Person | None:
    """One user by jxcbot id, or None."""
    row = (await session.execute(select(*_COLUMNS).where(User.id == user_id))).first()
    return _person(row) if row is not None else None


async def everyone(session: AsyncSession) -> list[Person]:
    """Every registered user, in id order."""
    return [_person(r) for r in (await session.execute(select(*_COLUMNS).order_by(User.id))).all()]


async def with_role(session: AsyncSession, role: str) -> list[Person]:
    """The users holding a role (the roles column is a comma-separated list), in id order."""
    like = select(*_COLUMNS).where(User.roles.contains(role)).order_by(User.id)  # narrowed, then exact below
    return [p for p in map(_person, (await session.execute(like)).all()) if role in p.roles]


async def by_name(session: AsyncSession, name: str) -> Person | None:
    """One user by their name (names are how people refer to each other in chat: 转交 … 王库管), or None."""
    row = (await session.execute(select(*_COLUMNS).where(User.name == name.strip()))).first()
    return _person(row) if row is not None else None
