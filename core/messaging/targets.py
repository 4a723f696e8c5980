"""Where a message goes: one destination on one platform, as the outbox stores it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TARGET_KINDS = ("user", "group", "robot", "session", "aibot")

@dataclass(frozen=True)
class Target:
    """A destination on one platform.

    kind "user": one person by platform user id (WeCom app message / DingTalk oToMessages);
    "group": a conversation the app is in (DingTalk openConversationId);
    "robot": a configured group robot by its name in [wecom.robots] / [dingtalk.robots];
    "session": a DingTalk sessionWebhook URL (valid until `expires_at`, epoch ms), with the `fallback` the
    message goes to instead once it has expired (the group or the person, through the OpenAPI).
    "aibot": a reply on the WeCom intelligent robot's long connection, by the callback's req_id, with the
    `fallback` (the group or the person) it is pushed to once that req_id cannot carry it.
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


def parse_target(text: str) -> Target:
    """"platform:kind:address" (e.g. "wecom:robot:admins") as a Target; ValueError when malformed."""
    parts = text.strip().split(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not platform:kind:address: {text!r}")
    return Target(*parts)
