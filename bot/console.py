"""The local console: a chat-like web page served by the bot, going through the same dispatcher and outbox."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from bot.inbound import Inbound
from cards.model import Message
from core.messaging import people
from core.messaging.targets import Target
from core.models.masters import roles_zh

MAX_TEXT = 2000


class ConsoleLog:
    """What the console shows: the users' own messages and everything the outbox delivered to it (in memory)."""

    def __init__(self, keep: int = 2000) -> None:
        self.keep = keep
        self.entries: list[dict[str, Any]] = []
        self._next = 1

    def add(self, direction: str, target: Target, message: Message) -> dict[str, Any]:
        """Append one entry; returns it (with its id)."""
        entry = {"id": self._next, "direction": direction, "target": target.to_json(), "message": message.to_json(),
                 "at": datetime.now(UTC).isoformat()}
        self._next += 1
        self.entries.append(entry)
        del self.entries[:-self.keep]
        return entry

    def after(self, last: int) -> list[dict[str, Any]]:
        """Entries with an id above last."""
        return [e for e in self.entries if e["id"] > last]


class ConsoleTransport:
    """The outbox's transport for platform "console": delivery is appending to the console log."""

    platform = "console"

    def __init__(self, log: ConsoleLog) -> None:
        self.log = log

    async def send(self, target: Target, message: Message) -> None:
        """Deliver: the page picks it up on its next poll."""
        self.log.add("bot", target, message)


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
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="请求内容不是 JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("user"), str) or not data["user"].strip():
            raise web.HTTPBadRequest(text="缺少 user（演示用户姓名）")
        return data

    async def send(request: web.Request) -> web.Response:
        data = await body(request)
        value = data.get("text")
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise web.HTTPBadRequest(text=f"text 必须是 1–{MAX_TEXT} 个字符的文字")
        user = data["user"].strip()
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

    return [
        web.get("/console", page),
        web.get("/console/api/users", users),
        web.post("/console/api/send", send),
        web.post("/console/api/click", click),
        web.get("/console/api/messages", messages),
    ]
