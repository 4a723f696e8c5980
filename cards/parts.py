"""The parts one neutral message goes out as on its target's platform (one platform call each)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from cards import dingtalk, wecom
from cards.model import Message

__all__ = ["split_message"]

log = logging.getLogger(__name__)


class Addressed(Protocol):
    """What shaping needs to know of a target (core.messaging.targets.Target has both)."""

    platform: str
    kind: str


# Per platform: the messages one message goes out as (the platform clients send the same way).
_SPLITTERS: Mapping[str, Callable[[Addressed, Message], list[Message]]] = {
    "wecom": wecom.message_parts, "dingtalk": dingtalk.message_parts}


def split_message(target: Addressed, message: Message) -> list[Message]:
    """The parts `message` is sent as to `target` (platforms without limits, e.g. the console: the message)."""
    splitter = _SPLITTERS.get(target.platform)
    if splitter is None:
        return [message]
    try:
        return splitter(target, message)
    except Exception:  # never fail the business transaction: the sender reports the row's problem instead
        log.exception("splitting a message for %s:%s failed; queued whole", target.platform, target.kind)
        return [message]
