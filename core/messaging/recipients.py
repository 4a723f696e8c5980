"""Recipients are people, roles and channels; this resolves them to platform targets."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.messaging import card_copies, people
from core.messaging.targets import Target
from core.models.masters import ROLE_ZH, ROLES

log = logging.getLogger(__name__)

# Platforms a person can be addressed on directly (group robots and conversations are channels).
PERSON_PLATFORMS = ("wecom", "dingtalk", "console")


@dataclass(frozen=True)
class ToUser:
    """One jxcbot user (by id): each platform they are on, of those this bot serves."""

    user_id: int


@dataclass(frozen=True)
class ToRole:
    """Everyone holding a role (warehouse, purchasing, sales, manager, admin)."""

    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")


@dataclass(frozen=True)
class ToChannel:
    """A named channel from `[channels]` (a group robot or conversation, e.g. supervisors = "wecom:robot:wh")."""

    name: str


@dataclass(frozen=True)
class ToCopies:
    """Every delivered copy of a card (core.messaging.card_copies under `group`), each updated in place where its
    handle still works, else sent afresh (the outbox sender decides at delivery). skip: (jxcbot user id,
    platform) of the decider, whose copy on that platform their reply already updates (it carries the group)."""

    group: str
    skip: tuple[int, str] | None = None

    def __post_init__(self) -> None:
        if not self.group:
            raise ValueError("a copy group must not be empty")


Recipient = Target | ToUser | ToRole | ToChannel | ToCopies


def person_targets(person: people.Person, platforms: Iterable[str]) -> list[Target]:
    """A person's address on each of `platforms` they are registered on (WeCom and DingTalk both: both)."""
    out = []
    for platform in PERSON_PLATFORMS:
        if platform in platforms and (pid := person.platform_id(platform)):
            out.append(Target(platform, "user", pid))
    return out


def channel_targets(name: str, channels: Mapping[str, tuple[Target, ...]], platforms: Iterable[str]) -> list[Target]:
    """The targets of a configured channel; on the console (demo) an unconfigured channel is a console group.

    DomainError naming the fix when the channel is not configured and there is no console to show it on."""
    if name in channels:
        return list(channels[name])
    if "console" in platforms:
        return [Target("console", "group", name)]
    raise DomainError("UNKNOWN_CHANNEL", f"没有配置群组频道「{name}」",
                      f'请在配置文件的 [channels] 中添加，例如：{name} = "wecom:robot:群机器人名称"')


async def resolve(session: AsyncSession, to: Recipient, channels: Mapping[str, tuple[Target, ...]],
                  platforms: Iterable[str]) -> list[Target]:
    """The platform targets a recipient stands for, in a stable order (users by id, then platform)."""
    platforms = frozenset(platforms)
    if isinstance(to, Target):
        return [to]
    if isinstance(to, ToChannel):
        return channel_targets(to.name, channels, platforms)
    if isinstance(to, ToCopies):
        return await copy_targets(session, to, platforms)
    if isinstance(to, ToUser):
        person = await people.by_id(session, to.user_id)
        found = [person] if person is not None else []
    elif isinstance(to, ToRole):
        found = await people.with_role(session, to.role)
    else:
        raise TypeError(f"not a recipient: {to!r}")
    targets = [t for p in found for t in person_targets(p, platforms)]
    if not targets:
        who = f"用户 {to.user_id}" if isinstance(to, ToUser) else f"角色「{ROLE_ZH[to.role]}」"
        log.warning("no platform address for %s on %s: nothing queued", who, sorted(platforms))
    return targets


async def copy_targets(session: AsyncSession, to: ToCopies, platforms: Iterable[str]) -> list[Target]:
    """The users a group's copies were delivered to (on the platforms served), less the skipped decider's."""
    skipped = None
    if to.skip is not None:
        user_id, platform = to.skip
        person = await people.by_id(session, user_id)
        address = person.platform_id(platform) if person is not None else None
        skipped = (platform, address) if address else None
    return [Target(c.platform, "user", c.address) for c in await card_copies.of_group(session, to.group, platforms)
            if (c.platform, c.address) != skipped]
