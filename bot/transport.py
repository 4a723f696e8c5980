"""Where a message goes and how a platform client reports a failed send."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from cards.model import Message

TARGET_KINDS = ("user", "group", "robot", "session")

# Set by the outbox sender while it re-sends a row (attempt 2 and later): seconds since the row's first attempt
# plus a margin. A platform that can drop a message identical to one it delivered within a window (WeCom's
# enable_duplicate_check) uses it, so a send that reached the user but whose answer was lost (a timeout) does
# not reach them twice. None on a first attempt: a first attempt is never swallowed.
RESEND_WINDOW: ContextVar[int | None] = ContextVar("jxcbot_resend_window", default=None)


@dataclass(frozen=True)
class Target:
    """A destination on one platform.

    kind "user": one person by platform user id (WeCom app message / DingTalk oToMessages);
    "group": a conversation the app is in (DingTalk openConversationId);
    "robot": a configured group robot by its name in [wecom.robots] / [dingtalk.robots];
    "session": a DingTalk sessionWebhook URL (valid until `expires_at`, epoch ms), with the `fallback` the
    message goes to instead once it has expired (the group or the person, through the OpenAPI).
    For platform "console" the address is a demo user name or a channel name."""

    platform: str
    kind: str
    address: str
    expires_at: int | None = None
    fallback: Target | None = None

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"unknown target kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the outbox stores this)."""
        out: dict[str, Any] = {"platform": self.platform, "kind": self.kind, "address": self.address}
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at
        if self.fallback is not None:
            out["fallback"] = self.fallback.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        """The inverse of to_json."""
        fallback = data.get("fallback")
        return cls(data["platform"], data["kind"], data["address"], data.get("expires_at"),
                   cls.from_json(fallback) if fallback else None)

    @property
    def rate_key(self) -> str:
        """The key rate limits are counted under (one robot, one user of the app …)."""
        return f"{self.platform}:{self.kind}:{self.address}"


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


class Transport(Protocol):
    """A platform client the outbox sender uses; raises SendError on failure."""

    platform: str

    async def send(self, target: Target, message: Message) -> None:
        """Deliver one message (splitting over-long text itself); SendError when it cannot."""
        ...
