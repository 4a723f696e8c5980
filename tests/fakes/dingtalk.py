"""A local fake of DingTalk's HTTP APIs (a real aiohttp server on 127.0.0.1) plus builders of signed callbacks."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import aiohttp
from aiohttp import web

from bot.dingtalk.sign import compute_sign

__all__ = [
    "MSG_KEYS",
    "Delivery",
    "FakeCard",
    "FakeClock",
    "FakeDingTalk",
    "FakeRobot",
    "Fault",
    "Sent",
    "card_click_payload",
    "signed_callback",
    "signed_headers",
    "text_message",
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WEBHOOK_MAX = 20_000
MSG_PARAM_MAX = 15_000
MEDIA_MAX = 20 * 1024 * 1024
SIGN_WINDOW_MS = 3_600_000
SESSION_TTL_MS = 5_400_000

# msgKey → keys its msgParam must carry (protocols/dingtalk.md §3.3).
MSG_KEYS: dict[str, tuple[str, ...]] = {
    "sampleText": ("content",),
    "sampleMarkdown": ("title", "text"),
    "sampleImageMsg": ("photoURL",),
    "sampleLink": ("text", "title", "picUrl", "messageUrl"),
    "sampleActionCard": ("title", "text", "singleTitle", "singleURL"),
    **{f"sampleActionCard{n}": ("title", "text") for n in range(2, 7)},
    "sampleFile": ("mediaId", "fileName", "fileType"),
    "sampleAudio": ("mediaId", "duration"),
    "sampleVideo": (),
}


class FakeClock:
    """Wall-clock seconds with an adjustable offset; share it between the fake and the client under test."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen: float | None = None

    def __call__(self) -> float:
        return (time.time() if self.frozen is None else self.frozen) + self.offset

    def freeze(self, at: float | None = None) -> None:
        """Stop the clock at `at` (epoch seconds; default now); advance() still moves it."""
        self.frozen = time.time() if at is None else at
        self.offset = 0.0

    def ms(self) -> int:
        """Now in epoch milliseconds."""
        return int(self() * 1000)

    def advance(self, seconds: float) -> None:
        """Move time forward (or back, with a negative value)."""
        self.offset += seconds


@dataclass
class Fault:
    """What to do instead of (or around) the normal answer for one request to a route.

    status/body: answer this instead (body is JSON); delay: hang this long first (cut short when the fake
    closes); drop: answer success but record nothing (a message silently lost); reset: close the connection."""

    status: int = 200
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    reset: bool = False


@dataclass
class Sent:
    """One message the fake accepted. channel: "user" | "group" | "session" | "robot" | "card" | "card-update";
    address: staff id, conversation id, session id, robot access token or card outTrackId; kind: msgKey or
    msgtype; payload: the parsed msgParam or the whole body."""

    channel: str
    address: str
    kind: str
    payload: dict[str, Any]
    at: float


@dataclass(frozen=True)
class Delivery:
    """One callback POST by the inbound driver: HTTP status (0 = no answer within the timeout / connection
    failed), answer body, seconds until the answer, and the signed `timestamp` header it carried."""

    status: int
    body: str
    latency: float
    timestamp: str


@dataclass
class FakeRobot:
    """A custom group robot: its security settings and its rate-limit state."""

    token: str
    secret: str | None = None
    keywords: tuple[str, ...] = ()
    ip_whitelist: tuple[str, ...] | None = None
    per_minute: int = 20
    block_seconds: float = 600.0
    window: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


@dataclass
class FakeCard:
    """An interactive card instance as DingTalk keeps it."""

    out_track_id: str
    template_id: str
    params: dict[str, str]
    space_type: str
    space_id: str
    callback_type: str
    route_key: str | None
    history: list[dict[str, str]] = field(default_factory=list)


def _api_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "requestid": "fake-request"}, status=status)


def _errcode(errcode: int, errmsg: str, **extra: Any) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg, **extra})


def _webhook_body_problem(body: Any) -> str | None:
    """Why a custom-robot / sessionWebhook body is invalid (None when valid)."""
    if not isinstance(body, dict):
        return "body is not a JSON object"
    msgtype = body.get("msgtype")
    part = body.get(msgtype) if isinstance(msgtype, str) else None
    if not isinstance(part, dict):
        return "msgtype invalid"
    required = {
        "text": ("content",), "markdown": ("title", "text"), "link": ("title", "text", "messageUrl"),
        "actionCard": ("title", "text"), "feedCard": ("links",), "image": ("picURL",),
    }.get(msgtype)
    if required is None:
        return "msgtype invalid"
    missing = [k for k in required if not part.get(k)]
    if missing:
        return f"missing {msgtype}.{missing[0]}"
    if msgtype == "actionCard" and not part.get("singleURL") and not (
        isinstance(part.get("btns"), list) and part["btns"] and all(b.get("actionURL") for b in part["btns"])
    ):
        return "missing actionCard.singleURL or btns[].actionURL"
    return None


class FakeDingTalk:
    """DingTalk's OpenAPI, oapi, sessionWebhook and custom robot endpoints on one local port (§6 of the
    protocol notes). Records accepted messages in `sent`, every call in `calls`; faults are injected per route.

    Route names for inject(): token, gettoken, batchSend, groupSend, upload, cardCreate, cardUpdate,
    cardRegister, session, robot."""

    def __init__(self, *, app_key: str = "ding-app-key", app_secret: str = "ding-app-secret",
                 robot_code: str = "ding-robot-code", token_ttl: float = 7200, clock: FakeClock | None = None,
                 auth_error_status: int = 400) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.robot_code = robot_code
        self.token_ttl = token_ttl
        self.clock = clock or FakeClock()
        self.auth_error_status = auth_error_status
        self.tokens: dict[str, float] = {}  # token → expiry (clock seconds)
        self.token_requests = 0
        self.reject_tokens = False  # every token is "不合法" (a refresh does not help)
        self.sessions: dict[str, int] = {}  # session id → expiry (epoch ms)
        self.robots: dict[str, FakeRobot] = {}
        self.media: dict[str, bytes] = {}
        self.files: dict[str, tuple[bytes, str]] = {}  # downloadCode of a picture a user sent → (bytes, type)
        self.file_links: dict[str, str] = {}  # temporary download token → downloadCode
        self.cards: dict[str, FakeCard] = {}
        self.callbacks: dict[str, dict[str, str]] = {}  # callbackRouteKey → {url, api_secret}
        self.groups: set[str] | None = None  # when set, groupSend/cards only to these conversations
        self.flow_controlled: set[str] = set()
        self.invalid_staff: set[str] = set()
        self.card_deliver_error: str | None = None
        self.sent: list[Sent] = []
        self.calls: list[tuple[float, str, str]] = []
        self.faults: dict[str, deque[Fault]] = {}
        self._ids = itertools.count(1)
        self._dropping: set[int] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MEDIA_MAX + 1024 * 1024)
        add = app.router.add_route
        add("POST", "/v1.0/oauth2/accessToken", self._token, name="token")
        add("GET", "/gettoken", self._gettoken, name="gettoken")
        add("POST", "/v1.0/robot/oToMessages/batchSend", self._batch_send, name="batchSend")
        add("POST", "/v1.0/robot/groupMessages/send", self._group_send, name="groupSend")
        add("POST", "/media/upload", self._upload, name="upload")
        add("POST", "/v1.0/card/instances/createAndDeliver", self._card_create, name="cardCreate")
        add("PUT", "/v1.0/card/instances", self._card_update, name="cardUpdate")
        add("POST", "/v1.0/card/callbacks/register", self._card_register, name="cardRegister")
        add("POST", "/v1.0/robot/messageFiles/download", self._file_download, name="fileDownload")
        add("GET", "/files/{token}", self._file_get, name="fileGet")
        add("POST", "/robot/sendBySession", self._session_send, name="session")
        add("POST", "/robot/send", self._robot_send, name="robot")
        return app

    async def start(self) -> str:
        """Listen on 127.0.0.1 (a free port); returns and sets `url`."""
        self._runner = web.AppRunner(self._app(), shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        """Release hung handlers and stop the server."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDingTalk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- test controls ------------------------------------------------------------------------------------------

    def inject(self, route: str, fault: Fault, times: int = 1) -> None:
        """Apply `fault` to the next `times` requests to `route`."""
        self.faults.setdefault(route, deque()).extend([fault] * times)

    def fail(self, route: str, status: int = 503, body: Any = None, times: int = 1) -> None:
        """Answer the next requests with this status/body (default: a 503 with an API-style error)."""
        self.inject(route, Fault(status=status, body=body if body is not None else {
            "code": "ServiceUnavailable", "message": "fake outage"}), times)

    def hang(self, route: str, seconds: float = 30.0, times: int = 1) -> None:
        """Hold the next requests this long before answering (released when the fake closes)."""
        self.inject(route, Fault(delay=seconds), times)

    def drop(self, route: str, times: int = 1) -> None:
        """Answer success but lose the message."""
        self.inject(route, Fault(drop=True), times)

    def throttle(self, route: str, times: int = 1) -> None:
        """A burst of throttling answers: `send.too.fast` (HTTP 403) on API routes, errcode 130101 on webhooks."""
        if route in ("robot", "session", "upload", "gettoken"):
            body = {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute", "status": 1111,
                    "wait": 5, "punish": "deny"}
            self.inject(route, Fault(status=200, body=body), times)
        else:
            self.inject(route, Fault(status=403, body={"code": "send.too.fast", "message": "发送太快"}), times)

    def expire_tokens(self) -> None:
        """Every token handed out so far stops working (expiry mid-stream); new ones work."""
        self.tokens.clear()

    def add_robot(self, token: str, *, secret: str | None = None, keywords: Iterable[str] = (),
                  ip_whitelist: Iterable[str] | None = None) -> FakeRobot:
        """Create a custom group robot reachable at /robot/send?access_token=token."""
        robot = FakeRobot(token, secret, tuple(keywords), tuple(ip_whitelist) if ip_whitelist is not None else None)
        self.robots[token] = robot
        return robot

    def new_session(self, ttl_ms: int = SESSION_TTL_MS) -> tuple[str, int]:
        """A sessionWebhook on this fake: (url, expiry epoch ms)."""
        session_id = f"sess{next(self._ids)}"
        expires = self.clock.ms() + ttl_ms
        self.sessions[session_id] = expires
        return f"{self.url}/robot/sendBySession?session={session_id}", expires

    def text_message(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """text_message() with a fresh sessionWebhook on this fake and this fake's clock and robot code."""
        created = kwargs.pop("created_ms", self.clock.ms())
        url, _ = self.new_session(created + SESSION_TTL_MS - self.clock.ms())
        kwargs.setdefault("robot_code", self.robot_code)
        return text_message(text, created_ms=created, session_webhook=url, **kwargs)

    def user_picture(self, data: bytes, content_type: str = "image/jpeg") -> str:
        """A user sends the robot a picture: DingTalk keeps it and the message carries a downloadCode for it."""
        code = f"dc{next(self._ids)}{random.getrandbits(48):012x}"
        self.files[code] = (data, content_type)
        return code

    def picture_message(self, download_code: str, **kwargs: Any) -> dict[str, Any]:
        """A picture message body (msgtype picture, content.downloadCode) from a user, like text_message()."""
        body = self.text_message("", msgtype="picture", **kwargs)
        body["content"] = {"downloadCode": download_code, "pictureDownloadCode": download_code + "p"}
        return body

    def messages(self, channel: str | None = None) -> list[Sent]:
        """Accepted messages, optionally of one channel."""
        return [s for s in self.sent if channel is None or s.channel == channel]

    def texts(self, channel: str | None = None) -> list[str]:
        """The text of every accepted text message (msgParam content or text.content), in order."""
        out = []
        for s in self.messages(channel):
            if s.kind == "sampleText":
                out.append(s.payload["content"])
            elif s.kind == "text":
                out.append(s.payload["text"]["content"])
        return out

    async def click(self, session: aiohttp.ClientSession, out_track_id: str, user_id: str, action: str, *,
                    url: str | None = None) -> tuple[int, Any]:
        """Click a button of a delivered card: POST the §4 payload to the registered callback URL (or `url`),
        apply the cardData/cardUpdateOptions of the answer to the stored card; (status, parsed answer)."""
        card = self.cards[out_track_id]
        target = url or self.callbacks[card.route_key or ""]["url"]
        payload = card_click_payload(out_track_id, user_id, action, space_type=card.space_type,
                                     space_id=card.space_id)
        async with session.post(target, json=payload) as resp:
            status = resp.status
            try:
                answer = await resp.json(content_type=None)
            except ValueError:
                answer = None
        if isinstance(answer, dict):
            new = (answer.get("cardData") or {}).get("cardParamMap")
            if isinstance(new, dict):
                by_key = (answer.get("cardUpdateOptions") or {}).get("updateCardDataByKey", True)
                card.params = {**card.params, **new} if by_key else dict(new)
                card.history.append(dict(card.params))
        return status, answer

    # -- inbound driver (fake DingTalk → bot) -------------------------------------------------------------------

    async def deliver(self, session: aiohttp.ClientSession, url: str, payload: Mapping[str, Any], *,
                      redeliver_after: float | None = None, redeliveries: int = 1, late_after: float | None = None,
                      deadline: float = 10.0, unsigned: bool = False, **switches: Any) -> list[Delivery]:
        """POST a robot message (§1) to the bot's callback URL, signed with this fake's appSecret and clock.

        A group message that does not @mention the robot is not delivered at all (returns []), as DingTalk
        never passes those on. redeliver_after: the same body (same msgId, freshly signed) is POSTed again that
        many seconds after the previous attempt started, up to `redeliveries` times — always (a duplicate on
        demand), or with late_after only while the previous attempt has no 200 ack within late_after seconds
        (the reported "slow ack → same msgId again 15–60 s later"). A redelivery does not wait for a hung
        ack: attempts overlap. deadline: seconds each attempt waits for its answer (status 0 beyond). unsigned:
        no timestamp/sign headers; other switches as in signed_headers.
        Returns every attempt in the order sent."""
        if payload.get("conversationType") == "2" and not payload.get("isInAtList"):
            return []
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        loop = asyncio.get_running_loop()

        def start() -> tuple[float, asyncio.Task[Delivery]]:
            if unsigned:
                headers = {"Content-Type": "application/json; charset=utf-8"}
            else:
                headers = signed_headers(self.app_secret, self.clock.ms(), **switches)
            return loop.time(), asyncio.create_task(self._post_callback(session, url, headers, body, deadline))

        attempts = [start()]
        try:
            for _ in range(redeliveries if redeliver_after is not None else 0):
                started, previous = attempts[-1]
                if late_after is not None:
                    done, _ = await asyncio.wait({previous}, timeout=late_after)
                    if previous in done and previous.result().status == 200:
                        break  # acknowledged in time: no redelivery
                await asyncio.sleep(max(0.0, started + (redeliver_after or 0.0) - loop.time()))
                attempts.append(start())
            return list(await asyncio.gather(*(task for _, task in attempts)))
        finally:
            for _, task in attempts:  # only when cancelled: don't leave attempts running
                task.cancel()

    @staticmethod
    async def _post_callback(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes,
                             deadline: float) -> Delivery:
        started = time.monotonic()
        try:
            async with session.post(url, data=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=deadline)) as resp:
                text = await resp.text()
                return Delivery(resp.status, text, time.monotonic() - started, headers.get("timestamp", ""))
        except (TimeoutError, aiohttp.ClientError):
            return Delivery(0, "", time.monotonic() - started, headers.get("timestamp", ""))

    # -- plumbing -----------------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append((self.clock(), request.method, request.path))
        route = request.match_info.route.name or ""
        queue = self.faults.get(route)
        fault = queue.popleft() if queue else None
        if fault is not None:
            if fault.delay:
                try:
                    await asyncio.wait_for(self._closing.wait(), fault.delay)
                except TimeoutError:
                    pass
            if fault.reset:
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)
            if fault.drop:
                self._dropping.add(id(request))
            elif fault.body is not None or fault.status != 200:
                if fault.body is None:
                    return web.Response(status=fault.status)
                return web.json_response(fault.body, status=fault.status)
        try:
            return await handler(request)
        finally:
            self._dropping.discard(id(request))

    def _dropped(self, request: web.Request) -> bool:
        return id(request) in self._dropping

    def _record(self, request: web.Request, channel: str, address: str, kind: str, payload: dict[str, Any]) -> None:
        if not self._dropped(request):
            self.sent.append(Sent(channel, address, kind, payload, self.clock()))

    def _token_ok(self, token: str | None) -> bool:
        return bool(token) and not self.reject_tokens and self.tokens.get(token or "", 0.0) > self.clock()

    def _issue_token(self) -> str:
        token = f"tok{next(self._ids)}"
        self.tokens[token] = self.clock() + self.token_ttl
        return token

    async def _json(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            return None

    def _auth(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("x-acs-dingtalk-access-token")
        if not token:
            return _api_error(400, "AuthenticationFailed.MissingParameter", "缺少 x-acs-dingtalk-access-token")
        if not self._token_ok(token):
            return _api_error(self.auth_error_status, "InvalidAuthentication", "不合法的access_token")
        return None

    # -- tokens -------------------------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        self.token_requests += 1
        if not isinstance(body, dict) or body.get("appKey") != self.app_key or body.get("appSecret") != self.app_secret:
            return _api_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        return web.json_response({"accessToken": self._issue_token(), "expireIn": int(self.token_ttl)})

    async def _gettoken(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if request.query.get("appkey") != self.app_key or request.query.get("appsecret") != self.app_secret:
            return _errcode(40096, "不合法的appKey或appSecret")
        return _errcode(0, "ok", access_token=self._issue_token(), expires_in=int(self.token_ttl))

    # -- robot OpenAPI ------------------------------------------------------------------------------------------

    async def _robot_call(self, request: web.Request) -> tuple[web.Response | None, dict[str, Any], dict[str, Any]]:
        """A robot message API call (batchSend, groupSend) authenticated and checked: (error answer or None, body,
        msgParam)."""
        if (denied := self._auth(request)) is not None:
            return denied, {}, {}
        body = await self._json(request)
        problem, param = self._check_robot_message(body)
        return problem, body if isinstance(body, dict) else {}, param

    def _check_robot_message(self, body: Any) -> tuple[web.Response | None, dict[str, Any]]:
        if not isinstance(body, dict):
            return _api_error(400, "invalidParameter", "body is not JSON"), {}
        if not body.get("robotCode"):
            return _api_error(400, "invalidParameter.robotCode.empty", "robotCode 为空"), {}
        if body["robotCode"] != self.robot_code:
            return _api_error(400, "invalidParameter.robotCode.auth", "robotCode 无权限"), {}
        msg_key = body.get("msgKey")
        if msg_key not in MSG_KEYS:
            return _api_error(400, "invalidParameter.msgKey.invalid", "msgKey 不合法"), {}
        raw = body.get("msgParam")
        if not isinstance(raw, str) or len(raw.encode("utf-8")) > MSG_PARAM_MAX:
            return _api_error(400, "invalidParameter.msgParam.invalid", "msgParam 不合法或超过 15000 字节"), {}
        try:
            param = json.loads(raw)
        except ValueError:
            return _api_error(400, "invalidParameter.msgParam.invalid", "msgParam 不是 JSON"), {}
        if not isinstance(param, dict) or any(k not in param for k in MSG_KEYS[msg_key]):
            return _api_error(400, "invalidParameter.msgParam.invalid", "msgParam 缺少字段"), {}
        if msg_key == "sampleImageMsg":
            photo = param["photoURL"]
            if not (isinstance(photo, str) and (photo in self.media or photo.startswith(("https://", "http://")))):
                return _api_error(400, "invalidParameter.msgParam.invalid", "photoURL 不合法"), {}
        return None, param

    async def _batch_send(self, request: web.Request) -> web.Response:
        problem, body, param = await self._robot_call(request)
        if problem is not None:
            return problem
        users = body.get("userIds")
        if not isinstance(users, list) or not users or not all(isinstance(u, str) and u for u in users):
            return _api_error(400, "invalidParameter.userIds.empty", "userIds 为空")
        if len(users) > 20:
            return _api_error(400, "invalidParameter.userIds.overMax", "userIds 超过 20 个")
        invalid = [u for u in users if u in self.invalid_staff]
        flow = [u for u in users if u in self.flow_controlled and u not in invalid]
        for user in users:
            if user not in invalid and user not in flow:
                self._record(request, "user", user, body["msgKey"], param)
        return web.json_response({"processQueryKey": f"pqk{next(self._ids)}", "invalidStaffIdList": invalid,
                                  "flowControlledStaffIdList": flow, "filteredStaffIdList": []})

    async def _group_send(self, request: web.Request) -> web.Response:
        problem, body, param = await self._robot_call(request)
        if problem is not None:
            return problem
        conversation = body.get("openConversationId")
        if not isinstance(conversation, str) or not conversation:
            return _api_error(400, "invalidParameter.openConversationId.empty", "openConversationId 为空")
        if self.groups is not None and conversation not in self.groups:
            return _api_error(400, "robot.not.in.group", "机器人不在群内")
        self._record(request, "group", conversation, body["msgKey"], param)
        return web.json_response({"processQueryKey": f"pqk{next(self._ids)}"})

    async def _upload(self, request: web.Request) -> web.Response:
        if not self._token_ok(request.query.get("access_token")):
            return _errcode(40014, "不合法的access_token")
        try:
            form = await request.post()
        except ValueError:
            return _errcode(40005, "不合法的文件类型")
        media = form.get("media")
        kind = request.query.get("type") or form.get("type")
        if kind != "image" or not isinstance(media, web.FileField):
            return _errcode(40004, "不合法的媒体文件类型")
        data = media.file.read()
        if not data.startswith(PNG_MAGIC):
            return _errcode(40005, "不合法的文件类型")
        if len(data) > MEDIA_MAX:
            return _errcode(40006, "不合法的文件大小")
        if self._dropped(request):
            return _errcode(0, "ok", media_id="@lADlost", type="image", created_at=self.clock.ms())
        media_id = f"@lADfake{next(self._ids)}"
        self.media[media_id] = data
        return _errcode(0, "ok", media_id=media_id, type="image", created_at=self.clock.ms())

    # -- cards --------------------------------------------------------------------------------------------------

    @staticmethod
    def _param_map_problem(card_data: Any) -> str | None:
        params = card_data.get("cardParamMap") if isinstance(card_data, dict) else None
        if not isinstance(params, dict):
            return "cardData.cardParamMap missing"
        if not all(isinstance(v, str) for v in params.values()):
            return "cardParamMap values must be strings"
        return None

    async def _card_create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await self._json(request)
        if not isinstance(body, dict) or not body.get("cardTemplateId") or not body.get("outTrackId"):
            return _api_error(400, "invalidParameter", "cardTemplateId/outTrackId 为空")
        if body["outTrackId"] in self.cards:
            return _api_error(400, "invalidParameter.outTrackId.duplicate", "outTrackId 已存在")
        if (problem := self._param_map_problem(body.get("cardData"))) is not None:
            return _api_error(400, "invalidParameter.cardData", problem)
        callback_type = body.get("callbackType", "STREAM")
        route_key = body.get("callbackRouteKey")
        if callback_type == "HTTP" and route_key not in self.callbacks:
            return _api_error(400, "invalidParameter.callbackRouteKey", "callbackRouteKey 未注册")
        space = str(body.get("openSpaceId", ""))
        if space.startswith("dtv1.card//IM_GROUP."):
            space_type, space_id = "IM_GROUP", space.removeprefix("dtv1.card//IM_GROUP.")
            deliver = body.get("imGroupOpenDeliverModel") or {}
            if deliver.get("robotCode") != self.robot_code:
                return _api_error(400, "invalidParameter.robotCode", "imGroupOpenDeliverModel.robotCode 不合法")
            if self.groups is not None and space_id not in self.groups:
                return _api_error(400, "robot.not.in.group", "机器人不在群内")
        elif space.startswith("dtv1.card//IM_ROBOT."):
            space_type, space_id = "IM_ROBOT", space.removeprefix("dtv1.card//IM_ROBOT.")
            if (body.get("imRobotOpenDeliverModel") or {}).get("spaceType") != "IM_ROBOT":
                return _api_error(400, "invalidParameter.imRobotOpenDeliverModel", "spaceType 必须为 IM_ROBOT")
        else:
            return _api_error(400, "invalidParameter.openSpaceId", "openSpaceId 不合法")
        if not space_id:
            return _api_error(400, "invalidParameter.openSpaceId", "openSpaceId 不合法")
        result = {"spaceType": space_type, "spaceId": space_id, "carrierId": f"carrier{next(self._ids)}"}
        if self.card_deliver_error:
            result.update(success=False, errorMsg=self.card_deliver_error)
        else:
            result["success"] = True
            params = dict(body["cardData"]["cardParamMap"])
            if not self._dropped(request):
                self.cards[body["outTrackId"]] = FakeCard(body["outTrackId"], body["cardTemplateId"], params,
                                                          space_type, space_id, callback_type, route_key,
                                                          [dict(params)])
            self._record(request, "card", body["outTrackId"], space_type, body)
        return web.json_response({"success": True, "result": {"outTrackId": body["outTrackId"],
                                                              "deliverResults": [result]}})

    async def _card_update(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await self._json(request)
        card = self.cards.get(body.get("outTrackId", "")) if isinstance(body, dict) else None
        if card is None:
            return _api_error(400, "invalidParameter.outTrackId", "卡片不存在")
        if (problem := self._param_map_problem(body.get("cardData"))) is not None:
            return _api_error(400, "invalidParameter.cardData", problem)
        new = body["cardData"]["cardParamMap"]
        by_key = (body.get("cardUpdateOptions") or {}).get("updateCardDataByKey", False)
        if not self._dropped(request):
            card.params = {**card.params, **new} if by_key else dict(new)
            card.history.append(dict(card.params))
        self._record(request, "card-update", card.out_track_id, "update", body)
        return web.json_response({"success": True, "result": True})

    async def _card_register(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await self._json(request)
        if not isinstance(body, dict) or not body.get("callbackRouteKey") or not body.get("callbackUrl"):
            return _api_error(400, "invalidParameter", "callbackRouteKey/callbackUrl 为空")
        key = body["callbackRouteKey"]
        if key in self.callbacks and not body.get("forceUpdate"):
            return _api_error(400, "invalidParameter.callbackRouteKey.exists", "callbackRouteKey 已存在")
        self.callbacks[key] = {"url": body["callbackUrl"], "api_secret": str(body.get("apiSecret", ""))}
        return web.json_response({"success": True, "result": {"callbackUrl": body["callbackUrl"],
                                                              "apiSecret": body.get("apiSecret", "")}})

    # -- received files -----------------------------------------------------------------------------------------

    async def _file_download(self, request: web.Request) -> web.Response:
        """robot/messageFiles/download {downloadCode, robotCode} → a temporary downloadUrl on this fake."""
        if (denied := self._auth(request)) is not None:
            return denied
        body = await self._json(request)
        if not isinstance(body, dict) or body.get("robotCode") != self.robot_code:
            return _api_error(400, "invalidParameter.robotCode", "robotCode 不合法")
        code = body.get("downloadCode")
        if not isinstance(code, str) or code not in self.files:
            return _api_error(400, "invalidParameter.downloadCode", "downloadCode 不合法或已过期")
        token = f"{random.getrandbits(64):016x}"
        self.file_links[token] = code
        return web.json_response({"downloadUrl": f"{self.url}/files/{token}?Expires=600&Signature=fake%2B"})

    async def _file_get(self, request: web.Request) -> web.Response:
        code = self.file_links.get(request.match_info["token"])
        if code is None:
            return web.Response(status=403, text="AccessDenied")
        data, content_type = self.files[code]
        return web.Response(body=data, content_type=content_type)

    # -- webhooks -----------------------------------------------------------------------------------------------

    async def _session_send(self, request: web.Request) -> web.Response:
        session_id = request.query.get("session", "")
        expires = self.sessions.get(session_id)
        if expires is None or self.clock.ms() > expires:
            return _errcode(300001, "session 不存在")
        raw = await request.read()
        if len(raw) > WEBHOOK_MAX:
            return _errcode(460101, "message too long, exceed 20000 bytes")
        body = await self._json(request)
        if (problem := _webhook_body_problem(body)) is not None:
            return _errcode(400105, problem)  # code unverified; the client treats unknown codes as permanent
        self._record(request, "session", session_id, body["msgtype"], body)
        return _errcode(0, "ok")

    async def _robot_send(self, request: web.Request) -> web.Response:
        robot = self.robots.get(request.query.get("access_token", ""))
        if robot is None:
            return _errcode(300005, "token is not exist")
        now = self.clock()
        if now < robot.blocked_until:
            return _errcode(130101, "send too fast, exceed 20 times per minute", status=1111, wait=5, punish="deny")
        if robot.secret:
            timestamp = request.query.get("timestamp", "")  # the query is decoded: a raw "+" became a space
            sign = request.query.get("sign", "")
            if not timestamp.isdigit() or abs(self.clock.ms() - int(timestamp)) > SIGN_WINDOW_MS:
                return _errcode(310000, "invalid timestamp")
            if sign != compute_sign(timestamp, robot.secret):
                return _errcode(310000, "sign not match; description:机器人发送签名不匹配")
        if robot.ip_whitelist is not None and request.remote not in robot.ip_whitelist:
            return _errcode(310000, "description:ip 不在白名单中;solution:请将ip加入白名单")
        raw = await request.read()
        if len(raw) > WEBHOOK_MAX:
            return _errcode(460101, "message too long, exceed 20000 bytes")
        body = await self._json(request)
        if (problem := _webhook_body_problem(body)) is not None:
            return _errcode(400105, problem)
        if robot.keywords and not any(k in json.dumps(body, ensure_ascii=False) for k in robot.keywords):
            return _errcode(310000, "keywords not in content")
        while robot.window and robot.window[0] <= now - 60:
            robot.window.popleft()
        if len(robot.window) >= robot.per_minute:
            robot.blocked_until = now + robot.block_seconds
            return _errcode(130101, "send too fast, exceed 20 times per minute", status=1111, wait=5, punish="deny")
        robot.window.append(now)
        self._record(request, "robot", robot.token, body["msgtype"], body)
        return _errcode(0, "ok")


# -- inbound driver (fake DingTalk → bot) ---------------------------------------------------------------------------


def signed_headers(app_secret: str, timestamp_ms: int | None = None, *, skew_ms: int = 0, forge: bool = False,
                   url_encode: bool = False, plus_to_space: bool = False) -> dict[str, str]:
    """The `timestamp`/`sign` headers DingTalk puts on a robot callback, with switches for the failure cases:
    skew_ms shifts the timestamp, forge signs with a wrong secret, url_encode / plus_to_space mangle the sign."""
    ts = str((timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)) + skew_ms)
    sign = compute_sign(ts, app_secret + "-forged" if forge else app_secret)
    if url_encode:
        sign = quote_plus(sign)
    if plus_to_space:
        sign = sign.replace("+", " ")
    return {"Content-Type": "application/json; charset=utf-8", "timestamp": ts, "sign": sign}


def text_message(text: str, *, staff_id: str | None = "manager01", conversation_id: str | None = None,
                 msg_id: str | None = None, created_ms: int | None = None, session_webhook: str | None = None,
                 robot_code: str = "ding-robot-code", sender_nick: str = "张经理",
                 msgtype: str = "text", at_bot: bool = True) -> dict[str, Any]:
    """A §1 robot message body. conversation_id given → a group message ("2", text after the @mention keeps
    its leading space); else 1:1 ("1"). staff_id None → a sender outside the organisation. at_bot False → a
    group message that does not @mention the robot (FakeDingTalk.deliver never sends those)."""
    created = created_ms if created_ms is not None else int(time.time() * 1000)
    group = conversation_id is not None
    mentioned = group and at_bot
    body: dict[str, Any] = {
        "msgtype": msgtype,
        "msgId": msg_id or f"msg{created}",
        "createAt": created,
        "conversationType": "2" if group else "1",
        "conversationId": conversation_id or "cidP2PfakeConversation==",
        "senderId": "$:LWCP_v1:$fakeSender",
        "senderNick": sender_nick,
        "senderCorpId": "dingcorpfake",
        "chatbotCorpId": "dingcorpfake",
        "chatbotUserId": "$:LWCP_v1:$fakeBot",
        "robotCode": robot_code,
        "isAdmin": False,
        "isInAtList": mentioned,
        "atUsers": [{"dingtalkId": "$:LWCP_v1:$fakeBot"}] if mentioned else [],
        "sessionWebhook": session_webhook or "https://oapi.dingtalk.com/robot/sendBySession?session=fake",
        "sessionWebhookExpiredTime": created + SESSION_TTL_MS,
    }
    if group:
        body["conversationTitle"] = "仓库主管群"
    if staff_id is not None:
        body["senderStaffId"] = staff_id
    if msgtype == "text":
        body["text"] = {"content": f" {text}" if mentioned else text}
    elif msgtype == "richText":
        body["content"] = {"richText": [{"text": text}, {"type": "picture", "downloadCode": "dc1"}]}
    else:
        body["content"] = {"downloadCode": "dc1", "pictureDownloadCode": "pdc1"}
    return body


def card_click_payload(out_track_id: str, user_id: str, action: str, *, space_type: str = "IM_GROUP",
                       space_id: str = "cidFakeGroup==", corp_id: str = "dingcorpfake") -> dict[str, Any]:
    """A §4 card click: content is a JSON *string* whose cardPrivateData.params.action is the button key."""
    content = {"cardPrivateData": {"actionIds": [f"btn_{action}"], "params": {"action": action}}}
    return {
        "outTrackId": out_track_id,
        "userId": user_id,
        "corpId": corp_id,
        "type": "actionCallback",
        "spaceType": space_type,
        "spaceId": space_id,
        "userIdType": 1,
        "extension": "{}",
        "content": json.dumps(content, ensure_ascii=False),
    }


def signed_callback(payload: Mapping[str, Any] | bytes, app_secret: str,
                    **switches: Any) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a signed robot callback request; switches as in signed_headers."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return signed_headers(app_secret, **switches), body
