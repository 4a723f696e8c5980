"""The neutral inbound event every platform adapter produces: one user message or one card click."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

PLATFORMS = ("wecom", "dingtalk", "console")


@dataclass(frozen=True)
class Inbound:
    """What a verified platform callback says, in platform-neutral terms.

    platform: "wecom" | "dingtalk" | "console".
    user_id: the platform's verified sender id (WeCom UserID, DingTalk staff id, console demo user name).
    dedupe_key: unique per event (WeCom: user + MsgId, or user + TaskId + EventKey + CreateTime for a
        click; DingTalk: msgId); a platform retry carries the same key.
    received_at: timezone-aware time the adapter accepted it.
    chat_id: the group/conversation for a group message, None in a one-to-one app chat.
    text: the message text (stripped), for a message.
    action: the button key, for a card click (e.g. "approval:12:1:approve").
    scan: a scan (WeCom's scancode_waitmsg ScanResult, e.g. "EAN_13,6930180079197"; the console's 扫码 field):
        the raw code, read by core.ledger.scan.parse_scan.
    image: a picture message: how to fetch it — {"media_id"} (WeCom), {"download_code"} (DingTalk) or
        {"data": base64, "content_type"} (console); the dispatcher downloads it before the handler runs.
    reply: platform data needed to answer in place (DingTalk sessionWebhook and its expiry, WeCom
        ResponseCode and TaskId for a card update); plain JSON-able values only.
    """

    platform: str
    user_id: str
    dedupe_key: str
    received_at: datetime
    chat_id: str | None = None
    text: str | None = None
    action: str | None = None
    image: Mapping[str, Any] | None = None
    scan: str | None = None
    reply: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ValueError(f"unknown platform {self.platform!r}")
        if sum(x is not None for x in (self.text, self.action, self.image, self.scan)) != 1:
            raise ValueError("an Inbound carries one of text, an action, an image or a scan")
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
