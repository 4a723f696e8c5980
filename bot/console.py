"""The local console: a chat-like web page served by the bot, going through the same dispatcher and outbox."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.inbound import Inbound
from cards.model import Message
from core.messaging import people
from core.messaging.targets import Target
from core.models.masters import roles_zh

MAX_TEXT = 2000
MAX_SCAN = 200  # a scanned code (GS1 codes with batch and expiry stay well under it)
MAX_IMAGE = 2 * 1024 * 1024  # decoded bytes of one uploaded picture (the platforms take pictures up to 2 MB too)
MAX_BODY = MAX_IMAGE * 4 // 3 + 64 * 1024  # such a picture as base64 in JSON, plus margin (callbacks keep 64 KiB)
KEEP_IMAGE_CHARS = 64 * 1024 * 1024  # base64 of pictures the log holds at most; the oldest entries go first
IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))  # magic bytes → type
TOO_LARGE = (f"请求内容太大（超过 {MAX_BODY // 1024} KB）。处理办法：文字请控制在 {MAX_TEXT} 字以内；"
             f"图片请压缩或缩小到 {MAX_IMAGE // (1024 * 1024)} MB 以内再发送")


class ConsoleLog:
    """What the console shows: the users' own messages and everything the outbox delivered to it (in memory)."""

    def __init__(self, keep: int = 2000, keep_image_chars: int = KEEP_IMAGE_CHARS) -> None:
        self.keep = keep
        self.keep_image_chars = keep_image_chars
        self.entries: list[dict[str, Any]] = []
        self.files: dict[int, tuple[str, bytes]] = {}  # entry id → (file name, bytes) of file messages kept
        self._next = 1
        self._image_chars = 0

    def add(self, direction: str, target: Target, message: Message) -> dict[str, Any]:
        """Append one entry; returns it (with its id). The oldest entries go beyond `keep` entries or
        `keep_image_chars` of pictures (the newest entry always stays)."""
        entry = {"id": self._next, "direction": direction, "target": target.to_json(), "message": message.to_json(),
                 "at": datetime.now(UTC).isoformat()}
        if message.kind == "file":  # the page gets a download link, not the bytes
            entry["message"].pop("data", None)
            entry["message"]["url"] = f"/console/api/file/{self._next}"
            entry["size"] = len(message.data or b"")
            self.files[self._next] = (message.filename, message.data or b"")
        self._next += 1
        self.entries.append(entry)
        self._image_chars += _image_chars(entry)
        while len(self.entries) > 1 and (len(self.entries) > self.keep or self._image_chars > self.keep_image_chars):
            gone = self.entries.pop(0)
            self._image_chars -= _image_chars(gone)
            self.files.pop(gone["id"], None)
        return entry

    def after(self, last: int) -> list[dict[str, Any]]:
        """Entries with an id above last."""
        return [e for e in self.entries if e["id"] > last]


def _image_chars(entry: dict[str, Any]) -> int:
    return len(entry["message"].get("png") or "") + entry.get("size", 0)


class ConsoleTransport:
    """The outbox's transport for platform "console": delivery is appending to the console log."""

    platform = "console"

    def __init__(self, log: ConsoleLog) -> None:
        self.log = log

    async def send(self, target: Target, message: Message) -> None:
        """Deliver: the page picks it up on its next poll."""
        self.log.add("bot", target, message)


def picture(value: Any) -> tuple[bytes, str]:
    """An uploaded picture's bytes and content type from its base64 text (a `data:` URL prefix is allowed);
    HTTPBadRequest saying what is wrong and how to fix it unless it is a PNG or JPEG of at most MAX_IMAGE."""
    limit = f"{MAX_IMAGE // (1024 * 1024)} MB"
    if not isinstance(value, str) or not value.strip():
        raise web.HTTPBadRequest(text=f"image 必须是 PNG 或 JPEG 图片的 base64 文字。处理办法：选择一张不超过 {limit} "
                                      "的 PNG 或 JPEG 图片后再发送")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    if len(value) > MAX_BODY:  # not worth decoding
        raise web.HTTPBadRequest(text=f"图片太大（超过 {limit}）。处理办法：压缩或缩小到 {limit} 以内再发送")
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise web.HTTPBadRequest(text="图片内容不是有效的 base64 编码。处理办法：请用页面上的「图片」按钮选择文件发送，"
                                      "或把图片文件完整地按 base64 编码后放在 image 中") from None
    if len(raw) > MAX_IMAGE:
        raise web.HTTPBadRequest(text=f"图片太大（{len(raw) / (1024 * 1024):.1f} MB，最大 {limit}）。"
                                      f"处理办法：压缩或缩小到 {limit} 以内再发送")
    for magic, content_type in IMAGE_TYPES:
        if raw.startswith(magic):
            return raw, content_type
    raise web.HTTPBadRequest(text="这不是 PNG 或 JPEG 图片（文件内容的开头不对，可能只是改了扩展名）。"
                                  "处理办法：用看图或截图工具把它另存为 PNG 或 JPEG 后再发送")


def routes(log: ConsoleLog, db: Any, accept: Any) -> list[web.RouteDef]:
    """The page and its small JSON API; accept(Inbound) hands an event to the dispatcher."""

    html = resources.files("cards").joinpath("html/console.html").read_text(encoding="utf-8")  # once, at start-up

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def users(_request: web.Request) -> web.Response:
        async with db.read(snapshot=False) as s:
            found = await people.everyone(s)
        return web.json_response([{"name": p.name, "roles": ",".join(sorted(p.roles)), "roles_zh": roles_zh(p.roles),
                                   "department": p.department} for p in found])

    async def body(request: web.Request) -> dict[str, Any]:
        # The console alone takes a picture's worth of body; platform callbacks keep the app's small limit.
        try:
            data = await request.clone(client_max_size=MAX_BODY).json()
        except web.HTTPRequestEntityTooLarge:
            raise web.HTTPRequestEntityTooLarge(MAX_BODY, request.content_length or MAX_BODY + 1,
                                                text=TOO_LARGE) from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="请求内容不是 JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("user"), str) or not data["user"].strip():
            raise web.HTTPBadRequest(text="缺少 user（演示用户姓名）")
        return data

    async def send(request: web.Request) -> web.Response:
        data = await body(request)
        user = data["user"].strip()
        if data.get("image") is not None:
            if data.get("text") is not None:
                raise web.HTTPBadRequest(text="一条消息只能是文字或图片。处理办法：text 和 image 只填一个，分开发送")
            raw, content_type = picture(data["image"])
            # The log's image entry holds the bytes as they are (PNG or JPEG); the page tells them apart.
            log.add("user", Target("console", "user", user), Message("image", png=raw))
            image = {"data": base64.b64encode(raw).decode("ascii"), "content_type": content_type}
            await accept(Inbound("console", user, f"console:{uuid.uuid4().hex}", datetime.now(UTC), image=image))
            return web.json_response({"ok": True}, status=202)
        if data.get("scan") is not None:
            code = data["scan"]
            if data.get("text") is not None or not isinstance(code, str) or not code.strip() or len(code) > MAX_SCAN:
                raise web.HTTPBadRequest(text=f"scan 必须是 1–{MAX_SCAN} 个字符的扫码结果（条码或 GS1 码），"
                                              "且不能与 text 同发")
            log.add("user", Target("console", "user", user), Message("text", text=f"［扫码］{code.strip()}"))
            await accept(Inbound("console", user, f"console:{uuid.uuid4().hex}", datetime.now(UTC), scan=code.strip()))
            return web.json_response({"ok": True}, status=202)
        value = data.get("text")
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise web.HTTPBadRequest(text=f"text 必须是 1–{MAX_TEXT} 个字符的文字")
        log.add("user", Target("console", "user", user), Message("text", text=value.strip()))
        await accept(Inbound("console", user, f"console:{uuid.uuid4().hex}", datetime.now(UTC), text=value.strip()))
        return web.json_response({"ok": True}, status=202)

    async def click(request: web.Request) -> web.Response:
        data = await body(request)
        key = data.get("key")
        if not isinstance(key, str) or not key or len(key) > 256:
            raise web.HTTPBadRequest(text="缺少按钮 key")
        await accept(Inbound("console", data["user"].strip(), f"console:{uuid.uuid4().hex}", datetime.now(UTC),
                             action=key))
        return web.json_response({"ok": True}, status=202)

    async def messages(request: web.Request) -> web.Response:
        try:
            last = int(request.query.get("after", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="after 必须是整数") from None
        found = log.after(last)
        return web.json_response({"messages": found, "last": found[-1]["id"] if found else last})

    async def file(request: web.Request) -> web.Response:
        try:
            found = log.files.get(int(request.match_info["id"]))
        except ValueError:
            found = None
        if found is None:
            raise web.HTTPNotFound(text="文件不存在或已从控制台记录中移除（控制台只保留最近的消息）")
        name, data = found
        return web.Response(body=data, content_type="application/octet-stream", headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})

    return [
        web.get("/console", page),
        web.get("/console/api/file/{id}", file),
        web.get("/console/api/users", users),
        web.post("/console/api/send", send),
        web.post("/console/api/click", click),
        web.get("/console/api/messages", messages),
    ]
