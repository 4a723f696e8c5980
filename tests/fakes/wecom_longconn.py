"""A local fake of WeCom's intelligent robot long connection (智能机器人长连接): a real aiohttp WebSocket server on
127.0.0.1 speaking the documented frames, with knobs to cut, stall, replace and redeliver."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import re
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["Callback", "Connection", "FakeLongConn", "Reply", "encrypt_media"]

# The documented limits and values; the errcodes marked "fake" are this fake's choice (the document gives none).
ERR_AUTH = 853000  # invalid bot_id or secret (seen answered by the real service)
ERR_NOT_SUBSCRIBED = 846609  # fake: a frame before a successful subscribe
ERR_REQ_ID = 846604  # fake: a respond on a req_id this connection was not given (or already answered for a card)
ERR_WINDOW = 846605  # fake: a card update after the 5 s window
ERR_PARAM = 40058  # fake: a malformed body
ERR_CMD = 40008  # fake: an unknown cmd
STREAM_LIMIT = 20480  # bytes of a stream's content
MARKDOWN_LIMIT = 4096  # bytes of a pushed markdown (fake: the group robot's limit)
UPDATE_WINDOW = 5.0  # seconds a click's req_id can update the card
MEDIA_URL_TTL = 300.0  # a received picture's url is valid 5 minutes
CHUNK = 512 * 1024
MAX_CHUNKS = 100
TASK_ID_RE = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")
CARD_TYPES = ("text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction")
RESPOND_TYPES = ("stream", "template_card", "stream_with_template_card", "file", "image")
PUSH_TYPES = ("markdown", "template_card", "file", "image", "voice", "video")


def encrypt_media(data: bytes, aeskey: str) -> bytes:
    """What WeCom serves at a picture's url: AES-256-CBC (key = base64 of aeskey, IV its first 16 bytes), PKCS#7
    padded to 32 bytes."""
    key = base64.b64decode(aeskey + "=" * (-len(aeskey) % 4))
    pad = 32 - len(data) % 32
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return enc.update(data + bytes([pad]) * pad) + enc.finalize()


@dataclass
class Connection:
    """One WebSocket a client opened. state: "open" | "closed"; how it ended: "client", "cut", "replaced",
    "auth", "shutdown"."""

    number: int
    ws: web.WebSocketResponse
    request: web.Request
    subscribed: bool = False
    stalled: bool = False  # frames are read and ignored: no answers, no pongs (a black-holed link)
    state: str = "open"
    how: str | None = None
    pings: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    opened_at: float = field(default_factory=time.perf_counter)
    subscribed_at: float | None = None
    closed_at: float | None = None


@dataclass
class Callback:
    """One callback (a message or a click) until the bot answers it; every delivery is a frame with a new req_id
    (`req_ids`, on `connections`), the body and so its msgid stay the same."""

    msgid: str
    cmd: str
    body: dict[str, Any]
    kind: str  # "message" | "card"
    user: str
    chatid: str | None
    task_id: str | None = None
    req_ids: list[str] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    answered: bool = False

    @property
    def deliveries(self) -> int:
        """Frames sent for this callback (1 + redeliveries)."""
        return len(self.req_ids)


@dataclass
class Reply:
    """Something the robot said: `via` "respond" (on a callback's req_id), "push" (aibot_send_msg) or "update";
    `to` the user it reached in a 1:1 chat (None in a group), `chatid` the group; `text` the stream or markdown
    content, `card` a template card."""

    via: str
    to: str | None
    chatid: str | None
    msgtype: str
    text: str = ""
    card: dict[str, Any] | None = None
    media_id: str | None = None
    req_id: str = ""
    msgid: str | None = None  # the callback answered (respond/update)


class FakeLongConn:
    """WeCom's side of one intelligent robot's long connection (the frames of 智能机器人长连接).

    A client subscribes (`aibot_subscribe` {bot_id, secret}; wrong ones → errcode 853000 and closed); a newer
    subscribed connection replaces the older one, which first gets a `disconnected_event`. `ping` is answered.
    `send_text`/`send_image`/`click` push `aibot_msg_callback` / `aibot_event_callback` frames to the subscribed
    connection (queued while there is none); `aibot_respond_msg` (stream, template_card …) and
    `aibot_respond_update_msg` (5 s after a click, the clicked card's task_id) are checked against the req_ids this
    connection was given; `aibot_send_msg` pushes markdown / template_card / image / file to a chatid; uploads go
    init → chunk × N → finish. Every frame is answered {headers: {req_id}, errcode, errmsg[, body]}.

    Knobs: `cut()` (the TCP connection dropped, no close frame), `stall()` (the link black-holed: nothing answered,
    pings included), `replace()` (a disconnected_event, then closed, as when another client takes over),
    `redeliver(msgid)` (the same callback again with a new req_id, as WeCom does when it thinks it went
    unanswered), `repush_unanswered` (on each new subscription the callbacks not answered yet are pushed again,
    at most `max_deliveries` times each), `fail_next[cmd]` (errcodes to answer the next frames of a cmd with).

    Records: `connections`, `subscriptions`, `callbacks` (by msgid), `replies`, `card_views[(task_id, user)]`
    (each member's card as updates left it), `cards` (task_id → (where, card)), `media`, `errors` ((cmd, errcode)
    of every refused frame)."""

    def __init__(self, bot_id: str = "aibotfake0001", secret: str = "fake-bot-secret-DO-NOT-LOG") -> None:
        self.bot_id, self.secret = bot_id, secret
        self.connections: list[Connection] = []
        self.subscriptions = 0
        self.callbacks: dict[str, Callback] = {}
        self.by_req_id: dict[str, tuple[Callback, int]] = {}  # req_id → (callback, connection number)
        self.replies: list[Reply] = []
        self.card_views: dict[tuple[str, str], dict[str, Any]] = {}
        self.cards: dict[str, tuple[str, dict[str, Any]]] = {}
        self.media: dict[str, tuple[str, str, bytes]] = {}  # media_id → (type, filename, bytes) uploaded by the bot
        self.errors: list[tuple[str, int]] = []
        self.repush_unanswered = True
        self.max_deliveries = 3
        self.fail_next: dict[str, deque[int]] = defaultdict(deque)
        self._downloads: dict[str, tuple[bytes, float]] = {}  # media id → (encrypted bytes, expires)
        self._uploads: dict[str, dict[str, Any]] = {}
        self._queue: deque[str] = deque()  # msgids waiting for a subscribed connection
        self._ids = itertools.count(1)
        self._active: Connection | None = None
        self._server: TestServer | None = None
        self._subscribed = asyncio.Condition()
        self.url = ""
        self.base_url = ""

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Serve on 127.0.0.1 (a free port); returns the ws:// URL the bot connects to."""
        app = web.Application()
        app.router.add_get("/", self._ws)
        app.router.add_get("/media/{id}", self._download)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        self.base_url = str(self._server.make_url("")).rstrip("/")
        self.url = "ws" + self.base_url[len("http"):] + "/"
        return self.url

    async def close(self) -> None:
        """Close every connection and stop the server."""
        for conn in self.connections:
            if conn.state == "open":
                conn.state, conn.how = "closed", conn.how or "shutdown"
                await conn.ws.close()
        if self._server is not None:
            await self._server.close()

    async def __aenter__(self) -> FakeLongConn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what tests look at ---------------------------------------------------------------------------------

    @property
    def active(self) -> Connection | None:
        """The subscribed connection callbacks go to (None: none)."""
        return self._active

    def open_connections(self) -> list[Connection]:
        """Connections not closed yet."""
        return [c for c in self.connections if c.state == "open"]

    async def wait_subscribed(self, count: int = 1, seconds: float = 10.0) -> None:
        """Until `count` subscriptions happened in all (AssertionError after `seconds`)."""
        async def reached() -> None:
            async with self._subscribed:
                await self._subscribed.wait_for(lambda: self.subscriptions >= count and self._active is not None)
        try:
            await asyncio.wait_for(reached(), seconds)
        except TimeoutError:
            raise AssertionError(f"{self.subscriptions} subscriptions, waited for {count}") from None

    def texts(self, user: str) -> list[str]:
        """What reached `user` in their 1:1 chat, in order: stream and markdown contents, card titles and texts."""
        out = []
        for r in self.replies:
            if r.to != user:
                continue
            if r.card is not None:
                out.append(f"{(r.card.get('main_title') or {}).get('title', '')}\n{r.card.get('sub_title_text', '')}")
            elif r.via != "update":
                out.append(r.text)
        return out

    def cards_to(self, user: str) -> list[dict[str, Any]]:
        """The button cards that reached `user` 1:1 (pushed or as a reply), in order."""
        return [r.card for r in self.replies if r.to == user and r.via != "update" and r.card is not None
                and r.card.get("card_type") == "button_interaction"]

    def answers(self, msgid: str) -> list[Reply]:
        """The respond/update frames accepted for one callback."""
        return [r for r in self.replies if r.msgid == msgid]

    # -- knobs: callbacks -----------------------------------------------------------------------------------

    def _new_msgid(self) -> str:
        return base64.b64encode(uuid.uuid4().bytes).decode("ascii")  # like WeCom's: base64, with / and +

    def _base(self, user: str, chat: str | None, msgtype: str, msgid: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"msgid": msgid or self._new_msgid(), "aibotid": self.bot_id,
                                "chattype": "group" if chat else "single", "from": {"userid": user},
                                "create_time": int(time.time()), "msgtype": msgtype}
        if chat:
            body["chatid"] = chat
        return body

    async def send_text(self, user: str, text: str, *, chat: str | None = None, msgid: str | None = None) -> str:
        """A user's text message (in a group, `text` as typed, e.g. "@jxcbot 库存"); its msgid."""
        body = self._base(user, chat, "text", msgid)
        body["text"] = {"content": text}
        return await self._push(Callback(body["msgid"], "aibot_msg_callback", body, "message", user, chat))

    async def send_image(self, user: str, data: bytes, *, msgid: str | None = None) -> str:
        """A user's picture (1:1): served encrypted at a 5-minute url with a key of its own; its msgid."""
        aeskey = base64.b64encode(os.urandom(32)).decode("ascii").rstrip("=")
        media = uuid.uuid4().hex
        self._downloads[media] = (encrypt_media(data, aeskey), time.monotonic() + MEDIA_URL_TTL)
        body = self._base(user, None, "image", msgid)
        body["image"] = {"url": f"{self.base_url}/media/{media}", "aeskey": aeskey}
        return await self._push(Callback(body["msgid"], "aibot_msg_callback", body, "message", user, None))

    async def click(self, user: str, task_id: str, key: str, *, msgid: str | None = None) -> str:
        """`user` clicks the button `key` of the card `task_id` (which must have reached them with that button);
        its msgid."""
        where, card = self.cards[task_id]
        keys = [b.get("key") for b in card.get("button_list") or ()]
        assert where == user and key in keys, f"{user} has no button {key!r} on card {task_id}"
        body = self._base(user, None, "event", msgid)
        body["event"] = {"eventtype": "template_card_event", "template_card_event": {
            "card_type": card.get("card_type"), "event_key": key, "task_id": task_id}}
        return await self._push(Callback(body["msgid"], "aibot_event_callback", body, "card", user, None, task_id))

    async def redeliver(self, msgid: str) -> str:
        """The callback `msgid` once more, with a new req_id (on the subscribed connection); the req_id."""
        cb = self.callbacks[msgid]
        await self._deliver(cb)
        return cb.req_ids[-1]

    async def _push(self, cb: Callback) -> str:
        self.callbacks[cb.msgid] = cb
        if self._active is None:
            self._queue.append(cb.msgid)
        else:
            await self._deliver(cb)
        return cb.msgid

    async def _deliver(self, cb: Callback) -> None:
        conn = self._active
        if conn is None:
            self._queue.append(cb.msgid)
            return
        req_id = f"{cb.cmd}_{uuid.uuid4().hex}"
        cb.req_ids.append(req_id)
        cb.connections.append(conn.number)
        cb.sent_at.append(time.monotonic())
        self.by_req_id[req_id] = (cb, conn.number)
        try:
            await conn.ws.send_json({"cmd": cb.cmd, "headers": {"req_id": req_id}, "body": cb.body})
        except (ConnectionError, RuntimeError):  # the connection is going: the next one gets it
            self._queue.append(cb.msgid)

    # -- knobs: the connection ------------------------------------------------------------------------------

    def cut(self) -> None:
        """Drop the subscribed connection's TCP link without a close frame."""
        conn = self._active
        assert conn is not None, "no connection to cut"
        self._active = None
        conn.state, conn.how, conn.closed_at = "closed", "cut", time.perf_counter()
        transport = conn.request.transport
        if transport is not None:
            transport.abort()

    def cut_every(self, seconds: float) -> asyncio.Task[None]:
        """A task cutting the subscribed connection every `seconds` (cancel it to stop)."""
        async def cutter() -> None:
            while True:
                await asyncio.sleep(seconds)
                if self._active is not None:
                    self.cut()
        return asyncio.get_running_loop().create_task(cutter(), name="fake longconn cutter")

    def stall(self) -> None:
        """Black-hole the subscribed connection: it stays open but nothing is answered or pushed on it."""
        conn = self._active
        assert conn is not None, "no connection to stall"
        conn.stalled = True
        self._active = None

    async def replace(self) -> None:
        """Tell the subscribed connection a newer one took over (disconnected_event), then close it."""
        conn = self._active
        assert conn is not None, "no connection to replace"
        await self._replace(conn)

    async def _replace(self, conn: Connection) -> None:
        if self._active is conn:
            self._active = None
        body = {"msgid": self._new_msgid(), "create_time": int(time.time()), "aibotid": self.bot_id,
                "msgtype": "event", "event": {"eventtype": "disconnected_event"}}
        conn.state, conn.how = "closed", "replaced"
        try:
            await conn.ws.send_json({"cmd": "aibot_event_callback",
                                     "headers": {"req_id": f"aibot_event_callback_{uuid.uuid4().hex}"}, "body": body})
        finally:
            await conn.ws.close()

    # -- the server -----------------------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.Response:
        found = self._downloads.get(request.match_info["id"])
        if found is None or found[1] < time.monotonic():
            return web.Response(status=404, text="expired")
        return web.Response(body=found[0], content_type="application/octet-stream")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=8 * 2**20)
        await ws.prepare(request)
        conn = Connection(next(self._ids), ws, request)
        self.connections.append(conn)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    continue
                conn.frames.append(frame)
                if conn.stalled:
                    continue
                answer = await self._handle(conn, frame)
                if answer is not None and not ws.closed:
                    await ws.send_json(answer)
                if conn.how == "auth":
                    await ws.close()
        finally:
            if conn.state == "open":
                conn.state, conn.how = "closed", "client"
            conn.closed_at = conn.closed_at or time.perf_counter()
            if self._active is conn:
                self._active = None
        return ws

    def _answer(self, cmd: str, req_id: str, errcode: int = 0, errmsg: str = "ok",
                body: dict[str, Any] | None = None) -> dict[str, Any]:
        if errcode:
            self.errors.append((cmd, errcode))
        out: dict[str, Any] = {"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": errmsg}
        if body is not None:
            out["body"] = body
        return out

    async def _handle(self, conn: Connection, frame: dict[str, Any]) -> dict[str, Any] | None:
        cmd = str(frame.get("cmd") or "")
        headers = frame.get("headers")
        req_id = headers.get("req_id") if isinstance(headers, dict) else None
        if not isinstance(req_id, str) or not req_id:
            return None  # nothing to answer to
        body = frame.get("body") if isinstance(frame.get("body"), dict) else {}
        if self.fail_next[cmd]:
            return self._answer(cmd, req_id, self.fail_next[cmd].popleft(), "injected")
        if cmd == "aibot_subscribe":
            return await self._subscribe(conn, req_id, body)
        if not conn.subscribed:
            return self._answer(cmd, req_id, ERR_NOT_SUBSCRIBED, "not subscribed")
        if cmd == "ping":
            conn.pings += 1
            return self._answer(cmd, req_id)
        handlers = {"aibot_respond_msg": self._respond, "aibot_respond_update_msg": self._update,
                    "aibot_send_msg": self._send, "aibot_upload_media_init": self._upload_init,
                    "aibot_upload_media_chunk": self._upload_chunk, "aibot_upload_media_finish": self._upload_finish}
        handler = handlers.get(cmd)
        if handler is None:
            return self._answer(cmd, req_id, ERR_CMD, f"unknown cmd {cmd}")
        return handler(conn, cmd, req_id, body)

    async def _subscribe(self, conn: Connection, req_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if body.get("bot_id") != self.bot_id or body.get("secret") != self.secret:
            conn.state, conn.how = "closed", "auth"
            return self._answer("aibot_subscribe", req_id, ERR_AUTH, "invalid bot_id or secret")
        old = self._active
        conn.subscribed, conn.subscribed_at = True, time.perf_counter()
        self._active = conn
        self.subscriptions += 1
        answer = self._answer("aibot_subscribe", req_id)
        await conn.ws.send_json(answer)
        if old is not None and old is not conn and old.state == "open":
            await self._replace(old)  # one connection per robot: the newer one wins
        waiting = list(dict.fromkeys(self._queue))
        self._queue.clear()
        if self.repush_unanswered:
            waiting += [m for m, cb in self.callbacks.items() if not cb.answered and m not in waiting
                        and 0 < cb.deliveries < self.max_deliveries]
        for msgid in waiting:
            await self._deliver(self.callbacks[msgid])
        async with self._subscribed:
            self._subscribed.notify_all()
        return None  # answered above, before the callbacks

    def _issued(self, conn: Connection, req_id: str, kind: str) -> Callback | None:
        found = self.by_req_id.get(req_id)
        if found is None or found[1] != conn.number or found[0].kind != kind:
            return None
        return found[0]

    def _respond(self, conn: Connection, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        cb = self._issued(conn, req_id, "message")
        if cb is None:
            return self._answer(cmd, req_id, ERR_REQ_ID, "invalid req_id")
        msgtype = body.get("msgtype")
        if msgtype not in RESPOND_TYPES:
            return self._answer(cmd, req_id, ERR_PARAM, f"bad msgtype {msgtype}")
        to, chat = (None, cb.chatid) if cb.chatid else (cb.user, None)
        reply = Reply("respond", to, chat, str(msgtype), req_id=req_id, msgid=cb.msgid)
        if msgtype in ("stream", "stream_with_template_card"):
            stream = body.get("stream")
            if not isinstance(stream, dict) or not isinstance(stream.get("id"), str):
                return self._answer(cmd, req_id, ERR_PARAM, "stream.id required")
            content = str(stream.get("content") or "")
            if len(content.encode()) > STREAM_LIMIT:
                return self._answer(cmd, req_id, ERR_PARAM, "content too long")
            for item in stream.get("msg_item") or ():
                raw = base64.b64decode(item["image"]["base64"])
                if hashlib.md5(raw).hexdigest() != item["image"]["md5"]:
                    return self._answer(cmd, req_id, ERR_PARAM, "md5 mismatch")
            if not stream.get("finish"):
                return self._answer(cmd, req_id)  # an intermediate frame of the stream
            reply.text = content
        if msgtype in ("template_card", "stream_with_template_card") and body.get("template_card"):
            problem = self._card_problem(body["template_card"])
            if problem:
                return self._answer(cmd, req_id, ERR_PARAM, problem)
            reply.card = body["template_card"]
            self.cards[reply.card["task_id"]] = (cb.user, reply.card)
        if msgtype in ("file", "image"):
            media_id = (body.get(msgtype) or {}).get("media_id")
            if media_id not in self.media:
                return self._answer(cmd, req_id, ERR_PARAM, "invalid media_id")
            reply.media_id = media_id
        cb.answered = True
        self.replies.append(reply)
        return self._answer(cmd, req_id)

    def _update(self, conn: Connection, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        cb = self._issued(conn, req_id, "card")
        if cb is None or cb.answered:
            return self._answer(cmd, req_id, ERR_REQ_ID, "invalid req_id")
        if time.monotonic() - cb.sent_at[cb.req_ids.index(req_id)] > UPDATE_WINDOW:
            return self._answer(cmd, req_id, ERR_WINDOW, "response time window expired")
        card = body.get("template_card")
        if body.get("response_type") != "update_template_card" or not isinstance(card, dict):
            return self._answer(cmd, req_id, ERR_PARAM, "response_type update_template_card with template_card")
        problem = self._card_problem(card, update=True)
        if problem or card.get("task_id") != cb.task_id:
            return self._answer(cmd, req_id, ERR_PARAM, problem or "task_id must be the clicked card's")
        for user in body.get("userids") or [cb.user]:
            self.card_views[(str(cb.task_id), user)] = card
        if card.get("button_list"):
            self.cards[str(cb.task_id)] = (cb.user, card)
        cb.answered = True
        self.replies.append(Reply("update", cb.user, None, "template_card", card=card, req_id=req_id, msgid=cb.msgid))
        return self._answer(cmd, req_id)

    def _send(self, conn: Connection, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        chatid, msgtype = body.get("chatid"), body.get("msgtype")
        if not isinstance(chatid, str) or not chatid:
            return self._answer(cmd, req_id, ERR_PARAM, "chatid required")
        if msgtype not in PUSH_TYPES:
            return self._answer(cmd, req_id, ERR_PARAM, f"bad msgtype {msgtype}")
        group = chatid.startswith("wrc")  # fake: group chatids look like WeCom's wrc…; anything else is a userid
        reply = Reply("push", None if group else chatid, chatid if group else None, str(msgtype), req_id=req_id)
        if msgtype == "markdown":
            content = str((body.get("markdown") or {}).get("content") or "")
            if not content.strip() or len(content.encode()) > MARKDOWN_LIMIT:
                return self._answer(cmd, req_id, ERR_PARAM, "markdown content empty or too long")
            reply.text = content
        elif msgtype == "template_card":
            card = body.get("template_card")
            problem = self._card_problem(card) if isinstance(card, dict) else "template_card required"
            if problem:
                return self._answer(cmd, req_id, ERR_PARAM, problem)
            reply.card = card
            self.cards[card["task_id"]] = (chatid, card)  # type: ignore[index]
        else:
            media_id = (body.get(msgtype) or {}).get("media_id")
            if media_id not in self.media:
                return self._answer(cmd, req_id, ERR_PARAM, "invalid media_id")
            reply.media_id = media_id
        self.replies.append(reply)
        return self._answer(cmd, req_id)

    def _card_problem(self, card: dict[str, Any], *, update: bool = False) -> str:
        if card.get("card_type") not in CARD_TYPES:
            return f"bad card_type {card.get('card_type')}"
        task_id = card.get("task_id")
        if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id):
            return "task_id: [0-9A-Za-z_-@], at most 128 bytes"
        if not update and task_id in self.cards:
            return "task_id already used"
        if card["card_type"] == "button_interaction":
            keys = [b.get("key") for b in card.get("button_list") or ()]
            if not 1 <= len(keys) <= 6 or len(set(keys)) != len(keys) or not all(keys):
                return "button_list: 1..6 buttons with unique keys"
        return ""

    def _upload_init(self, conn: Connection, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        kind, total, chunks = body.get("type"), body.get("total_size"), body.get("total_chunks")
        if kind not in ("image", "file", "voice", "video") or not isinstance(total, int) or total < 6 \
                or not isinstance(chunks, int) or not 1 <= chunks <= MAX_CHUNKS or not body.get("filename"):
            return self._answer(cmd, req_id, ERR_PARAM, "type, filename, total_size > 5, total_chunks 1..100")
        upload_id = uuid.uuid4().hex
        self._uploads[upload_id] = {**body, "parts": {}}
        return self._answer(cmd, req_id, body={"upload_id": upload_id})

    def _upload_chunk(self, conn: Connection, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        upload = self._uploads.get(str(body.get("upload_id")))
        index = body.get("chunk_index")
        if upload is None or not isinstance(index, int) or not 0 <= index < upload["total_chunks"]:
            return self._answer(cmd, req_id, ERR_PARAM, "unknown upload_id or chunk_index")
        data = base64.b64decode(str(body.get("base64_data") or ""))
        if len(data) > CHUNK:
            return self._answer(cmd, req_id, ERR_PARAM, "chunk over 512 KB")
        upload["parts"][index] = data
        return self._answer(cmd, req_id)

    def _upload_finish(self, conn: Connection, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        upload = self._uploads.pop(str(body.get("upload_id")), None)
        if upload is None or len(upload["parts"]) != upload["total_chunks"]:
            return self._answer(cmd, req_id, ERR_PARAM, "unknown upload_id or chunks missing")
        data = b"".join(upload["parts"][i] for i in range(upload["total_chunks"]))
        if len(data) != upload["total_size"] or hashlib.md5(data).hexdigest() != upload.get("md5"):
            return self._answer(cmd, req_id, ERR_PARAM, "size or md5 mismatch")
        media_id = f"media_{uuid.uuid4().hex}"
        self.media[media_id] = (upload["type"], upload["filename"], data)
        return self._answer(cmd, req_id, body={"media_id": media_id, "type": upload["type"],
                                               "created_at": int(time.time())})
