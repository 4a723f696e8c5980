"""A real local aiohttp server standing in for WeCom (protocols/wecom.md §6) and a driver for encrypted callbacks."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import random
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from xml.parsers.expat import ExpatError

import aiohttp
import xmltodict
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer
from wechatpy.enterprise.crypto import WeChatCrypto

__all__ = ["CallbackDriver", "CardView", "Delivery", "FakeWeCom", "Fault"]

TEXT_LIMIT = 2048
APP_MARKDOWN_LIMIT = 2048
ROBOT_MARKDOWN_LIMIT = 4096
APP_IMAGE_LIMIT = 10 * 1024 * 1024
ROBOT_IMAGE_LIMIT = 2 * 1024 * 1024
VOICE_LIMIT = 2 * 1024 * 1024  # AMR
VIDEO_LIMIT = 10 * 1024 * 1024  # MP4
FILE_LIMIT = 20 * 1024 * 1024
DUPLICATE_CHECK_INTERVAL = 1800.0  # message/send duplicate_check_interval: default 1800 s, at most 4 h
DUPLICATE_CHECK_MAX = 4 * 3600.0
MEDIA_TTL = 3 * 24 * 3600.0
RESPONSE_CODE_TTL = 72 * 3600.0
TASK_ID_RE = re.compile(r"^[0-9A-Za-z_\-@]{1,128}$")
APP_MSGTYPES = frozenset({"text", "markdown", "image", "voice", "video", "file", "textcard", "news", "mpnews",
                          "miniprogram_notice", "template_card"})

PATH_GETTOKEN = "/cgi-bin/gettoken"
PATH_SEND = "/cgi-bin/message/send"
PATH_UPDATE = "/cgi-bin/message/update_template_card"
PATH_UPLOAD = "/cgi-bin/media/upload"
PATH_MEDIA_GET = "/cgi-bin/media/get"
PATH_ROBOT = "/cgi-bin/webhook/send"
PATH_ROBOT_UPLOAD = "/cgi-bin/webhook/upload_media"
PATH_MENU_CREATE = "/cgi-bin/menu/create"
MENU_TYPES = ("click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album",
              "pic_weixin", "location_select", "view_miniprogram")


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for the next request to a path: an errcode answer (HTTP 200), an HTTP
    status, a hang of `hang` seconds before answering normally, `drop`: answer ok, deliver nothing, or
    `late`: handle the request normally (a message is delivered) but answer only `late` seconds later — the
    caller times out without knowing the message arrived (message/send only)."""

    errcode: int | None = None
    status: int | None = None
    hang: float | None = None
    drop: bool = False
    late: float | None = None


@dataclass
class Media:
    """An uploaded file."""

    type: str
    data: bytes
    filename: str
    content_type: str
    expires: float
    owner: str = ""  # "" = the app (media/upload); else the robot key that uploaded it (webhook/upload_media)


@dataclass
class ResponseCode:
    """A card's response_code: single use, valid 72 h."""

    users: tuple[str, ...]
    task_id: str
    expires: float
    used: bool = False


@dataclass
class CardView:
    """What one member's copy of a button_interaction card shows now: the card (replaced by a template_card
    update) and, after a `button` update, the text its greyed-out buttons carry."""

    card: dict[str, Any]
    replace_name: str | None = None


@dataclass
class FakeWeCom:
    """WeCom's server side for one corp, one self-built app and some group robots.

    Records every accepted app message (`messages`), silently dropped ones (`dropped`), card updates
    (`updates`), uploads (`media`) and robot messages (`robot_messages`: (key, payload)); `log` holds
    (path, errcode or HTTP status) for every answered request. Knobs: `inject(path, Fault…)`
    (path "*" = any), `expire_tokens()` (→ 42001 once, then the client refreshes),
    `always_invalid_token` (every API call → 40014), `advance(seconds)` for the fake clock, `users`
    (None = everyone exists), per-user 30/min and 1000/h silent drop, per-robot 20/min → 45009.

    Also: message/send honours `enable_duplicate_check` (an identical message to the same recipients within
    `duplicate_check_interval`, default 1800 s, max 4 h, of the last delivered one is answered ok but swallowed
    into `duplicates`); `card_views[(task_id, user)]` is each member's card as updates left it;
    webhook/upload_media stores robot files/voices in `media` (usable by that robot only);
    `gettoken_per_minute` (45009 beyond), `trusted_ips` (app APIs from other addresses → 60020),
    `revoke_tokens()` (→ 40014 once)."""

    corp_id: str = "wwfakecorp0001"
    secret: str = "fake-app-secret-DO-NOT-LOG"
    agent_id: int = 1000002
    robots: dict[str, str] = field(default_factory=lambda: {"warehouse": "robot-key-0001"})
    users: set[str] | None = None
    token_ttl: int = 7200
    per_user_per_minute: int = 30
    robot_per_minute: int = 20

    messages: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, Media] = field(default_factory=dict)
    robot_messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    log: list[tuple[str, int]] = field(default_factory=list)
    response_codes: dict[str, ResponseCode] = field(default_factory=dict)
    task_ids: set[str] = field(default_factory=set)
    tokens: dict[str, float] = field(default_factory=dict)
    gettoken_calls: int = 0
    always_invalid_token: bool = False
    per_user_per_hour: int = 1000
    gettoken_per_minute: int | None = None
    trusted_ips: set[str] | None = None
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    card_views: dict[tuple[str, str], CardView] = field(default_factory=dict)
    menus: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # agentid → the installed menu

    def __post_init__(self) -> None:
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._offset = 0.0
        self._ids = itertools.count(1)
        self._sent_at: dict[str, deque[float]] = defaultdict(deque)
        self._robot_at: dict[str, deque[float]] = defaultdict(deque)
        self._sent_hour: dict[str, deque[float]] = defaultdict(deque)
        self._gettoken_at: dict[str, deque[float]] = defaultdict(deque)
        self._delivered_at: dict[str, float] = {}  # message fingerprint → when last delivered
        self._closing = asyncio.Event()
        self._server: TestServer | None = None
        self.base_url = ""

    # -- knobs -------------------------------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock (monotonic + advance())."""
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (token/media/response_code expiry, rate windows)."""
        self._offset += seconds

    def inject(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next requests to `path` (e.g. "/cgi-bin/message/send"; "*" = any path)."""
        self._faults[path].extend(faults)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired (→ 42001); the next gettoken issues a new one."""
        for token in self.tokens:
            self.tokens[token] = self.now() - 1

    def revoke_tokens(self) -> None:
        """WeCom revokes every token issued so far (→ 40014 invalid); the next gettoken issues a new one."""
        self.tokens.clear()

    def robot_key(self, name: str) -> str:
        """The webhook key of a configured robot."""
        return self.robots[name]

    def click(self, user: str, task_id: str) -> str:
        """A user clicks a button of a card: WeCom mints a fresh ResponseCode for the callback."""
        code = f"rc{next(self._ids)}x{random.getrandbits(48):012x}"
        self.response_codes[code] = ResponseCode((user,), task_id, self.now() + RESPONSE_CODE_TTL)
        return code

    def user_picture(self, data: bytes, content_type: str = "image/jpeg") -> str:
        """A member sends the app a picture: WeCom keeps it as media (3 days) and the callback carries its MediaId."""
        media_id = f"umedia{next(self._ids)}-{random.getrandbits(48):012x}"
        self.media[media_id] = Media("image", data, "picture.jpg", content_type, self.now() + MEDIA_TTL)
        return media_id

    def calls(self, path: str) -> int:
        """How many requests to `path` were answered."""
        return sum(1 for p, _ in self.log if p == path)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (routes of §6)."""
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get(PATH_GETTOKEN, self._gettoken)
        app.router.add_post(PATH_SEND, self._message_send)
        app.router.add_post(PATH_UPDATE, self._update_card)
        app.router.add_post(PATH_UPLOAD, self._upload)
        app.router.add_get(PATH_MEDIA_GET, self._media_get)
        app.router.add_post(PATH_ROBOT, self._robot_send)
        app.router.add_post(PATH_ROBOT_UPLOAD, self._robot_upload)
        app.router.add_post(PATH_MENU_CREATE, self._menu_create)
        return app

    async def start(self) -> str:
        """Listen on 127.0.0.1 at a random port; returns the base URL (use it as api_base)."""
        self._server = TestServer(self.make_app(), host="127.0.0.1", access_log=None)  # URLs carry tokens
        await self._server.start_server()
        self.base_url = str(self._server.make_url("")).rstrip("/")
        return self.base_url

    async def close(self) -> None:
        """Release hung handlers and stop the server."""
        self._closing.set()
        if self._server is not None:
            await self._server.close()

    async def __aenter__(self) -> FakeWeCom:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ----------------------------------------------------------------------------------------

    def _answer(self, path: str, errcode: int, errmsg: str = "ok", **extra: Any) -> web.Response:
        self.log.append((path, errcode))
        if errcode != 0 and errmsg == "ok":
            errmsg = "error"
        if errcode != 0:  # real errmsg tails: hint, from ip, devtool link (match errcode, never errmsg)
            errmsg = (f"{errmsg}, hint: [{int(time.time())}_{random.getrandbits(32):08x}], from ip: 127.0.0.1, "
                      f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}")
        return web.json_response({"errcode": errcode, "errmsg": errmsg, **extra})

    async def _fault(self, path: str) -> web.Response | Fault | None:
        """Apply the next injected fault for path: a response to return, a drop marker, or None."""
        queue = self._faults.get(path) or self._faults.get("*")
        if not queue:
            return None
        fault = queue.popleft()
        if fault.hang is not None:
            try:
                await asyncio.wait_for(self._closing.wait(), fault.hang)
            except TimeoutError:
                pass
            if self._closing.is_set():
                self.log.append((path, 503))
                return web.Response(status=503)
        if fault.status is not None:
            self.log.append((path, fault.status))
            return web.Response(status=fault.status, text="<html>bad gateway</html>")
        if fault.errcode is not None:
            return self._answer(path, fault.errcode, "injected")
        return fault if fault.drop or fault.late is not None else None

    def _check_token(self, request: web.Request, path: str) -> web.Response | None:
        token = request.query.get("access_token")
        if not token:
            return self._answer(path, 41001, "access_token missing")
        if self.always_invalid_token or token not in self.tokens:
            return self._answer(path, 40014, "invalid access_token")
        if self.tokens[token] <= self.now():
            return self._answer(path, 42001, "access_token expired")
        if self.trusted_ips is not None and request.remote not in self.trusted_ips:
            return self._answer(path, 60020, "not allow to access from your ip")
        return None

    async def _json(self, request: web.Request) -> dict[str, Any] | None:
        try:
            data = json.loads(await request.read())
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def _app_body(self, request: web.Request, path: str) -> web.Response | dict[str, Any]:
        """An app API call's token, JSON object body and agentid checked: WeCom's error answer, or the body."""
        if (bad := self._check_token(request, path)) is not None:
            return bad
        data = await self._json(request)
        if data is None:
            return self._answer(path, 47001, "data format error, Warning: wrong json format.")
        if data.get("agentid") != self.agent_id:
            return self._answer(path, 40056, "invalid agentid")
        return data

    @staticmethod
    def _too_long(content: object, limit: int) -> int:
        """0, 44004 (empty) or 45002 (over the byte limit)."""
        if not isinstance(content, str) or not content:
            return 44004
        return 45002 if len(content.encode("utf-8")) > limit else 0

    def _rate_ok(self, windows: dict[str, deque[float]], key: str, per_minute: int) -> bool:
        return self._windows_ok(key, (windows, per_minute, 60.0))

    def _windows_ok(self, key: str, *limits: tuple[dict[str, deque[float]], int, float]) -> bool:
        """Take a slot for key in every (windows, count, seconds) sliding window, or in none when one is full."""
        now = self.now()
        for windows, _, seconds in limits:
            window = windows[key]
            while window and window[0] <= now - seconds:
                window.popleft()
        if any(len(windows[key]) >= count for windows, count, _ in limits):
            return False
        for windows, _, _ in limits:
            windows[key].append(now)
        return True

    def _user_rate_ok(self, user: str) -> bool:
        """Per app and member: 30/min and 1000/h; beyond either the message is silently dropped."""
        return self._windows_ok(user, (self._sent_at, self.per_user_per_minute, 60.0),
                                (self._sent_hour, self.per_user_per_hour, 3600.0))

    def _media_ok(self, media_id: object, owner: str = "") -> bool:
        media = self.media.get(str(media_id))
        return media is not None and media.owner == owner and media.expires > self.now()

    @staticmethod
    def _media_problem(kind: str, data: bytes) -> tuple[int, str] | None:
        """Size and format rules of an upload (§3.5, §4): (errcode, errmsg) or None."""
        if len(data) <= 5:
            return 40006, "invalid file size"
        if kind == "image":
            if len(data) > APP_IMAGE_LIMIT:
                return 40009, "invalid image size"
            if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8")):
                return 40004, "invalid media type"
        elif kind == "voice":
            if len(data) > VOICE_LIMIT:
                return 40006, "invalid file size"
            if not data.startswith(b"#!AMR"):
                return 40004, "invalid media type"
        elif kind == "video":
            if len(data) > VIDEO_LIMIT:
                return 40006, "invalid file size"
            if data[4:8] != b"ftyp":  # MP4
                return 40004, "invalid media type"
        elif len(data) > FILE_LIMIT:
            return 40006, "invalid file size"
        return None

    @staticmethod
    async def _media_part(request: web.Request) -> tuple[bytes, str, str] | None:
        """The multipart part named `media` (it must carry a filename): (data, filename, content type)."""
        found: tuple[bytes, str, str] | None = None
        try:
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, aiohttp.BodyPartReader) and part.name == "media":
                    found = (bytes(await part.read()), part.filename or "",
                             part.headers.get("Content-Type", "application/octet-stream"))
        except (ValueError, AssertionError, aiohttp.ClientError):
            found = None
        return found if found is not None and found[1] else None

    @staticmethod
    def _fingerprint(data: dict[str, Any]) -> str:
        """What makes two message/send calls "the same message": everything but the duplicate-check knobs."""
        return json.dumps({k: v for k, v in data.items()
                           if k not in ("enable_duplicate_check", "duplicate_check_interval")},
                          sort_keys=True, ensure_ascii=False)

    def _duplicate(self, data: dict[str, Any], fingerprint: str) -> bool:
        """enable_duplicate_check=1 and the same message was delivered less than the interval ago."""
        if data.get("enable_duplicate_check") not in (1, "1"):
            return False
        interval = data.get("duplicate_check_interval", DUPLICATE_CHECK_INTERVAL)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            interval = DUPLICATE_CHECK_INTERVAL
        last = self._delivered_at.get(fingerprint)
        return last is not None and self.now() - last < min(float(interval), DUPLICATE_CHECK_MAX)

    # -- gettoken ----------------------------------------------------------------------------------------

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.gettoken_calls += 1
        fault = await self._fault(PATH_GETTOKEN)
        if isinstance(fault, web.Response):
            return fault
        if request.query.get("corpid") != self.corp_id:
            return self._answer(PATH_GETTOKEN, 40013, "invalid corpid")
        if request.query.get("corpsecret") != self.secret:
            return self._answer(PATH_GETTOKEN, 40001, "invalid credential")
        if self.gettoken_per_minute is not None and not self._rate_ok(self._gettoken_at, "",
                                                                      self.gettoken_per_minute):
            return self._answer(PATH_GETTOKEN, 45009, "api freq out of limit")
        now = self.now()
        live = [(t, exp) for t, exp in self.tokens.items() if exp > now]
        if live:  # re-fetching within the validity returns the same token
            token, expires = live[-1]
        else:
            token, expires = f"tok{next(self._ids)}-{random.getrandbits(64):016x}", now + self.token_ttl
            self.tokens[token] = expires
        return self._answer(PATH_GETTOKEN, 0, access_token=token, expires_in=int(expires - now))

    # -- message/send ------------------------------------------------------------------------------------

    def _card_problem(self, card: object, *, new_task: bool = True) -> str | None:
        """Why a template_card is invalid (None when fine): task_id and button_list rules."""
        if not isinstance(card, dict) or card.get("card_type") not in (
                "text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction"):
            return "invalid card_type"
        if card["card_type"] != "button_interaction":
            return None
        task_id = card.get("task_id")
        if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id) or len(task_id.encode()) > 128:
            return "invalid task_id"
        if new_task and task_id in self.task_ids:
            return "task_id exists"
        title = card.get("main_title", {}).get("title") if isinstance(card.get("main_title"), dict) else None
        if not title and not card.get("sub_title_text"):
            return "main_title.title or sub_title_text required"
        buttons = card.get("button_list")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 6:
            return "button_list must have 1..6 buttons"
        keys = []
        for b in buttons:
            if not isinstance(b, dict) or not b.get("text"):
                return "button text required"
            if b.get("type", 0) == 0:
                key = b.get("key")
                if not isinstance(key, str) or not key or len(key.encode()) > 1024:
                    return "invalid button key"
                keys.append(key)
        if len(set(keys)) != len(keys):
            return "duplicate button key"
        return None

    async def _menu_create(self, request: web.Request) -> web.Response:
        """menu/create?agentid=: 1–3 top-level buttons, each with a type, a name (≤ 16 bytes) and a key (≤ 128
        bytes) for click/scancode types; sub_button lists of up to 5 (60005 / 40016-ish errors as 40054/40016)."""
        path = PATH_MENU_CREATE
        if (bad := self._check_token(request, path)) is not None:
            return bad
        if request.query.get("agentid") != str(self.agent_id):
            return self._answer(path, 40056, "invalid agentid")
        data = await self._json(request)
        buttons = data.get("button") if data else None
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return self._answer(path, 40016, "invalid button size")
        for b in buttons:
            subs = b.get("sub_button") if isinstance(b, dict) else None
            for item in (subs if isinstance(subs, list) else [b]):
                if not isinstance(item, dict) or item.get("type") not in MENU_TYPES:
                    return self._answer(path, 40054, "invalid button type")
                name, key = item.get("name"), item.get("key")
                if not isinstance(name, str) or not 0 < len(name.encode()) <= 16:
                    return self._answer(path, 40018, "invalid button name size")
                if item["type"] != "view" and (not isinstance(key, str) or not 0 < len(key.encode()) <= 128):
                    return self._answer(path, 40019, "invalid button key size")
        self.menus[self.agent_id] = buttons
        return self._answer(path, 0)

    async def _message_send(self, request: web.Request) -> web.Response:
        path = PATH_SEND
        fault = await self._fault(path)
        if isinstance(fault, web.Response):
            return fault
        if isinstance(fault, Fault) and fault.late is not None:
            answer = await self._message_send_now(request, path, None)
            try:
                await asyncio.wait_for(self._closing.wait(), fault.late)
            except TimeoutError:
                pass
            return answer
        return await self._message_send_now(request, path, fault)

    async def _message_send_now(self, request: web.Request, path: str, fault: Fault | None) -> web.Response:
        data = await self._app_body(request, path)
        if isinstance(data, web.Response):
            return data
        msgtype = data.get("msgtype")
        if msgtype not in APP_MSGTYPES or not isinstance(data.get(msgtype), dict):
            return self._answer(path, 40008, "invalid message type")
        body = data[msgtype]
        if msgtype == "text" and (code := self._too_long(body.get("content"), TEXT_LIMIT)):
            return self._answer(path, code, "content size out of limit" if code == 45002 else "empty content")
        if msgtype == "markdown" and (code := self._too_long(body.get("content"), APP_MARKDOWN_LIMIT)):
            return self._answer(path, code, "content size out of limit" if code == 45002 else "empty content")
        if msgtype in ("image", "voice", "video", "file") and not self._media_ok(body.get("media_id")):
            return self._answer(path, 40007, "invalid media_id")
        if msgtype == "template_card" and (problem := self._card_problem(body)):
            return self._answer(path, 40058, problem)
        wanted = [u for u in str(data.get("touser", "")).split("|") if u]
        if wanted == ["@all"]:
            wanted = sorted(self.users or {"@all"})
        valid = [u for u in wanted if self.users is None or u in self.users]
        invalid = [u.lower() for u in wanted if u not in valid]
        if not valid:
            return self._answer(path, 81013, "user & party & tag all invalid")
        extra: dict[str, Any] = {"invaliduser": "|".join(invalid), "msgid": f"msg{next(self._ids)}"}
        fingerprint = self._fingerprint(data)
        if self._duplicate(data, fingerprint):  # swallowed: answered ok, never delivered
            self.duplicates.append(data)
            return self._answer(path, 0, **extra)
        if msgtype == "template_card" and body.get("card_type") == "button_interaction":
            self.task_ids.add(body["task_id"])
            code = f"rc{next(self._ids)}x{random.getrandbits(48):012x}"
            self.response_codes[code] = ResponseCode(tuple(valid), body["task_id"], self.now() + RESPONSE_CODE_TTL)
            extra["response_code"] = code
        over = [] if isinstance(fault, Fault) else [u for u in valid if not self._user_rate_ok(u)]
        if isinstance(fault, Fault) or over:  # silently dropped: answered ok, never delivered
            self.dropped.append(data)
        else:
            self.messages.append(data)
            self._delivered_at[fingerprint] = self.now()
            if msgtype == "template_card" and body.get("card_type") == "button_interaction":
                for u in valid:
                    self.card_views[(body["task_id"], u)] = CardView(body)
        return self._answer(path, 0, **extra)

    # -- update_template_card ----------------------------------------------------------------------------

    async def _update_card(self, request: web.Request) -> web.Response:
        path = PATH_UPDATE
        fault = await self._fault(path)
        if isinstance(fault, web.Response):
            return fault
        data = await self._app_body(request, path)
        if isinstance(data, web.Response):
            return data
        rc = self.response_codes.get(str(data.get("response_code")))
        if rc is None or rc.used or rc.expires <= self.now():
            return self._answer(path, 40058, "invalid response_code")
        if "button" in data:
            name = data["button"].get("replace_name") if isinstance(data["button"], dict) else None
            if not isinstance(name, str) or not name:
                return self._answer(path, 40058, "replace_name required")
        elif "template_card" in data:
            if problem := self._card_problem(data["template_card"]):
                return self._answer(path, 40058, problem)
            if isinstance(data["template_card"].get("task_id"), str):
                self.task_ids.add(data["template_card"]["task_id"])
        else:
            return self._answer(path, 40058, "button or template_card required")
        rc.used = True
        self.updates.append(data)
        self._apply_update(rc, data)
        return self._answer(path, 0)

    def _apply_update(self, rc: ResponseCode, data: dict[str, Any]) -> None:
        """Record the new state of the addressed members' cards (userids, or every holder of the code)."""
        wanted = data.get("userids")
        users = rc.users if data.get("atall") == 1 or not isinstance(wanted, list) or not wanted \
            else [u for u in rc.users if u in wanted]
        for u in users:
            view = self.card_views.get((rc.task_id, u))
            if view is None:
                continue
            if "button" in data:
                view.replace_name = data["button"]["replace_name"]
            else:
                view.card, view.replace_name = data["template_card"], None
                new_task = view.card.get("task_id")
                if isinstance(new_task, str):  # later clicks carry the new task_id
                    self.card_views[(new_task, u)] = view

    # -- media/upload ------------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        path = PATH_UPLOAD
        fault = await self._fault(path)
        if isinstance(fault, web.Response):
            return fault
        if (bad := self._check_token(request, path)) is not None:
            return bad
        return await self._store_media(request, path, ("image", "voice", "video", "file"), "")

    async def _media_get(self, request: web.Request) -> web.StreamResponse:
        """media/get?access_token=&media_id=: the file as an ordinary download, or a JSON error (40007)."""
        path = PATH_MEDIA_GET
        fault = await self._fault(path)
        if isinstance(fault, web.Response):
            return fault
        if (bad := self._check_token(request, path)) is not None:
            return bad
        media_id = request.query.get("media_id", "")
        if not self._media_ok(media_id):
            return self._answer(path, 40007, "invalid media_id")
        media = self.media[media_id]
        self.log.append((path, 0))
        return web.Response(body=media.data, content_type=media.content_type, headers={
            "Content-disposition": f'attachment; filename="{media_id}.jpg"'})

    # -- group robot -------------------------------------------------------------------------------------

    async def _robot_call(self, request: web.Request, path: str) -> tuple[str, Fault | None] | web.Response:
        """A robot endpoint's first steps: the injected fault, then the webhook key → (key, drop marker)."""
        fault = await self._fault(path)
        if isinstance(fault, web.Response):
            return fault
        key = request.query.get("key", "")
        if key not in self.robots.values():
            return self._answer(path, 93000, "invalid webhook url")
        return key, fault

    async def _robot_send(self, request: web.Request) -> web.Response:
        path = PATH_ROBOT
        call = await self._robot_call(request, path)
        if isinstance(call, web.Response):
            return call
        key, fault = call
        data = await self._json(request)
        if data is None:
            return self._answer(path, 40058, "data format error, Warning: wrong json format.")
        msgtype = data.get("msgtype")
        body = data.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype not in ("text", "markdown", "image", "news", "file", "voice", "template_card") \
                or not isinstance(body, dict):
            return self._answer(path, 40008, "invalid message type")
        if msgtype == "text" and (code := self._too_long(body.get("content"), TEXT_LIMIT)):
            return self._answer(path, code, "content size out of limit" if code == 45002 else "empty content")
        if msgtype == "markdown" and (code := self._too_long(body.get("content"), ROBOT_MARKDOWN_LIMIT)):
            return self._answer(path, code, "content size out of limit" if code == 45002 else "empty content")
        if msgtype in ("file", "voice") and not self._media_ok(body.get("media_id"), key):
            return self._answer(path, 40007, "invalid media_id")
        if msgtype == "template_card" and body.get("card_type") not in ("text_notice", "news_notice"):
            return self._answer(path, 40058, "robot template_card must be text_notice or news_notice")
        if msgtype == "image":
            try:
                raw = base64.b64decode(str(body.get("base64", "")), validate=True)
            except (binascii.Error, ValueError):
                return self._answer(path, 40058, "invalid base64")
            if not raw or len(raw) > ROBOT_IMAGE_LIMIT:
                return self._answer(path, 40009, "invalid image size")
            if hashlib.md5(raw).hexdigest() != body.get("md5"):
                return self._answer(path, 40058, "image md5 mismatch")
        if msgtype == "news":
            articles = body.get("articles")
            if not isinstance(articles, list) or not 1 <= len(articles) <= 8 or not all(
                    isinstance(a, dict) and a.get("title") and a.get("url") for a in articles):
                return self._answer(path, 40058, "invalid articles")
        if not self._rate_ok(self._robot_at, key, self.robot_per_minute):
            return self._answer(path, 45009, "api freq out of limit")
        if isinstance(fault, Fault):
            self.dropped.append(data)
        else:
            self.robot_messages.append((key, data))
        return self._answer(path, 0)

    async def _robot_upload(self, request: web.Request) -> web.Response:
        """webhook/upload_media?key=&type=file|voice: multipart part `media` → a media_id for this robot."""
        path = PATH_ROBOT_UPLOAD
        call = await self._robot_call(request, path)
        if isinstance(call, web.Response):
            return call
        key, _fault = call
        return await self._store_media(request, path, ("file", "voice"), key)

    async def _store_media(self, request: web.Request, path: str, kinds: tuple[str, ...], owner: str) -> web.Response:
        """Store the multipart part `media` of an allowed ?type= → its media_id (owner "" = the app, else the
        robot key that uploaded it; the real endpoints differ in errmsg, "" vs "ok")."""
        kind = request.query.get("type")
        if kind not in kinds:
            return self._answer(path, 40005, "invalid file type")
        found = await self._media_part(request)
        if found is None:
            return self._answer(path, 41005, "media data missing")
        data, filename, content_type = found
        if (problem := self._media_problem(kind, data)) is not None:
            return self._answer(path, *problem)
        media_id = f"{'rmedia' if owner else 'media'}{next(self._ids)}-{random.getrandbits(48):012x}"
        self.media[media_id] = Media(kind, data, filename, content_type, self.now() + MEDIA_TTL, owner=owner)
        self.log.append((path, 0))
        return web.json_response({"errcode": 0, "errmsg": "ok" if owner else "", "type": kind, "media_id": media_id,
                                  "created_at": str(int(time.time()))})


# -- callbacks (WeCom → bot) -----------------------------------------------------------------------------


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@dataclass(frozen=True)
class Delivery:
    """One callback attempt: HTTP status (0 = timed out / connection failed), body, seconds taken."""

    status: int
    body: str
    latency: float


class CallbackDriver:
    """Builds callbacks the way WeCom does (encrypt with receiveid = CorpID, sign, percent-encode echostr)
    and delivers them to a bot URL with WeCom's 5 s deadline and 3 retries; decrypts passive replies."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str, agent_id: int = 1000002, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self.encoding_aes_key = encoding_aes_key
        self.corp_id = corp_id
        self.agent_id = agent_id
        self._clock = clock
        self._crypto = WeChatCrypto(token, encoding_aes_key, corp_id)

    def _ts_nonce(self, timestamp: str | None, nonce: str | None) -> tuple[str, str]:
        return timestamp or str(int(self._clock())), nonce or str(random.randint(10**8, 10**10 - 1))

    def encrypt(self, plaintext: str, *, receiveid: str | None = None) -> str:
        """The base64 `Encrypt` of plaintext (random 16-byte prefix, length, message, receiveid)."""
        crypto = self._crypto if receiveid is None else WeChatCrypto(self.token, self.encoding_aes_key, receiveid)
        envelope = xmltodict.parse(crypto.encrypt_message(plaintext, "0", "0"))["xml"]
        return str(envelope["Encrypt"])

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """msg_signature = sha1 of the sorted (token, timestamp, nonce, encrypt)."""
        return hashlib.sha1("".join(sorted([self.token, timestamp, nonce, encrypt])).encode()).hexdigest()

    def url_check(self, echo: str | None = None, *, timestamp: str | None = None,
                  nonce: str | None = None) -> tuple[dict[str, str], str]:
        """Query parameters of the URL-check GET and the plaintext the bot must answer with."""
        echo = echo or str(random.randint(10**17, 10**19))
        ts, nonce = self._ts_nonce(timestamp, nonce)
        echostr = self.encrypt(echo)
        return {"msg_signature": self.sign(ts, nonce, echostr), "timestamp": ts, "nonce": nonce,
                "echostr": echostr}, echo

    def post(self, plaintext: str, *, timestamp: str | None = None, nonce: str | None = None,
             tamper: str | None = None) -> tuple[dict[str, str], bytes]:
        """Query parameters and body of an event POST. tamper: "signature" (one hex digit changed),
        "corp_id" (encrypted for another receiveid, correctly signed), "base64" (garbage Encrypt, signed)."""
        ts, nonce = self._ts_nonce(timestamp, nonce)
        if tamper == "corp_id":
            encrypt = self.encrypt(plaintext, receiveid="wwsomeothercorp")
        elif tamper == "base64":
            encrypt = "!!" + self.encrypt(plaintext)[2:-8]
        else:
            encrypt = self.encrypt(plaintext)
        sig = self.sign(ts, nonce, encrypt)
        if tamper == "signature":
            sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        body = (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName><Encrypt>{_cdata(encrypt)}</Encrypt>"
                f"<AgentID>{_cdata(str(self.agent_id))}</AgentID></xml>")
        return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, body.encode("utf-8")

    def text_xml(self, user: str, content: str, msg_id: int | str, create_time: int | None = None) -> str:
        """Plaintext of a text message from a member."""
        ct = create_time or int(self._clock())
        return (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName><FromUserName>{_cdata(user)}</FromUserName>"
                f"<CreateTime>{ct}</CreateTime><MsgType>{_cdata('text')}</MsgType><Content>{_cdata(content)}</Content>"
                f"<MsgId>{msg_id}</MsgId><AgentID>{self.agent_id}</AgentID></xml>")

    def image_xml(self, user: str, media_id: str, msg_id: int | str, create_time: int | None = None) -> str:
        """Plaintext of a picture a member sends the app (MsgType image: PicUrl, MediaId for media/get)."""
        ct = create_time or int(self._clock())
        return (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName><FromUserName>{_cdata(user)}</FromUserName>"
                f"<CreateTime>{ct}</CreateTime><MsgType>{_cdata('image')}</MsgType>"
                f"<PicUrl>{_cdata('https://wework.qpic.cn/fake/' + media_id)}</PicUrl>"
                f"<MediaId>{_cdata(media_id)}</MediaId><MsgId>{msg_id}</MsgId><AgentID>{self.agent_id}</AgentID></xml>")

    def card_click_xml(self, user: str, task_id: str, event_key: str, response_code: str,
                       create_time: int | None = None, card_type: str = "button_interaction",
                       selected: Iterable[tuple[str, list[str]]] = ()) -> str:
        """Plaintext of a template_card_event (a button click; vote/multiple cards add SelectedItems)."""
        ct = create_time or int(self._clock())
        items = "".join(
            f"<SelectedItem><QuestionKey>{_cdata(q)}</QuestionKey><OptionIds>"
            + "".join(f"<OptionId>{_cdata(o)}</OptionId>" for o in opts) + "</OptionIds></SelectedItem>"
            for q, opts in selected)
        return (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName><FromUserName>{_cdata(user)}</FromUserName>"
                f"<CreateTime>{ct}</CreateTime><MsgType>{_cdata('event')}</MsgType>"
                f"<Event>{_cdata('template_card_event')}</Event><EventKey>{_cdata(event_key)}</EventKey>"
                f"<TaskId>{_cdata(task_id)}</TaskId><CardType>{_cdata(card_type)}</CardType>"
                f"<ResponseCode>{_cdata(response_code)}</ResponseCode><AgentID>{self.agent_id}</AgentID>"
                + (f"<SelectedItems>{items}</SelectedItems>" if items else "") + "</xml>")

    def scan_xml(self, user: str, result: str, create_time: int | None = None, key: str = "jxc_scan",
                 scan_type: str = "barcode") -> str:
        """Plaintext of a scancode_waitmsg event: the member tapped the menu's 扫码 and scanned `result`
        (WeCom prefixes a barcode with its symbology, e.g. "EAN_13,6930180079197")."""
        ct = create_time or int(self._clock())
        return (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName><FromUserName>{_cdata(user)}</FromUserName>"
                f"<CreateTime>{ct}</CreateTime><MsgType>{_cdata('event')}</MsgType>"
                f"<Event>{_cdata('scancode_waitmsg')}</Event><EventKey>{_cdata(key)}</EventKey>"
                f"<ScanCodeInfo><ScanType>{_cdata(scan_type)}</ScanType><ScanResult>{_cdata(result)}</ScanResult>"
                f"</ScanCodeInfo><AgentID>{self.agent_id}</AgentID></xml>")

    def menu_click_xml(self, user: str, key: str, create_time: int | None = None) -> str:
        """Plaintext of a click on a menu button (Event click, EventKey = the button's key)."""
        ct = create_time or int(self._clock())
        return (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName><FromUserName>{_cdata(user)}</FromUserName>"
                f"<CreateTime>{ct}</CreateTime><MsgType>{_cdata('event')}</MsgType><Event>{_cdata('click')}</Event>"
                f"<EventKey>{_cdata(key)}</EventKey><AgentID>{self.agent_id}</AgentID></xml>")

    def event_xml(self, user: str, event: str, create_time: int | None = None) -> str:
        """Plaintext of some other event (enter_agent, subscribe, template_card_menu_event …)."""
        ct = create_time or int(self._clock())
        return (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName><FromUserName>{_cdata(user)}</FromUserName>"
                f"<CreateTime>{ct}</CreateTime><MsgType>{_cdata('event')}</MsgType><Event>{_cdata(event)}</Event>"
                f"<EventKey>{_cdata('')}</EventKey><AgentID>{self.agent_id}</AgentID></xml>")

    def check_reply(self, xml: str, user: str | None = None) -> dict[str, Any]:
        """Decrypt a passive reply and check it the way WeCom would before showing it (§1.6, §2.4): From =
        CorpID, To = the member (when given), numeric CreateTime, and per MsgType: text with 1..2048-byte
        Content, update_button with a ReplaceName, update_template_card with a TemplateCard. Returns the
        plaintext's fields; ValueError says what is wrong."""
        try:
            fields = xmltodict.parse(self.decrypt_reply(xml))["xml"]
        except (KeyError, TypeError, ValueError, ExpatError) as exc:
            raise ValueError(f"passive reply unreadable: {exc}") from None
        if not isinstance(fields, dict):
            raise ValueError("passive reply has no fields")
        if fields.get("FromUserName") != self.corp_id:
            raise ValueError("passive reply FromUserName is not the CorpID")
        if user is not None and fields.get("ToUserName") != user:
            raise ValueError("passive reply ToUserName is not the member")
        if not str(fields.get("CreateTime", "")).isdigit():
            raise ValueError("passive reply CreateTime missing")
        kind = fields.get("MsgType")
        if kind == "text":
            content = fields.get("Content")
            if not isinstance(content, str) or not content or len(content.encode("utf-8")) > TEXT_LIMIT:
                raise ValueError("passive text Content empty or over 2048 bytes")
        elif kind == "update_button":
            button = fields.get("Button")
            if not isinstance(button, dict) or not button.get("ReplaceName"):
                raise ValueError("update_button without Button/ReplaceName")
        elif kind == "update_template_card":
            if not isinstance(fields.get("TemplateCard"), dict):
                raise ValueError("update_template_card without TemplateCard")
        else:
            raise ValueError(f"passive reply MsgType {kind!r} not supported")
        return fields

    def decrypt_reply(self, xml: str) -> str:
        """Verify and decrypt a passive reply envelope (Encrypt, MsgSignature, TimeStamp, Nonce)."""
        env = xmltodict.parse(xml)["xml"]
        if self.sign(str(env["TimeStamp"]), str(env["Nonce"]), str(env["Encrypt"])) != env["MsgSignature"]:
            raise ValueError("passive reply signature mismatch")
        return str(self._crypto.decrypt_message({"Encrypt": env["Encrypt"]}, env["MsgSignature"],
                                                str(env["TimeStamp"]), str(env["Nonce"])))

    @staticmethod
    def url(base: str, params: dict[str, str]) -> yarl.URL:
        """The callback URL with every query value percent-encoded as WeCom does (%2B, %2F, %3D)."""
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return yarl.URL(f"{base}?{query}", encoded=True)

    async def _attempt(self, session: aiohttp.ClientSession, method: str, url: yarl.URL, body: bytes | None,
                       deadline: float) -> Delivery:
        started = time.monotonic()
        try:
            async with session.request(method, url, data=body, timeout=aiohttp.ClientTimeout(total=deadline),
                                       headers={"Content-Type": "text/xml"} if body is not None else None) as r:
                text = await r.text()
                return Delivery(r.status, text, time.monotonic() - started)
        except (TimeoutError, aiohttp.ClientError):
            return Delivery(0, "", time.monotonic() - started)

    async def verify(self, session: aiohttp.ClientSession, base: str, echo: str | None = None,
                     *, deadline: float = 1.0) -> tuple[Delivery, str]:
        """Send the URL-check GET (1 s deadline); returns the attempt and the expected plaintext."""
        params, plain = self.url_check(echo)
        return await self._attempt(session, "GET", self.url(base, params), None, deadline), plain

    async def deliver(self, session: aiohttp.ClientSession, base: str, plaintext: str, *, retries: int = 3,
                      deadline: float = 5.0, tamper: str | None = None, replays: int = 0) -> list[Delivery]:
        """POST one callback; on timeout or non-200 re-send the same request, up to `retries` more times.
        replays: afterwards push the identical request (same nonce, signature and body) that many more times,
        as WeCom does when it missed the answer; every attempt is returned, in order."""
        params, body = self.post(plaintext, tamper=tamper)
        url = self.url(base, params)
        attempts = [await self._attempt(session, "POST", url, body, deadline)]
        while attempts[-1].status != 200 and len(attempts) <= retries:
            attempts.append(await self._attempt(session, "POST", url, body, deadline))
        for _ in range(replays):
            attempts.append(await self._attempt(session, "POST", url, body, deadline))
        return attempts
