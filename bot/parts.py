"""Multi-part messages: split at enqueue time into one outbox row per platform send, so each part goes once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.dingtalk import client as dingtalk
from bot.transport import Target
from bot.wecom import client as wecom
from cards.model import Message
from core.messaging import outbox

__all__ = ["PART", "Part", "enqueue", "part_key", "split_message"]

log = logging.getLogger(__name__)

PART = "part"  # key of the marker in a part's stored message JSON: {"key": dedupe key of part 1, "n": 2, "of": 3}

# Per platform: the messages one message goes out as, one platform call each (the clients send the same way).
_SPLITTERS: Mapping[str, Callable[[Target, Message], list[Message]]] = {
    "wecom": wecom.message_parts, "dingtalk": dingtalk.message_parts}


@dataclass(frozen=True)
class Part:
    """Part n of `of` of a message queued under `key` (part 1's dedupe key; part n's is part_key(key, n))."""

    key: str
    n: int
    of: int

    @property
    def previous(self) -> str | None:
        """The dedupe key of the part that must be delivered before this one (None for part 1)."""
        return part_key(self.key, self.n - 1) if self.n > 1 else None

    @classmethod
    def of_row(cls, message: Mapping[str, Any]) -> Part | None:
        """The marker of a stored outbox message, or None for a message of one part (or a malformed marker)."""
        marker = message.get(PART)
        if not isinstance(marker, Mapping):
            return None
        key, n, of = marker.get("key"), marker.get("n"), marker.get("of")
        if not isinstance(key, str) or not isinstance(n, int) or not isinstance(of, int) or not 1 <= n <= of:
            return None
        return cls(key, n, of)


def part_key(key: str, n: int) -> str:
    """The dedupe key of part n: the message's own key for part 1, then key#2, key#3 …"""
    return key if n == 1 else f"{key}#{n}"


def split_message(target: Target, message: Message) -> list[Message]:
    """The parts `message` is sent as to `target` (platforms without a splitter: the message itself)."""
    splitter = _SPLITTERS.get(target.platform)
    if splitter is None:
        return [message]
    try:
        return splitter(target, message)
    except Exception:  # never fail the business transaction: the sender reports the row's problem instead
        log.exception("splitting a message for %s:%s failed; queued whole", target.platform, target.kind)
        return [message]


async def enqueue(session: AsyncSession, dedupe_key: str, target: Target, message: Message, now: datetime, *,
                  not_before: datetime | None = None) -> int:
    """Queue a message in the caller's transaction as one outbox row per part (keys key, key#2, … in order);
    the number of rows queued, 0 (nothing queued) when `dedupe_key` is queued already."""
    parts = split_message(target, message)
    for n, part in enumerate(parts, start=1):
        data = part.to_json()
        if len(parts) > 1:
            data[PART] = {"key": dedupe_key, "n": n, "of": len(parts)}
        new = await outbox.enqueue(session, part_key(dedupe_key, n), target.to_json(), data, now,
                                   not_before=not_before)
        if n == 1 and not new:
            return 0
    return len(parts)
