"""The neutral message model: what handlers say, before any platform renders it."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

KINDS = ("text", "markdown", "image", "card", "link", "file")
FILE_LIMIT = 20 * 1024 * 1024  # bytes: WeCom media/upload and webhook/upload_media type=file


@dataclass(frozen=True)
class Button:
    """A card button: its label and the key that routes the click (e.g. "approval:12:1:approve")."""

    label: str
    key: str
    style: str = "default"  # "default" | "primary" | "danger"


@dataclass(frozen=True)
class Message:
    """One thing to say. kind "text": text; "markdown": title + text (markdown); "image": png (+ title as
    caption); "card": title + text + buttons, optionally card_id to update a card already sent; "link": a
    link preview — title, text as its description, url (http/https) and optionally pic_url (WeCom news,
    DingTalk link); "file": a document to download — data (bytes) + filename, title and text as its caption,
    url (optional) where it can be downloaded instead (platforms that cannot take files show the caption and the
    link). group: for a card, what it is about (e.g. "approval:12:sales"): every delivered copy is
    recorded under it (core.messaging.card_copies), so a later card to core.messaging.recipients.ToCopies(group)
    updates each copy in place."""

    kind: str
    text: str = ""
    title: str = ""
    png: bytes | None = field(default=None, repr=False)
    buttons: tuple[Button, ...] = ()
    card_id: str | None = None
    url: str = ""
    pic_url: str = ""
    group: str = ""
    data: bytes | None = field(default=None, repr=False)
    filename: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown message kind {self.kind!r}")
        if self.kind == "image" and not self.png:
            raise ValueError("an image message needs png bytes")
        if self.kind == "link" and (not self.title or not self.url.startswith(("https://", "http://"))):
            raise ValueError("a link message needs a title and an http(s) url")
        if self.kind == "file" and (not self.data or not self.filename or "/" in self.filename):
            raise ValueError("a file message needs bytes and a plain file name")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the outbox stores this)."""
        out: dict[str, Any] = {"kind": self.kind, "text": self.text, "title": self.title}
        if self.png is not None:
            out["png"] = base64.b64encode(self.png).decode("ascii")
        if self.buttons:
            out["buttons"] = [{"label": b.label, "key": b.key, "style": b.style} for b in self.buttons]
        if self.card_id is not None:
            out["card_id"] = self.card_id
        if self.url:
            out["url"] = self.url
        if self.pic_url:
            out["pic_url"] = self.pic_url
        if self.group:
            out["group"] = self.group
        if self.data is not None:
            out["data"] = base64.b64encode(self.data).decode("ascii")
        if self.filename:
            out["filename"] = self.filename
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        """The inverse of to_json."""
        return cls(
            kind=data["kind"],
            text=data.get("text", ""),
            title=data.get("title", ""),
            png=base64.b64decode(data["png"]) if data.get("png") else None,
            buttons=tuple(Button(b["label"], b["key"], b.get("style", "default")) for b in data.get("buttons", ())),
            card_id=data.get("card_id"),
            url=data.get("url", ""),
            pic_url=data.get("pic_url", ""),
            group=data.get("group", ""),
            data=base64.b64decode(data["data"]) if data.get("data") else None,
            filename=data.get("filename", ""),
        )


def text(body: str) -> Message:
    """A plain text message."""
    return Message("text", text=body)



def file_link(message: Message) -> str:
    """Where a file message can be downloaded, as a markdown line: a link when its url is absolute; a relative url
    is the console's (shown as is); no url: say the file is attached to the report elsewhere."""
    if message.url.startswith(("https://", "http://")):
        return f"[下载完整文件 {message.filename}]({message.url})"
    if message.url:
        return f"完整文件 {message.filename}：请在 jxcbot 控制台下载（{message.url}）"
    return f"完整文件 {message.filename} 无法在这里发送，请联系管理员在 jxcbot 控制台查看"


def file_as_markdown(message: Message) -> Message:
    """A file message for a place that cannot take files: its caption and where to download it, as markdown."""
    body = "\n\n".join(x for x in (message.text, file_link(message)) if x)
    return Message("markdown", title=message.title or message.filename, text=body)
