"""The one way to queue a message: to a target, user, role or channel, split into parts, in the caller's
transaction, keyed so that a retry or a second instance queues nothing twice."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from core.messaging import outbox, recipients
from core.messaging.parts import PART, part_key
from core.messaging.recipients import Recipient
from core.messaging.targets import Target


class Sendable(Protocol):
    """A neutral message (cards.model.Message): core only stores its JSON."""

    def to_json(self) -> dict[str, Any]:
        """The JSON the outbox stores."""
        ...


Splitter = Callable[[Target, Any], Sequence[Sendable]]


def whole(_target: Target, message: Sendable) -> list[Sendable]:
    """No splitting (tests, platforms without limits)."""
    return [message]


async def enqueue(session: AsyncSession, dedupe_key: str, target: Target, message: Sendable, now: datetime, *,
                  split: Splitter, not_before: datetime | None = None, group: str = "") -> int:
    """Queue a message to one target as one outbox row per part (keys key, key#2, … in order); the number of
    rows queued, 0 (nothing queued) when `dedupe_key` is queued already. group: the card's copy group, stamped
    on each part (a card to ToCopies)."""
    pieces = split(target, message)
    for n, piece in enumerate(pieces, start=1):
        data = piece.to_json()
        if group:
            data["group"] = group
        if len(pieces) > 1:
            data[PART] = {"key": dedupe_key, "n": n, "of": len(pieces)}
        new = await outbox.enqueue(session, part_key(dedupe_key, n), target.to_json(), data, now,
                                   not_before=not_before)
        if n == 1 and not new:
            return 0
    return len(pieces)


@dataclass(frozen=True)
class Outbound:
    """Queues messages to recipients: `split` is the platform shaping (cards.parts.split_message), `channels`
    the configured `[channels]`, `platforms` those this bot serves people on (wecom, dingtalk, console)."""

    split: Splitter
    channels: Mapping[str, tuple[Target, ...]] = field(default_factory=dict)
    platforms: frozenset[str] = frozenset({"console"})

    async def send(self, session: AsyncSession, key: str, to: Recipient, message: Sendable, now: datetime, *,
                   not_before: datetime | None = None) -> int:
        """Queue `message` for `to` under `key` in the caller's transaction; the rows queued (0: all queued
        already). A Target keeps the key; a user, role or channel gets one key per platform target
        (`key>wecom:user:zhangsan`), so one person on two platforms hears it on both, once each. To ToCopies the
        message should be a card carrying the group (so that shaping keeps it whole); the group is stamped on it."""
        targets = await recipients.resolve(session, to, self.channels, self.platforms)
        group = to.group if isinstance(to, recipients.ToCopies) else ""
        rows = 0
        for target in targets:
            one = key if isinstance(to, Target) else f"{key}>{target.rate_key}"
            rows += await enqueue(session, one, target, message, now, split=self.split, not_before=not_before,
                                  group=group)
        return rows

    async def send_all(self, session: AsyncSession, key: str, items: Iterable[tuple[Recipient, Sendable]],
                       now: datetime) -> int:
        """Queue several messages, the i-th under `key:i` (a handler's replies and notices, in order)."""
        rows = 0
        for i, (to, message) in enumerate(items):
            rows += await self.send(session, f"{key}:{i}", to, message, now)
        return rows
