"""DingTalk senders: the enterprise app robot OpenAPI client and the custom group robot webhook client.

Both implement bot.transport.Transport and raise SendError (retryable or permanent) on failure. Tokens,
secrets and webhook URLs (whose query is a credential) never reach logs or error messages.

Interactive cards need a card template built in the card platform whose variables are
`title` (text), `content` (markdown) and `buttons` (a JSON list of {"text", "action", "style"}; each button's
"回传请求" callback params = {"action": "${item.action}"}). Without a template id, cards go out as plain text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

import aiohttp
from yarl import URL

from bot.dingtalk.sign import robot_sign_query
from bot.transport import Delivered, SendError
from cards.dingtalk import (
    MSG_PARAM_MAX_BYTES,
    WEBHOOK_MAX_BYTES,
    card_fallback_text,
    card_params,
    dumps,
    message_parts,
    openapi_params,
    webhook_bodies,
)
from cards.model import Message
from cards.split import split_utf8
from core.messaging.targets import Target

__all__ = [
    "API_BASE",
    "MSG_PARAM_MAX_BYTES",
    "OAPI_BASE",
    "WEBHOOK_MAX_BYTES",
    "DingTalkClient",
    "DingTalkRobotClient",
    "card_fallback_text",
    "card_params",
    "message_parts",
    "split_utf8",
    "webhook_bodies",
]

log = logging.getLogger(__name__)

API_BASE = "https://api.dingtalk.com"
OAPI_BASE = "https://oapi.dingtalk.com"
SESSION_MARGIN_MS = 5_000  # don't start a sessionWebhook send in the last seconds of its life
ROBOT_WINDOW_S = 60.0
ROBOT_BLOCK_S = 600.0
DOWNLOAD_LIMIT = 10 * 1024 * 1024  # bytes read at most of a received picture; larger is refused

# Legacy/webhook errcodes (HTTP 200 + errcode). Throttles block a custom robot for 10 minutes.
THROTTLE_ERRCODES = frozenset({130101, 660026, 410100, 90030})  # 410100 / 90030: reported, not confirmed
RETRYABLE_ERRCODES = frozenset({-1}) | THROTTLE_ERRCODES
TOKEN_ERRCODES = frozenset({40014, 88, 42001})  # invalid / expired access_token on oapi (88 carries sub_code 40014)
# New API (HTTP 4xx + {"code"}): throttling codes reported by users of batchSend/groupMessages.
THROTTLE_CODES = frozenset({"send.too.fast", "too.many.group", "too.many.people", "send.byToken.tooFast"})


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def _request(session: aiohttp.ClientSession, method: str, url: str | URL, seconds: float, *,
                   body: Any = None, data: Any = None, headers: Mapping[str, str] | None = None,
                   what: str) -> tuple[int, Any, Mapping[str, str]]:
    """One HTTP exchange → (status, parsed JSON or None, headers). Network trouble → retryable SendError.

    `what` names the call in errors (a path, never a URL with credentials)."""
    hdrs = dict(headers or {})
    payload = data
    if body is not None:
        payload = dumps(body).encode("utf-8")
        hdrs["Content-Type"] = "application/json; charset=utf-8"
    try:
        async with session.request(method, url, data=payload, headers=hdrs, raise_for_status=False,
                                   timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
            raw = await resp.read()
            status, resp_headers = resp.status, resp.headers
    except TimeoutError:
        raise SendError(f"{what}: timed out after {seconds:g} s", retryable=True, code="timeout") from None
    except aiohttp.ClientError as exc:
        raise SendError(f"{what}: connection error ({type(exc).__name__})", retryable=True,
                        code="connection") from None
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, resp_headers


def _short(value: Any) -> str:
    return str(value)[:200]


def _errcode_error(what: str, status: int, data: Any, *, throttle_after: float | None = None) -> SendError | None:
    """Classify an oapi/webhook answer (HTTP 200 + errcode); None on success."""
    if status >= 500 or status == 429:
        return SendError(f"{what}: HTTP {status}", retryable=True, code=status)
    if not isinstance(data, dict) or not isinstance(data.get("errcode"), int):
        # a 200 without an errcode is a glitch (proxy page, truncated body); a 4xx is our request's fault
        return SendError(f"{what}: HTTP {status}, unexpected answer", retryable=status in (200, 408), code=status)
    errcode = data["errcode"]
    if errcode == 0:
        return None
    message = f"{what}: errcode {errcode} {_short(data.get('errmsg', ''))}"
    if errcode in THROTTLE_ERRCODES:
        return SendError(message, retryable=True, code=errcode, retry_after=throttle_after)
    return SendError(message, retryable=errcode in RETRYABLE_ERRCODES, code=errcode)


def _api_error(what: str, status: int, data: Any, headers: Mapping[str, str]) -> SendError | None:
    """Classify an api.dingtalk.com answer (HTTP status + {"code","message"}); None on success."""
    if 200 <= status < 300:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    message = data.get("message", "") if isinstance(data, dict) else ""
    text = f"{what}: HTTP {status} {code or ''} {_short(message)}".rstrip()
    throttled = status == 429 or code in THROTTLE_CODES or (
        isinstance(code, str) and ("throttl" in code.lower() or "toofast" in code.lower().replace(".", ""))
    )
    if throttled:
        return SendError(text, retryable=True, code=code or status, retry_after=_retry_after(headers))
    if status >= 500:
        return SendError(text, retryable=True, code=code or status)
    return SendError(text, retryable=False, code=code or status)


def _is_auth_error(status: int, data: Any) -> bool:
    code = data.get("code") if isinstance(data, dict) else None
    return status == 401 or (isinstance(code, str) and code.startswith(("InvalidAuthentication",
                                                                        "AuthenticationFailed")))


class DingTalkClient:
    """Enterprise internal app robot: sends to users (oToMessages/batchSend), groups (groupMessages/send),
    sessionWebhooks and interactive cards, with the app access token cached and refreshed under a lock.

    Target kinds: "user" (address = staff id), "group" (address = openConversationId), "session" (address =
    sessionWebhook URL, expires_at epoch ms), "robot" (delegated to `robots`, a DingTalkRobotClient)."""

    platform = "dingtalk"

    def __init__(self, session: aiohttp.ClientSession, app_key: str, app_secret: str, robot_code: str,
                 api_base: str = API_BASE, oapi_base: str = OAPI_BASE, *, card_template_id: str | None = None,
                 card_callback_route_key: str | None = None, robots: DingTalkRobotClient | None = None,
                 timeout: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self._session = session
        self._app_key = app_key
        self._app_secret = app_secret
        self.robot_code = robot_code
        self.api_base = api_base.rstrip("/")
        self.oapi_base = oapi_base.rstrip("/")
        self.card_template_id = card_template_id
        self.card_callback_route_key = card_callback_route_key
        self.robots = robots
        self.timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0  # how many times a token was requested (for tests and diagnostics)

    def __repr__(self) -> str:
        return f"DingTalkClient(app_key={self._app_key!r}, robot_code={self.robot_code!r}, api_base={self.api_base!r})"

    # -- access token -------------------------------------------------------------------------------------------

    async def access_token(self, stale: str | None = None) -> str:
        """The cached app access token; fetched when missing, near expiry, or equal to `stale` (rejected)."""
        async with self._token_lock:
            if self._token is not None and self._token != stale and self._clock() < self._token_expires:
                return self._token
            what = "POST /v1.0/oauth2/accessToken"
            self.token_fetches += 1
            status, data, headers = await _request(
                self._session, "POST", f"{self.api_base}/v1.0/oauth2/accessToken", self.timeout,
                body={"appKey": self._app_key, "appSecret": self._app_secret}, what=what)
            error = _api_error(what, status, data, headers)
            if error is not None:
                raise error
            if not isinstance(data, dict) or not isinstance(data.get("accessToken"), str):
                raise SendError(f"{what}: answer without accessToken", retryable=True, code="bad-response")
            try:
                expire_in = float(data.get("expireIn") or 7200)
            except (TypeError, ValueError):
                expire_in = 7200.0
            self._token = data["accessToken"]
            self._token_expires = self._clock() + expire_in - min(300.0, expire_in / 2)
            log.info("dingtalk access token refreshed (valid %.0f s)", expire_in)
            return self._token

    async def _api(self, method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Call api.dingtalk.com with the token header; on an auth error refresh once and retry once."""
        what = f"{method} {path}"
        stale: str | None = None
        for attempt in range(2):
            token = await self.access_token(stale=stale)
            status, data, headers = await _request(
                self._session, method, f"{self.api_base}{path}", self.timeout, body=body,
                headers={"x-acs-dingtalk-access-token": token}, what=what)
            if _is_auth_error(status, data):
                if attempt == 0:
                    log.info("%s: access token rejected, refreshing once", what)
                    stale = token
                    continue
                code = data.get("code") if isinstance(data, dict) else status
                raise SendError(f"{what}: access token rejected again after a refresh", retryable=True,
                                code=code or status)
            error = _api_error(what, status, data, headers)
            if error is not None:
                raise error
            return data if isinstance(data, dict) else {}
        raise AssertionError("unreachable")  # pragma: no cover

    async def upload_image(self, png: bytes, filename: str = "chart.png") -> str:
        """Upload a PNG (or JPEG) through oapi media/upload → media_id (usable as sampleImageMsg photoURL)."""
        what = "POST /media/upload"
        stale: str | None = None
        for attempt in range(2):
            token = await self.access_token(stale=stale)
            form = aiohttp.FormData()
            form.add_field("type", "image")
            jpeg = png.startswith(b"\xff\xd8")  # count evidence may be a JPEG photo
            form.add_field("media", png, filename=filename.replace(".png", ".jpg") if jpeg else filename,
                           content_type="image/jpeg" if jpeg else "image/png")
            url = URL(f"{self.oapi_base}/media/upload?access_token={quote_plus(token)}&type=image", encoded=True)
            status, data, _ = await _request(self._session, "POST", url, self.timeout, data=form, what=what)
            if isinstance(data, dict) and data.get("errcode") in TOKEN_ERRCODES and attempt == 0:
                log.info("%s: access token rejected, refreshing once", what)
                stale = token
                continue
            error = _errcode_error(what, status, data)
            if error is not None:
                raise error
            media_id = data.get("media_id") if isinstance(data, dict) else None
            if not isinstance(media_id, str) or not media_id:
                raise SendError(f"{what}: answer without media_id", retryable=True, code="bad-response")
            return media_id
        raise AssertionError("unreachable")  # pragma: no cover

    async def download_file(self, download_code: str) -> tuple[bytes, str]:
        """A received picture's bytes and content type: robot/messageFiles/download turns the message's
        downloadCode (short-lived, tied to this robotCode) into a temporary downloadUrl, which is then fetched.
        SendError (permanent) for a file over DOWNLOAD_LIMIT bytes or an answer without a downloadUrl."""
        data = await self._api("POST", "/v1.0/robot/messageFiles/download",
                               {"downloadCode": download_code, "robotCode": self.robot_code})
        url = data.get("downloadUrl")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise SendError("messageFiles/download: answer without downloadUrl", retryable=False, code="bad-response")
        what = "GET downloadUrl"  # the URL is signed: never logged
        try:
            async with self._session.get(URL(url, encoded=True), timeout=aiohttp.ClientTimeout(total=self.timeout),
                                         raise_for_status=False) as resp:
                status, content_type = resp.status, resp.content_type
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > DOWNLOAD_LIMIT:
                        raise SendError(f"{what}: file over {DOWNLOAD_LIMIT} bytes", retryable=False,
                                        code="too_large")
                    chunks.append(chunk)
        except TimeoutError:
            raise SendError(f"{what}: timed out after {self.timeout:g} s", retryable=True, code="timeout") from None
        except aiohttp.ClientError as exc:
            raise SendError(f"{what}: connection error ({type(exc).__name__})", retryable=True,
                            code="connection") from None
        if status != 200:
            raise SendError(f"{what}: HTTP {status}", retryable=status >= 500 or status == 429, code=status)
        return b"".join(chunks), content_type

    async def register_card_callback(self, callback_url: str, api_secret: str, route_key: str | None = None,
                                     *, force_update: bool = True) -> None:
        """Register the HTTP callback URL for card clicks under a route key (cards created later use it)."""
        key = route_key or self.card_callback_route_key
        if not key:
            raise ValueError("a callback route key is needed")
        await self._api("POST", "/v1.0/card/callbacks/register", {
            "callbackRouteKey": key, "callbackUrl": callback_url, "apiSecret": api_secret,
            "forceUpdate": force_update})
        self.card_callback_route_key = key

    # -- sending ------------------------------------------------------------------------------------------------

    async def send(self, target: Target, message: Message) -> Delivered | None:
        """Deliver one message (splitting over-long text); SendError when it cannot. For an interactive card: its
        outTrackId (None for a card that went as text: no card template, or a webhook)."""
        if target.platform != "dingtalk":
            raise SendError(f"target platform {target.platform!r} is not dingtalk", retryable=False, code="target")
        if target.kind == "robot":
            if self.robots is None:
                raise SendError("no DingTalk custom robots configured", retryable=False, code="unknown-robot")
            await self.robots.send(target, message)
        elif target.kind == "session":
            if target.fallback is not None and self._via_fallback(target, message):
                return await self._send_openapi(target.fallback, message)
            await self._send_session(target, message)
        else:
            return await self._send_openapi(target, message)
        return None

    async def _send_openapi(self, target: Target, message: Message) -> Delivered | None:
        if message.kind == "card" and self.card_template_id:
            if message.card_id:
                await self._update_card(message)
                return Delivered(message.card_id)
            return Delivered(await self._create_card(target, message))
        if message.kind == "image":
            caption = "\n".join(x for x in (message.title, message.text) if x)
            media_id = await self.upload_image(message.png or b"")
            if caption:
                await self._robot_message(target, "sampleText", {"content": caption})
            await self._robot_message(target, "sampleImageMsg", {"photoURL": media_id})
            return
        key, params = openapi_params(message)
        for param in params:
            await self._robot_message(target, key, param)

    async def _robot_message(self, target: Target, msg_key: str, param: Mapping[str, Any]) -> None:
        body: dict[str, Any] = {"robotCode": self.robot_code, "msgKey": msg_key, "msgParam": dumps(param)}
        if target.kind == "user":
            body["userIds"] = [target.address]
            data = await self._api("POST", "/v1.0/robot/oToMessages/batchSend", body)
            for field, retryable in (("flowControlledStaffIdList", True), ("invalidStaffIdList", False),
                                     ("filteredStaffIdList", False)):
                if target.address in (data.get(field) or ()):
                    raise SendError(f"batchSend: user in {field}", retryable=retryable, code=field)
        elif target.kind == "group":
            body["openConversationId"] = target.address
            await self._api("POST", "/v1.0/robot/groupMessages/send", body)
        else:
            raise SendError(f"target kind {target.kind!r} cannot take {msg_key}", retryable=False, code="target")

    async def _create_card(self, target: Target, message: Message) -> str:
        out_track_id = uuid.uuid4().hex
        body: dict[str, Any] = {
            "cardTemplateId": self.card_template_id,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": card_params(message)},
            "callbackType": "HTTP" if self.card_callback_route_key else "STREAM",
            "userIdType": 1,
        }
        if self.card_callback_route_key:
            body["callbackRouteKey"] = self.card_callback_route_key
        if target.kind == "group":
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{target.address}"
            body["imGroupOpenSpaceModel"] = {"supportForward": True}
            body["imGroupOpenDeliverModel"] = {"robotCode": self.robot_code}
        elif target.kind == "user":
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{target.address}"
            body["imRobotOpenSpaceModel"] = {"supportForward": True}
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT", "robotCode": self.robot_code}
        else:
            raise SendError(f"target kind {target.kind!r} cannot take a card", retryable=False, code="target")
        data = await self._api("POST", "/v1.0/card/instances/createAndDeliver", body)
        result = data.get("result") if isinstance(data.get("result"), dict) else {}
        for delivered in result.get("deliverResults") or ():
            if isinstance(delivered, dict) and delivered.get("success") is False:
                raise SendError(f"card deliver failed: {_short(delivered.get('errorMsg', ''))}", retryable=False,
                                code="deliver")
        log.info("dingtalk card %s delivered to a %s", out_track_id, target.kind)
        return out_track_id

    async def _update_card(self, message: Message) -> None:
        await self._api("PUT", "/v1.0/card/instances", {
            "outTrackId": message.card_id,
            "cardData": {"cardParamMap": card_params(message)},
            "cardUpdateOptions": {"updateCardDataByKey": True},
            "userIdType": 1,
        })

    def _via_fallback(self, target: Target, message: Message) -> bool:
        """Whether a reply meant for a session webhook goes to its fallback (the group or person, OpenAPI)
        instead: the webhook is about to expire; an image (as markdown `![](@lAD…)` it has been seen to show
        as raw text, so it goes as sampleImageMsg); or an interactive card (webhooks only carry its text)."""
        expiring = target.expires_at is not None and self._clock() * 1000 >= target.expires_at - SESSION_MARGIN_MS
        return expiring or message.kind == "image" or (message.kind == "card" and bool(self.card_template_id))

    async def _send_session(self, target: Target, message: Message) -> None:
        what = "POST /robot/sendBySession"
        if not target.address.startswith(f"{self.oapi_base}/robot/sendBySession?"):
            raise SendError(f"{what}: sessionWebhook not on {self.oapi_base}", retryable=False, code="session-url")
        if target.expires_at is not None and self._clock() * 1000 >= target.expires_at - SESSION_MARGIN_MS:
            raise SendError(f"{what}: sessionWebhook expired; send through the OpenAPI instead", retryable=False,
                            code="session-expired")
        if message.kind == "image":
            media_id = await self.upload_image(message.png or b"")
            title = message.title or "图片"
            text = "\n\n".join(x for x in (message.title, message.text) if x)
            md = f"{text}\n\n![{title}]({media_id})" if text else f"![{title}]({media_id})"
            bodies = [{"msgtype": "markdown", "markdown": {"title": title, "text": md}}]
        else:
            bodies = webhook_bodies(message)
        url = URL(target.address, encoded=True)
        for body in bodies:
            status, data, _ = await _request(self._session, "POST", url, self.timeout, body=body, what=what)
            error = _errcode_error(what, status, data)
            if error is not None:
                raise error


class DingTalkRobotClient:
    """Custom group robots (自定义机器人) by name: signed webhook sends, at most `per_minute` messages per robot
    per sliding minute (None = don't limit locally), and DingTalk's 10-minute block honoured after a throttle
    answer (130101 and friends → SendError(retryable=True, retry_after=600)).

    robots: {name: {"access_token": …, "secret": "SEC…" (optional when the robot uses keywords or an IP list),
    "keyword": one of the robot's security keywords (optional; added to every part that lacks it)}}."""

    platform = "dingtalk"

    def __init__(self, session: aiohttp.ClientSession, robots: Mapping[str, Mapping[str, str]],
                 oapi_base: str = OAPI_BASE, *, per_minute: int | None = 20, block_seconds: float = ROBOT_BLOCK_S,
                 timeout: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self._session = session
        self._robots = {name: dict(conf) for name, conf in robots.items()}
        for name, conf in self._robots.items():
            if not conf.get("access_token"):
                raise ValueError(f"dingtalk robot {name!r} has no access_token")
        self.oapi_base = oapi_base.rstrip("/")
        self.per_minute = per_minute
        self.block_seconds = block_seconds
        self.timeout = timeout
        self._clock = clock
        self._sent: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"DingTalkRobotClient(robots={sorted(self._robots)!r}, oapi_base={self.oapi_base!r})"

    def _url(self, conf: Mapping[str, str]) -> URL:
        url = f"{self.oapi_base}/robot/send?access_token={quote_plus(conf['access_token'])}"
        if conf.get("secret"):
            url += robot_sign_query(conf["secret"], int(self._clock() * 1000))
        return URL(url, encoded=True)

    def _take_slot(self, name: str) -> None:
        """Refuse locally while blocked or when the minute is full; otherwise count one send."""
        now = self._clock()
        blocked = self._blocked_until.get(name, 0.0)
        if now < blocked:
            raise SendError(f"dingtalk robot {name!r} is blocked by DingTalk", retryable=True, code="blocked",
                            retry_after=blocked - now)
        window = self._sent.setdefault(name, deque())
        while window and window[0] <= now - ROBOT_WINDOW_S:
            window.popleft()
        if self.per_minute is not None and len(window) >= self.per_minute:
            raise SendError(f"dingtalk robot {name!r}: {self.per_minute} messages in the last minute",
                            retryable=True, code="rate-limit", retry_after=window[0] + ROBOT_WINDOW_S - now)
        window.append(now)

    async def send(self, target: Target, message: Message) -> None:
        """Deliver one message to the robot named target.address; SendError when it cannot."""
        if target.platform != "dingtalk" or target.kind != "robot":
            raise SendError(f"target {target.platform}/{target.kind} is not a dingtalk robot", retryable=False,
                            code="target")
        conf = self._robots.get(target.address)
        if conf is None:
            raise SendError(f"unknown dingtalk robot {target.address!r}", retryable=False, code="unknown-robot")
        if message.kind == "image":  # webhooks cannot upload; their image URLs must be public
            caption = "\n".join(x for x in (message.title, message.text) if x)
            message = Message("text", text=(caption + "\n" if caption else "") + "（图表无法通过群机器人发送）")
        what = f"POST /robot/send [{target.address}]"
        for body in webhook_bodies(message, keyword=conf.get("keyword") or None):
            self._take_slot(target.address)
            status, data, _ = await _request(self._session, "POST", self._url(conf), self.timeout, body=body,
                                             what=what)
            error = _errcode_error(what, status, data, throttle_after=self.block_seconds)
            if error is not None:
                if error.code in THROTTLE_ERRCODES:
                    self._blocked_until[target.address] = self._clock() + self.block_seconds
                    log.warning("dingtalk robot %r throttled; blocked for %.0f s", target.address,
                                self.block_seconds)
                raise error
