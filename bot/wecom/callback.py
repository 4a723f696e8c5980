"""Decrypted WeCom callback XML → the neutral Inbound (text and image messages, template-card clicks; the rest
ignored)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import xmltodict

from bot.inbound import Inbound
from bot.wecom.crypto import CallbackRejected
from bot.wecom.menu import CLICKS

__all__ = ["parse_inbound", "parse_xml"]

MAX_XML = 256 * 1024  # characters of decrypted XML (the encrypted body is already capped)


def parse_xml(xml: str | bytes) -> dict[str, Any]:
    """The fields of a decrypted `<xml>…</xml>` callback as a dict (entities disabled; nested elements such
    as SelectedItems stay dicts/lists). CallbackRejected when it is not such a document."""
    if not isinstance(xml, str | bytes | bytearray) or len(xml) > MAX_XML:
        raise CallbackRejected("malformed xml")
    try:
        doc = xmltodict.parse(bytes(xml) if isinstance(xml, bytearray) else xml, disable_entities=True)
    except Exception:
        raise CallbackRejected("malformed xml") from None
    root = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise CallbackRejected("malformed xml")
    return root


def _field(data: dict[str, Any], name: str) -> str | None:
    """A scalar text field, stripped; None when absent, empty or not a scalar."""
    value = data.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _required(data: dict[str, Any], name: str) -> str:
    value = _field(data, name)
    if value is None:
        raise CallbackRejected(f"missing {name}")
    return value


def parse_inbound(xml: str | bytes, *, now: datetime | None = None) -> Inbound | None:
    """One decrypted callback as an Inbound, or None when it is something we acknowledge and ignore.

    - `MsgType=text` → Inbound(text=Content stripped), dedupe_key `wecom:msg:{FromUserName}:{MsgId}`.
    - `MsgType=image` → Inbound(image={"media_id": MediaId}) (downloaded by media/get), the same dedupe_key.
    - `MsgType=event, Event=template_card_event` (a button click on a card the app sent) →
      Inbound(action=EventKey, reply={"response_code": ResponseCode or None, "task_id": TaskId}),
      dedupe_key `wecom:card:{FromUserName}:{TaskId}:{EventKey}:{CreateTime}`.
    - `MsgType=event, Event=scancode_waitmsg` (the app menu's 扫码 button; WeCom shows "消息接收中" and waits for
      the answer) → Inbound(scan=ScanCodeInfo.ScanResult), dedupe_key
      `wecom:scan:{FromUserName}:{CreateTime}:{EventKey}:{ScanResult}` (a scan event has no MsgId).
    - `Event=click` of a menu button jxcbot installed (bot.wecom.menu: 待办, 帮助) → Inbound(text=that command),
      dedupe_key `wecom:menu:{FromUserName}:{CreateTime}:{EventKey}`.
    - Any other message or event type (voice, video, file, enter_agent, template_card_menu_event, …) → None.

    WeCom UserIDs and TaskIds cannot contain ':', and CreateTime is digits, so the keys are unambiguous
    even though EventKey itself contains ':'. CallbackRejected when the XML is malformed or a handled type
    lacks a field it needs."""
    data = parse_xml(xml)
    received_at = now or datetime.now(UTC)
    msg_type = (_field(data, "MsgType") or "").lower()
    if msg_type == "text":
        user = _required(data, "FromUserName")
        msg_id = _required(data, "MsgId")
        content = data.get("Content")
        text = content.strip() if isinstance(content, str) else ""
        return Inbound(platform="wecom", user_id=user, dedupe_key=f"wecom:msg:{user}:{msg_id}",
                       received_at=received_at, text=text)
    if msg_type == "image":
        user = _required(data, "FromUserName")
        msg_id = _required(data, "MsgId")
        return Inbound(platform="wecom", user_id=user, dedupe_key=f"wecom:msg:{user}:{msg_id}",
                       received_at=received_at, image={"media_id": _required(data, "MediaId")})
    if msg_type == "event" and (_field(data, "Event") or "").lower() == "template_card_event":
        user = _required(data, "FromUserName")
        task_id = _required(data, "TaskId")
        event_key = _required(data, "EventKey")
        create_time = _required(data, "CreateTime")
        reply = MappingProxyType({"response_code": _field(data, "ResponseCode"), "task_id": task_id})
        return Inbound(platform="wecom", user_id=user,
                       dedupe_key=f"wecom:card:{user}:{task_id}:{event_key}:{create_time}",
                       received_at=received_at, action=event_key, reply=reply)
    if msg_type == "event" and (_field(data, "Event") or "").lower() == "click" \
            and (_field(data, "EventKey") or "") in CLICKS:
        user, create_time = _required(data, "FromUserName"), _required(data, "CreateTime")
        key = _field(data, "EventKey")
        return Inbound(platform="wecom", user_id=user, dedupe_key=f"wecom:menu:{user}:{create_time}:{key}",
                       received_at=received_at, text=CLICKS[key or ""])
    if msg_type == "event" and (_field(data, "Event") or "").lower() == "scancode_waitmsg":
        user = _required(data, "FromUserName")
        create_time = _required(data, "CreateTime")
        info = data.get("ScanCodeInfo")
        result = info.get("ScanResult") if isinstance(info, dict) else None
        if not isinstance(result, str) or not result.strip():
            raise CallbackRejected("scancode_waitmsg without ScanCodeInfo/ScanResult")
        key = _field(data, "EventKey") or ""
        return Inbound(platform="wecom", user_id=user,
                       dedupe_key=f"wecom:scan:{user}:{create_time}:{key}:{result.strip()[:100]}",
                       received_at=received_at, scan=result.strip())
    return None
