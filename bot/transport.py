"""How a platform client is driven by the outbox sender and reports a failed send."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from cards.model import Message
from core.messaging.targets import Target

# Set by the outbox sender while it re-sends a row (attempt 2 and later): seconds since the row's first attempt
# plus a margin. A platform that can drop a message identical to one it delivered within a window (WeCom's
# enable_duplicate_check) uses it, so a send that reached the user but whose answer was lost (a timeout) does
# not reach them twice. None on a first attempt: a first attempt is never swallowed.
RESEND_WINDOW: ContextVar[int | None] = ContextVar("jxcbot_resend_window", default=None)


class SendError(Exception):
    """A send failed. retryable: worth trying again later (-1, 45009, 45033, 130101, 5xx, timeouts);
    otherwise permanent (bad key, bad msgtype, content too long …). code: the platform's errcode or HTTP
    status; retry_after: seconds the platform asked us to wait (e.g. DingTalk robot's 10-minute block)."""

    def __init__(self, message: str, *, retryable: bool, code: int | str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True)
class Delivered:
    """What delivering a card left to update that copy by later: the platform's handle (WeCom: a response_code,
    single use; DingTalk: the card's outTrackId; console: the card id) and whether it is used up already (a WeCom
    code that has just updated the card)."""

    ref: str
    spent: bool = False


class Transport(Protocol):
    """A platform client the outbox sender uses; raises SendError on failure."""

    platform: str

    async def send(self, target: Target, message: Message) -> Delivered | None:
        """Deliver one message (splitting over-long text itself); SendError when it cannot. For a card shown as an
        updatable card: its handle (None for everything else)."""
        ...
