"""Recipients are people, roles and channels; this resolves them to platform targets."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.messaging import people
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


Recipient = Target | ToUser | ToRole | ToChannel


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
