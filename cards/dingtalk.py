"""DingTalk's shape of a neutral message: byte limits, webhook bodies, OpenAPI msgParams and message parts."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cards import render
from cards.model import Message, file_as_markdown
from cards.split import fit

WEBHOOK_MAX_BYTES = 20_000  # custom robot and sessionWebhook: whole JSON body (460101 beyond)
MSG_PARAM_MAX_BYTES = 15_000  # OpenAPI groupMessages msgParam; used for batchSend too
KEYWORD_RESERVE = 256  # bytes robot parts split at enqueue time keep free for the robot's security keyword


class Addressed(Protocol):
    """What shaping needs to know of a target: its kind ("user", "group", "session", "robot")."""

    kind: str


def dumps(obj: Any) -> str:
    """Compact JSON with Chinese kept as is (how DingTalk bodies are sent and measured)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def card_params(message: Message) -> dict[str, str]:
    """The cardParamMap of our generic card template (all values strings, as DingTalk requires)."""
    return render.dingtalk_card_params(message)


def card_fallback_text(message: Message) -> str:
    """A card as plain text, for places that cannot show interactive cards (webhooks, no template): title, body,
    and the buttons with where to click them."""
    return render.card_text(message, "dingtalk")


def _markdown_title(message: Message) -> str:
    if message.title:
        return message.title
    first = message.text.strip().splitlines()[0] if message.text.strip() else "消息"
    return first.lstrip("#> ").strip()[:40] or "消息"


def webhook_bodies(message: Message, limit: int = WEBHOOK_MAX_BYTES, *,
                   keyword: str | None = None) -> list[dict[str, Any]]:
    """Custom-robot / sessionWebhook JSON bodies for a text, markdown, link or card message, each ≤ limit bytes.

    Cards become plain text (webhooks cannot show interactive cards); images are handled by the caller.
    keyword: a robot's security keyword, put on its own line before every part that lacks it (a long message
    is split, and DingTalk checks each part)."""

    def tagged(text: str) -> str:
        return text if not keyword or keyword in text else f"{keyword}\n{text}"

    def measured(body: Callable[[str], dict[str, Any]]) -> Callable[[str], int]:
        return lambda p: len(dumps(body(f"{keyword}\n{p}" if keyword else p)).encode())

    if message.kind == "link":
        fields = _link_fields(message)
        if keyword and keyword not in fields["title"] + fields["text"]:
            fields["text"] = tagged(fields["text"])
        return [{"msgtype": "link", "link": fields}]
    if message.kind == "markdown":
        title = _markdown_title(message)

        def md(text: str) -> dict[str, Any]:
            return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}

        return [md(tagged(p)) for p in fit(message.text, limit, measured(md))]
    content = card_fallback_text(message) if message.kind == "card" else message.text

    def txt(text: str) -> dict[str, Any]:
        return {"msgtype": "text", "text": {"content": text}}

    return [txt(tagged(p)) for p in fit(content, limit, measured(txt))]


def openapi_params(message: Message) -> tuple[str, list[dict[str, str]]]:
    """The robot msgKey and the msgParams (each ≤ 15,000 bytes as JSON) of a text, markdown or card (as text)
    message sent through oToMessages/batchSend or groupMessages/send; a link as sampleLink."""
    if message.kind == "link":
        return "sampleLink", [_link_fields(message)]
    if message.kind == "markdown":
        title = _markdown_title(message)
        return "sampleMarkdown", [{"title": title, "text": p} for p in fit(
            message.text, MSG_PARAM_MAX_BYTES, lambda p: len(dumps({"title": title, "text": p}).encode()))]
    content = card_fallback_text(message) if message.kind == "card" else message.text
    return "sampleText", [{"content": p} for p in fit(
        content, MSG_PARAM_MAX_BYTES, lambda p: len(dumps({"content": p}).encode()))]


def _link_fields(message: Message) -> dict[str, str]:
    """A link message as DingTalk's link / sampleLink fields (text is required there: the title stands in)."""
    return {"title": message.title, "text": message.text or message.title, "messageUrl": message.url,
            "picUrl": message.pic_url}


def _part(kind: str, fields: Mapping[str, str]) -> Message:
    if kind == "markdown":
        return Message("markdown", title=fields["title"], text=fields["text"])
    return Message("text", text=fields["content"])


def message_parts(target: Addressed, message: Message) -> list[Message]:
    """The messages `message` goes out as to a DingTalk target, one platform call each, in order: text and
    markdown split to the OpenAPI msgParam limit (users, groups) or the webhook body limit (sessions, robots;
    robots keep KEYWORD_RESERVE bytes free for a security keyword), an image's caption as text before it
    (users, groups), a file as markdown with its download link. Cards and other images stay whole.
    message_parts(target, part) == [part] for every part."""
    openapi = target.kind in ("user", "group")
    if message.kind == "file":  # no file upload here: the caption with the download link, as markdown
        return message_parts(target, file_as_markdown(message))
    if message.kind in ("card", "link"):
        return [message]
    if message.kind == "image":
        caption = "\n".join(x for x in (message.title, message.text) if x)
        if not openapi or not caption:
            return [message]
        return [*message_parts(target, Message("text", text=caption)), Message("image", png=message.png)]
    if openapi:
        key, params = openapi_params(message)
        return [_part("markdown" if key == "sampleMarkdown" else "text", p) for p in params]
    limit = WEBHOOK_MAX_BYTES - (KEYWORD_RESERVE if target.kind == "robot" else 0)
    return [_part(body["msgtype"], body[body["msgtype"]]) for body in webhook_bodies(message, limit)]
