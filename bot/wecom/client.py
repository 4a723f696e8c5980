"""WeCom API clients over aiohttp: the self-built app (text, markdown, image, template cards) and group robots."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json as jsonlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.transport import RESEND_WINDOW, Delivered, SendError
from cards import render
from cards.model import FILE_LIMIT, Message
from cards.split import split_utf8
from cards.wecom import (
    APP_MARKDOWN_LIMIT,
    ROBOT_MARKDOWN_LIMIT,
    TEXT_LIMIT,
    message_parts,
    news_article,
    with_title,
)
from core.messaging.targets import Target

__all__ = [
    "DEFAULT_API_BASE",
    "CardReceipt",
    "WeComClient",
    "WeComRobotClient",
    "WeComTransport",
    "is_retryable",
    "message_parts",
    "split_utf8",
]

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"

# errcodes meaning "the access token is bad": refresh once and retry once.
TOKEN_ERRORS = frozenset({40014, 41001, 42001})
# errcodes worth retrying later: system busy, API frequency / minute-interval / concurrency limits.
RETRYABLE_ERRORS = frozenset({-1, 45009, 45011, 45033})

APP_IMAGE_LIMIT = 10 * 1024 * 1024  # bytes, media/upload image
ROBOT_IMAGE_LIMIT = 2 * 1024 * 1024  # bytes, robot inline image (raw, before base64)
MIN_MEDIA = 6  # media/upload wants every file > 5 bytes
DOWNLOAD_LIMIT = APP_IMAGE_LIMIT  # bytes read at most of a received picture (media/get); larger is refused
MAX_BUTTONS = 6
BUTTON_KEY_LIMIT = 1024  # bytes
# Card text limits (title 36, subtitle 160, button 10, replace_name 20 characters) and the button style
# mapping live in cards/templates/wecom/.


def is_retryable(code: int | str | None) -> bool:
    """Whether a WeCom errcode (int) is worth retrying later; every other documented code is permanent."""
    return code in RETRYABLE_ERRORS


def _check_buttons(message: Message) -> None:
    """SendError (permanent) unless the card has 1..6 buttons with unique, non-empty keys of ≤ 1024 bytes."""
    if not message.buttons or len(message.buttons) > MAX_BUTTONS:
        raise SendError(f"wecom card: {len(message.buttons)} buttons (1..{MAX_BUTTONS})",
                        retryable=False, code="bad_card")
    keys = [b.key for b in message.buttons]
    if len(set(keys)) != len(keys) or any(not k or len(k.encode()) > BUTTON_KEY_LIMIT for k in keys):
        raise SendError("wecom card: button keys must be unique, non-empty, ≤ 1024 bytes",
                        retryable=False, code="bad_card")


def _image_type(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xff\xd8"):
        return "image.jpg", "image/jpeg"
    return "image.png", "image/png"


def _file_type(filename: str) -> str:
    if filename.lower().endswith(".xlsx"):
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    if filename.lower().endswith(".csv"):
        return "text/csv"
    return "application/octet-stream"


def _errcode(where: str, payload: dict[str, Any]) -> int:
    try:
        return int(payload.get("errcode", 0))
    except (TypeError, ValueError):
        raise SendError(f"wecom {where}: malformed errcode", retryable=True, code="bad_response") from None


def _fail(where: str, code: int, payload: Mapping[str, Any]) -> SendError:
    retryable = is_retryable(code)
    errmsg = str(payload.get("errmsg", ""))[:200]
    log.warning("wecom %s failed: errcode=%s retryable=%s", where, code, retryable)
    return SendError(f"wecom {where}: errcode {code} {errmsg}".rstrip(), retryable=retryable, code=code)


async def _read_capped(resp: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
    """The body, read in chunks; SendError (permanent) as soon as it exceeds `limit` bytes."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise SendError(f"wecom {where}: file over {limit} bytes", retryable=False, code="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class CardReceipt:
    """What message/send returns for an interactive card: the task_id we gave it, WeCom's msgid (for
    recall) and the response_code (usable once, within 72 h, to update the card without a click)."""

    task_id: str
    msgid: str | None
    response_code: str | None


class _Api:
    """The HTTP plumbing both clients share: one request, transport failures and HTTP status mapped to
    SendError, JSON decoded. Never puts URLs (which carry the token, secret or robot key) into errors/logs."""

    def __init__(self, session: aiohttp.ClientSession, api_base: str, timeout: float) -> None:
        self._session = session
        self.api_base = api_base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _request(self, method: str, path: str, where: str, *, params: Mapping[str, str],
                       json: Any = None, form: Callable[[], aiohttp.FormData] | None = None) -> dict[str, Any]:
        try:
            async with self._session.request(
                method, self.api_base + path, params=params, json=json,
                data=form() if form is not None else None, timeout=self._timeout,
            ) as resp:
                status = resp.status
                body = await resp.read()
        except TimeoutError:
            log.warning("wecom %s: timed out", where)
            raise SendError(f"wecom {where}: timed out", retryable=True, code="timeout") from None
        except aiohttp.ClientError as exc:
            log.warning("wecom %s: %s", where, type(exc).__name__)
            raise SendError(f"wecom {where}: {type(exc).__name__}", retryable=True, code="connection") from None
        if status != 200:
            retryable = status >= 500 or status == 429
            log.warning("wecom %s: HTTP %s", where, status)
            raise SendError(f"wecom {where}: HTTP {status}", retryable=retryable, code=status)
        try:
            payload = jsonlib.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise SendError(f"wecom {where}: response is not a JSON object", retryable=True, code="bad_response")
        return payload


class WeComClient(_Api):
    """The self-built app's API: access token cached and refreshed under a lock, message/send for text,
    markdown, image, file and template_card (button_interaction), update_template_card, media/upload.

    Implements the Transport protocol for Target(kind="user") via send(); raises SendError(retryable=…)."""

    platform = "wecom"

    def __init__(self, session: aiohttp.ClientSession, corp_id: str, agent_id: int, secret: str,
                 api_base: str = DEFAULT_API_BASE, *, timeout: float = 10.0, refresh_margin: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(session, api_base, timeout)
        self.corp_id = corp_id
        self.agent_id = int(agent_id)
        self._secret = secret
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never show the secret or token
        return f"WeComClient(corp_id={self.corp_id!r}, agent_id={self.agent_id})"

    # -- access token ------------------------------------------------------------------------------------

    def _valid_token(self) -> str | None:
        if self._token is not None and self._clock() < self._token_expires:
            return self._token
        return None

    async def access_token(self) -> str:
        """The cached access token, fetched with gettoken when missing or about to expire (one fetch at a
        time: concurrent callers wait on the lock and reuse the result)."""
        token = self._valid_token()
        if token is not None:
            return token
        async with self._lock:
            token = self._valid_token()
            if token is not None:
                return token
            payload = await self._request("GET", "/cgi-bin/gettoken", "gettoken",
                                          params={"corpid": self.corp_id, "corpsecret": self._secret})
            code = _errcode("gettoken", payload)
            if code != 0:
                raise _fail("gettoken", code, payload)
            token = payload.get("access_token")
            if not isinstance(token, str) or not token:
                raise SendError("wecom gettoken: no access_token", retryable=True, code="bad_response")
            try:
                expires_in = float(payload.get("expires_in", 7200))
            except (TypeError, ValueError):
                expires_in = 7200.0
            self._token = token
            self._token_expires = self._clock() + max(0.0, expires_in - self._refresh_margin)
            log.info("wecom: access token refreshed (expires in %.0f s)", expires_in)
            return token

    def _invalidate(self, token: str) -> None:
        # Only drop the token that failed: a concurrent caller may already have fetched a new one.
        if self._token == token:
            self._token = None

    async def _api(self, where: str, path: str, *, json: Any = None,
                   form: Callable[[], aiohttp.FormData] | None = None,
                   params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One authenticated call. On 40014/41001/42001 the token is refreshed once and the call retried
        once; a second token error is a (retryable) SendError — never a loop."""
        for attempt in (1, 2):
            token = await self.access_token()
            payload = await self._request("POST", path, where, params={**(params or {}), "access_token": token},
                                          json=json, form=form)
            code = _errcode(where, payload)
            if code in TOKEN_ERRORS:
                self._invalidate(token)
                if attempt == 1:
                    log.info("wecom %s: access token rejected (errcode %s), refreshing once", where, code)
                    continue
                log.warning("wecom %s: access token rejected again after a refresh (errcode %s)", where, code)
                raise SendError(f"wecom {where}: access token rejected after refresh (errcode {code})",
                                retryable=True, code=code)
            if code != 0:
                raise _fail(where, code, payload)
            return payload
        raise AssertionError("unreachable")

    async def create_menu(self, buttons: list[dict[str, Any]]) -> None:
        """Install the app's menu (menu/create for this agent; replaces the menu there was)."""
        await self._api("menu/create", "/cgi-bin/menu/create", json={"button": buttons},
                        params={"agentid": str(self.agent_id)})

    # -- Transport ---------------------------------------------------------------------------------------

    async def send(self, target: Target, message: Message) -> Delivered | None:
        """Deliver one neutral message to one app user (target.kind "user"), one call per message_parts
        part: over-long text/markdown goes as several messages; an image's title goes first as a text; a
        card without buttons goes as markdown; a card with card_id (a response_code) updates that card in
        place, and when WeCom refuses the update for good (code used or older than 72 h) the card is sent
        afresh instead. For a card: the handle it left (an update spends its code; a new card's code is
        fresh), None when it went as markdown."""
        if target.platform != "wecom" or target.kind != "user" or not target.address:
            raise SendError(f"wecom app cannot send to {target.kind!r}", retryable=False, code="bad_target")
        delivered = None
        for part in message_parts(target, message):
            delivered = await self._send_part(target.address, part)
        return delivered

    async def _send_part(self, user: str, message: Message) -> Delivered | None:
        if message.kind == "text":
            await self.send_text(user, with_title(message, bold=False))
        elif message.kind == "markdown":
            await self.send_markdown(user, with_title(message, bold=True))
        elif message.kind == "image":
            if message.title:
                await self.send_text(user, message.title)
            await self.send_image(user, message.png or b"")
        elif message.kind == "link":
            await self._message(user, "news", {"articles": [news_article(message)]})
        elif message.kind == "file":
            await self.send_file(user, message.data or b"", message.filename)
        elif message.card_id and await self._try_update(user, message.card_id, message):
            return Delivered(message.card_id, spent=True)
        elif message.buttons:
            receipt = await self.send_card(user, message)
            return Delivered(receipt.response_code) if receipt.response_code else None
        else:
            await self.send_markdown(user, render.card_markdown(message, "wecom"))
        return None

    async def _try_update(self, user: str, response_code: str, message: Message) -> bool:
        """Update the card in place; False (send a new one) when WeCom refuses it permanently."""
        try:
            await self.update_card(user, response_code, message)
        except SendError as exc:
            if exc.retryable:
                raise
            log.info("wecom update_template_card refused (code %s): sending the card afresh", exc.code)
            return False
        return True

    # -- message kinds -----------------------------------------------------------------------------------

    async def _message(self, user: str, msgtype: str, body: dict[str, Any]) -> dict[str, Any]:
        data = {"touser": user, "msgtype": msgtype, "agentid": self.agent_id, msgtype: body}
        window = RESEND_WINDOW.get()
        if window:  # a re-send: WeCom drops it if an identical message reached the user since the first try
            data.update(enable_duplicate_check=1, duplicate_check_interval=window)
        payload = await self._api(f"message/send {msgtype}", "/cgi-bin/message/send", json=data)
        for field in ("invaliduser", "unlicenseduser"):
            listed = payload.get(field)
            if isinstance(listed, str) and user.lower() in listed.lower().split("|"):
                log.warning("wecom message/send: recipient listed in %s", field)
                raise SendError(f"wecom message/send: recipient is in {field}", retryable=False, code=field)
        return payload

    async def send_text(self, user: str, content: str) -> None:
        """A text message, split on UTF-8 boundaries into pieces of ≤ 2048 bytes."""
        if not content.strip():
            raise SendError("wecom text: empty content", retryable=False, code=44004)
        for part in split_utf8(content, TEXT_LIMIT):
            await self._message(user, "text", {"content": part})

    async def send_markdown(self, user: str, content: str) -> None:
        """A markdown message, split into pieces of ≤ 2048 bytes (the app limit; robots allow 4096)."""
        if not content.strip():
            raise SendError("wecom markdown: empty content", retryable=False, code=44004)
        for part in split_utf8(content, APP_MARKDOWN_LIMIT):
            await self._message(user, "markdown", {"content": part})

    async def download_media(self, media_id: str) -> tuple[bytes, str]:
        """media/get: a received picture's bytes and content type by the MediaId of its callback (valid 3 days).
        A JSON answer is an error (40007: unknown or expired media_id); a token error is refreshed once. SendError
        (permanent) for a file over DOWNLOAD_LIMIT bytes."""
        where = "media/get"
        for attempt in (1, 2):
            token = await self.access_token()
            try:
                async with self._session.get(self.api_base + "/cgi-bin/media/get", timeout=self._timeout,
                                             params={"access_token": token, "media_id": media_id}) as resp:
                    status, content_type = resp.status, resp.content_type
                    body = await _read_capped(resp, DOWNLOAD_LIMIT, where)
            except TimeoutError:
                raise SendError(f"wecom {where}: timed out", retryable=True, code="timeout") from None
            except aiohttp.ClientError as exc:
                raise SendError(f"wecom {where}: {type(exc).__name__}", retryable=True, code="connection") from None
            if status != 200:
                raise SendError(f"wecom {where}: HTTP {status}", retryable=status >= 500 or status == 429, code=status)
            if content_type not in ("application/json", "text/plain"):
                return body, content_type
            try:
                payload = jsonlib.loads(body)
            except ValueError:
                raise SendError(f"wecom {where}: unreadable answer", retryable=True, code="bad_response") from None
            code = _errcode(where, payload if isinstance(payload, dict) else {})
            if code in TOKEN_ERRORS and attempt == 1:
                self._invalidate(token)
                continue
            raise _fail(where, code or -1, payload if isinstance(payload, dict) else {})
        raise AssertionError("unreachable")

    async def upload_image(self, data: bytes) -> str:
        """media/upload type=image (multipart part `media`); returns the media_id (valid 3 days)."""
        if len(data) < MIN_MEDIA or len(data) > APP_IMAGE_LIMIT:
            raise SendError(f"wecom media/upload: image of {len(data)} bytes", retryable=False, code=40006)
        filename, content_type = _image_type(data)

        def form() -> aiohttp.FormData:
            fd = aiohttp.FormData()
            fd.add_field("media", data, filename=filename, content_type=content_type)
            return fd

        payload = await self._api("media/upload", "/cgi-bin/media/upload", form=form, params={"type": "image"})
        media_id = payload.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise SendError("wecom media/upload: no media_id", retryable=True, code="bad_response")
        return media_id

    async def upload_file(self, data: bytes, filename: str) -> str:
        """media/upload type=file (6 B – 20 MB, multipart part `media` with its file name); the media_id (3 days)."""
        if len(data) < MIN_MEDIA or len(data) > FILE_LIMIT:
            raise SendError(f"wecom media/upload: file of {len(data)} bytes", retryable=False, code=40006)

        def form() -> aiohttp.FormData:  # the file name as UTF-8, not percent-encoded (WeCom shows it as sent)
            fd = aiohttp.FormData(quote_fields=False)
            fd.add_field("media", data, filename=filename, content_type=_file_type(filename))
            return fd

        payload = await self._api("media/upload", "/cgi-bin/media/upload", form=form, params={"type": "file"})
        media_id = payload.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise SendError("wecom media/upload: no media_id", retryable=True, code="bad_response")
        return media_id

    async def send_file(self, user: str, data: bytes, filename: str) -> None:
        """Upload the file, then send it as a file message (the member downloads it in WeCom)."""
        media_id = await self.upload_file(data, filename)
        await self._message(user, "file", {"media_id": media_id})

    async def send_image(self, user: str, data: bytes) -> None:
        """Upload the PNG/JPG, then send it as an image message."""
        media_id = await self.upload_image(data)
        await self._message(user, "image", {"media_id": media_id})

    def template_card(self, message: Message, task_id: str) -> dict[str, Any]:
        """The `template_card` of card_type button_interaction for a neutral card with buttons (rendered by
        cards/templates/wecom/template_card.json.j2 after the button checks)."""
        _check_buttons(message)
        return render.wecom_template_card(message, task_id)

    async def send_card(self, user: str, message: Message) -> CardReceipt:
        """Send a button_interaction template card with a fresh task_id; the receipt carries WeCom's
        response_code (one update without a click)."""
        task_id = f"jxc_{uuid.uuid4().hex}"
        payload = await self._message(user, "template_card", self.template_card(message, task_id))
        msgid, code = payload.get("msgid"), payload.get("response_code")
        return CardReceipt(task_id, str(msgid) if msgid else None, str(code) if code else None)

    async def update_card(self, user: str, response_code: str, message: Message) -> None:
        """update_template_card with a response_code (single use, 72 h) for this user's card. With buttons
        the whole card is replaced (a new task_id); without, its buttons are greyed out and relabelled
        with the title (or the first line of the text)."""
        if message.buttons:
            _check_buttons(message)
        data = render.wecom_card_update(message, user=user, agent_id=self.agent_id, response_code=response_code,
                                        task_id=f"jxc_{uuid.uuid4().hex}")
        await self._api("update_template_card", "/cgi-bin/message/update_template_card", json=data)


class WeComRobotClient(_Api):
    """Group robots (群机器人) by configured name → webhook key: text (2048 B), markdown (4096 B), image as
    base64 + md5 (≤ 2 MB raw), news, file (upload_media, ≤ 20 MB). Cards become markdown (robots cannot carry
    callback buttons)."""

    platform = "wecom"

    def __init__(self, session: aiohttp.ClientSession, robots: Mapping[str, str],
                 api_base: str = DEFAULT_API_BASE, *, timeout: float = 10.0) -> None:
        super().__init__(session, api_base, timeout)
        self._robots = dict(robots)

    def __repr__(self) -> str:  # never show the keys
        return f"WeComRobotClient(robots={sorted(self._robots)!r})"

    async def send(self, target: Target, message: Message) -> None:
        """Deliver one neutral message to the robot named target.address."""
        if target.platform != "wecom" or target.kind != "robot":
            raise SendError(f"wecom robot cannot send to {target.kind!r}", retryable=False, code="bad_target")
        name = target.address
        if name not in self._robots:
            raise SendError(f"wecom robot {name!r} is not configured", retryable=False, code="unknown_robot")
        for part in message_parts(target, message):
            if part.kind == "text":
                await self.send_text(name, with_title(part, bold=False))
            elif part.kind == "image":
                if part.title:
                    await self.send_text(name, part.title)
                await self.send_image(name, part.png or b"")
            elif part.kind == "markdown":
                await self.send_markdown(name, with_title(part, bold=True))
            elif part.kind == "link":
                await self.send_news(name, [news_article(part)])
            elif part.kind == "file":
                await self.send_file(name, part.data or b"", part.filename)
            else:  # a card: no callback buttons on robots (the app sends approval cards)
                await self.send_markdown(name, render.card_markdown(part, "wecom"))

    async def _post(self, name: str, payload: dict[str, Any]) -> None:
        where = f"webhook/send {payload['msgtype']}"
        result = await self._request("POST", "/cgi-bin/webhook/send", where, params={"key": self._robots[name]},
                                     json=payload)
        code = _errcode(where, result)
        if code != 0:
            raise _fail(where, code, result)

    async def send_text(self, name: str, content: str) -> None:
        """A text message, split into pieces of ≤ 2048 bytes."""
        if not content.strip():
            raise SendError("wecom robot text: empty content", retryable=False, code=44004)
        for part in split_utf8(content, TEXT_LIMIT):
            await self._post(name, {"msgtype": "text", "text": {"content": part}})

    async def send_markdown(self, name: str, content: str) -> None:
        """A markdown message, split into pieces of ≤ 4096 bytes."""
        if not content.strip():
            raise SendError("wecom robot markdown: empty content", retryable=False, code=44004)
        for part in split_utf8(content, ROBOT_MARKDOWN_LIMIT):
            await self._post(name, {"msgtype": "markdown", "markdown": {"content": part}})

    async def send_image(self, name: str, data: bytes) -> None:
        """An inline image: base64 of the raw bytes and the hex md5 of the raw bytes (≤ 2 MB raw)."""
        if not data or len(data) > ROBOT_IMAGE_LIMIT:
            raise SendError(f"wecom robot image: {len(data)} bytes (max {ROBOT_IMAGE_LIMIT})",
                            retryable=False, code=40009)
        await self._post(name, {"msgtype": "image", "image": {
            "base64": base64.b64encode(data).decode("ascii"), "md5": hashlib.md5(data).hexdigest()}})

    async def send_file(self, name: str, data: bytes, filename: str) -> None:
        """webhook/upload_media type=file (6 B – 20 MB; the media_id is this robot's, 3 days), then a file message."""
        if len(data) < MIN_MEDIA or len(data) > FILE_LIMIT:
            raise SendError(f"wecom robot file: {len(data)} bytes (max {FILE_LIMIT})", retryable=False, code=40006)

        def form() -> aiohttp.FormData:  # the file name as UTF-8, not percent-encoded (WeCom shows it as sent)
            fd = aiohttp.FormData(quote_fields=False)
            fd.add_field("media", data, filename=filename, content_type=_file_type(filename))
            return fd

        where = "webhook/upload_media"
        result = await self._request("POST", "/cgi-bin/webhook/upload_media", where,
                                     params={"key": self._robots[name], "type": "file"}, form=form)
        code = _errcode(where, result)
        if code != 0:
            raise _fail(where, code, result)
        media_id = result.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise SendError(f"wecom {where}: no media_id", retryable=True, code="bad_response")
        await self._post(name, {"msgtype": "file", "file": {"media_id": media_id}})

    async def send_news(self, name: str, articles: list[Mapping[str, str]]) -> None:
        """A news message: 1..8 articles of {title, description, url, picurl}."""
        if not 1 <= len(articles) <= 8:
            raise SendError("wecom robot news: 1..8 articles", retryable=False, code="bad_news")
        await self._post(name, {"msgtype": "news", "news": {"articles": [dict(a) for a in articles]}})


class WeComTransport:
    """The Transport for platform "wecom": kind "user" → the app client, kind "robot" → the robot client."""

    platform = "wecom"

    def __init__(self, app: WeComClient | None, robots: WeComRobotClient | None) -> None:
        self.app = app
        self.robots = robots

    async def send(self, target: Target, message: Message) -> Delivered | None:
        """Route by target.kind; SendError(permanent) for kinds WeCom is not configured for. The app's card
        handle (robots' messages cannot be updated: None)."""
        if target.kind == "user" and self.app is not None:
            return await self.app.send(target, message)
        if target.kind == "robot" and self.robots is not None:
            await self.robots.send(target, message)
            return None
        raise SendError(f"wecom cannot send to {target.kind!r}", retryable=False, code="bad_target")
