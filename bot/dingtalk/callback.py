"""DingTalk callback bodies (robot messages and interactive card clicks) turned into neutral Inbound events."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from bot.dingtalk.sign import MAX_BODY_BYTES, CallbackRejected, check_body_size, verify_callback_headers
from bot.inbound import Inbound

__all__ = [
    "GROUP_CONVERSATION",
    "ONE_TO_ONE_CONVERSATION",
    "card_click_dedupe_key",
    "card_click_to_inbound",
    "message_to_inbound",
    "parse_body",
    "read_card_callback",
    "read_message_callback",
]

log = logging.getLogger(__name__)

ONE_TO_ONE_CONVERSATION = "1"
GROUP_CONVERSATION = "2"
IGNORED_MSGTYPES = frozenset({"audio", "video", "file"})
GROUP_SPACE_PREFIX = "dtv1.card//IM_GROUP."


def parse_body(body: bytes, *, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The JSON object in a callback body; CallbackRejected for an oversized, non-UTF-8, non-JSON or non-object body."""
    check_body_size(body, limit)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CallbackRejected("malformed json") from None
    if not isinstance(data, dict):
        raise CallbackRejected("malformed json")
    return data


def _str_field(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise CallbackRejected(f"malformed message: {key}")
    return value


def _text_of(payload: Mapping[str, Any], msgtype: str) -> str | None:
    """The user's text: text.content, or the text parts of a richText; None when there is none."""
    if msgtype == "text":
        text = payload.get("text")
        if not isinstance(text, Mapping) or not isinstance(text.get("content"), str):
            raise CallbackRejected("malformed message: text.content")
        return text["content"].strip()
    content = payload.get("content")
    parts = content.get("richText") if isinstance(content, Mapping) else None
    if not isinstance(parts, list):
        raise CallbackRejected("malformed message: content.richText")
    texts = [p["text"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
    joined = "".join(texts).strip()
    return joined or None


def message_to_inbound(payload: Mapping[str, Any], *, received_at: datetime | None = None,
                       robot_code: str | None = None) -> Inbound | None:
    """A robot message body (HTTP callback or Stream `data`) → Inbound; None for what the bot ignores.

    Ignored (None): bodies without `msgtype` (quota notices), audio/video/files, a richText without text, and
    senders outside the organisation (no `senderStaffId`, so no verified identity). A picture →
    Inbound(image={"download_code": content.downloadCode}) (downloaded through robot/messageFiles/download).
    CallbackRejected: a text/richText message missing the fields we rely on, or one addressed to another robot
    (`robot_code` given and the body's robotCode differs).

    dedupe_key = msgId; user_id = senderStaffId; chat_id = conversationId for groups (conversationType "2"),
    None for 1:1; reply = {"session_webhook", "session_webhook_expires" (epoch ms)} when present."""
    msgtype = payload.get("msgtype")
    if msgtype is None:
        log.info("dingtalk callback without msgtype ignored")
        return None
    if not isinstance(msgtype, str):
        raise CallbackRejected("malformed message: msgtype")
    if robot_code is not None and payload.get("robotCode") not in (None, robot_code):
        raise CallbackRejected("other robot")
    if msgtype in IGNORED_MSGTYPES:
        return None
    if msgtype not in ("text", "richText", "picture"):
        log.info("dingtalk message of type %r ignored", msgtype[:40])
        return None
    msg_id = _str_field(payload, "msgId")
    image: dict[str, str] | None = None
    text: str | None = None
    if msgtype == "picture":
        content = payload.get("content")
        code = content.get("downloadCode") if isinstance(content, Mapping) else None
        if not isinstance(code, str) or not code:
            raise CallbackRejected("malformed message: content.downloadCode")
        image = {"download_code": code}
    else:
        text = _text_of(payload, msgtype)
        if text is None:
            return None
    conversation_type = str(payload.get("conversationType", ""))
    if conversation_type == GROUP_CONVERSATION:
        chat_id: str | None = _str_field(payload, "conversationId")
    elif conversation_type == ONE_TO_ONE_CONVERSATION:
        chat_id = None
    else:
        raise CallbackRejected("malformed message: conversationType")
    staff_id = payload.get("senderStaffId")
    if staff_id is None or staff_id == "":
        log.info("dingtalk message from a sender outside the organisation ignored")
        return None
    if not isinstance(staff_id, str):
        raise CallbackRejected("malformed message: senderStaffId")
    reply: dict[str, Any] = {}
    webhook = payload.get("sessionWebhook")
    if webhook is not None:
        expires = payload.get("sessionWebhookExpiredTime")
        if not isinstance(webhook, str) or not webhook.startswith(("https://", "http://")):
            raise CallbackRejected("malformed message: sessionWebhook")
        if isinstance(expires, bool) or not isinstance(expires, int | str) or not str(expires).isdigit():
            raise CallbackRejected("malformed message: sessionWebhookExpiredTime")
        reply = {"session_webhook": webhook, "session_webhook_expires": int(expires)}
    return Inbound(
        platform="dingtalk",
        user_id=staff_id,
        dedupe_key=msg_id,
        received_at=received_at or datetime.now(UTC),
        chat_id=chat_id,
        text=text,
        image=image,
        reply=MappingProxyType(reply),
    )


def _json_field(payload: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A field that DingTalk sends as a JSON *string* (content, extension); a dict is accepted too."""
    value = payload.get(key)
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise CallbackRejected(f"malformed card callback: {key}")
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        raise CallbackRejected(f"malformed card callback: {key}") from None
    if not isinstance(parsed, dict):
        raise CallbackRejected(f"malformed card callback: {key}")
    return parsed


def _action_of(content: Mapping[str, Any]) -> str:
    """The clicked button's key: cardPrivateData.params.action, else the only actionId."""
    private = content.get("cardPrivateData")
    if not isinstance(private, Mapping):
        raise CallbackRejected("malformed card callback: cardPrivateData")
    params = private.get("params")
    if isinstance(params, Mapping) and isinstance(params.get("action"), str) and params["action"]:
        return params["action"]
    action_ids = private.get("actionIds")
    if isinstance(action_ids, list) and len(action_ids) == 1 and isinstance(action_ids[0], str) and action_ids[0]:
        return action_ids[0]
    raise CallbackRejected("malformed card callback: no action")


def card_click_dedupe_key(out_track_id: str, user_id: str, content: Mapping[str, Any]) -> str:
    """A stable key for one click: the click payload carries no event id, so hash what identifies it.

    A platform retry of the same click gets the same key; so does the same user pressing the same button of the
    same card again, which the approval compare-and-set would turn into a no-op anyway."""
    canonical = json.dumps([out_track_id, user_id, content], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "card:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def card_click_to_inbound(payload: Mapping[str, Any], *, received_at: datetime | None = None) -> Inbound | None:
    """An interactive card click (§4 payload: outTrackId, userId, content as a JSON string …) → Inbound.

    action = content.cardPrivateData.params.action (the key we put on the button); user_id = userId (the
    clicker; authorise it against the approval step, never trust the key); chat_id = the group for IM_GROUP
    cards; reply = {"card_id": outTrackId, "space_type", "space_id"} so the handler can update the card.
    None for callback types other than actionCallback; CallbackRejected when malformed."""
    kind = payload.get("type", "actionCallback")
    if kind != "actionCallback":
        log.info("dingtalk card callback of type %r ignored", str(kind)[:40])
        return None
    out_track_id = _str_field(payload, "outTrackId")
    user_id = _str_field(payload, "userId")
    content = _json_field(payload, "content")
    action = _action_of(content)
    space_type = payload.get("spaceType")
    space_id = payload.get("spaceId")
    if space_type is not None and not isinstance(space_type, str):
        raise CallbackRejected("malformed card callback: spaceType")
    if space_id is not None and not isinstance(space_id, str):
        raise CallbackRejected("malformed card callback: spaceId")
    chat_id = None
    if space_type == "IM_GROUP" and space_id:
        chat_id = space_id.removeprefix(GROUP_SPACE_PREFIX)
    reply = {"card_id": out_track_id, "space_type": space_type, "space_id": space_id}
    return Inbound(
        platform="dingtalk",
        user_id=user_id,
        dedupe_key=card_click_dedupe_key(out_track_id, user_id, content),
        received_at=received_at or datetime.now(UTC),
        chat_id=chat_id,
        action=action,
        reply=MappingProxyType(reply),
    )


def read_message_callback(headers: Mapping[str, str], body: bytes, app_secret: str, *, now_ms: int | None = None,
                          robot_code: str | None = None, received_at: datetime | None = None) -> Inbound | None:
    """Everything `/dingtalk/callback` needs: size limit, header signature, JSON, → Inbound (None = ack and ignore).

    Raises only CallbackRejected."""
    check_body_size(body)
    verify_callback_headers(headers, app_secret, now_ms=now_ms)
    return message_to_inbound(parse_body(body), received_at=received_at, robot_code=robot_code)


def read_card_callback(body: bytes, *, received_at: datetime | None = None) -> Inbound | None:
    """Everything `/dingtalk/card-callback` needs after the caller has authenticated the request (for instance
    sign.verify_shared_token on a token in the registered callback URL): size limit, JSON, → Inbound.

    Raises only CallbackRejected."""
    return card_click_to_inbound(parse_body(body), received_at=received_at)
