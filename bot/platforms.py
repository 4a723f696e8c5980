"""WeCom and DingTalk wiring: their config sections, callback routes, outbox transports and picture downloads."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
from aiohttp import web

from bot import approve_links
from bot.dingtalk import callback as dt_callback
from bot.dingtalk.client import DingTalkClient, DingTalkRobotClient
from bot.dingtalk.sign import CallbackRejected as DingTalkRejected
from bot.dingtalk.sign import verify_shared_token
from bot.dingtalk.stream import StreamClient
from bot.dispatch import console_picture
from bot.inbound import Inbound
from bot.tasks import TaskTracker
from bot.transport import SendError
from bot.wecom.callback import parse_inbound
from bot.wecom.client import WeComClient, WeComRobotClient, WeComTransport
from bot.wecom.crypto import CallbackCrypto
from bot.wecom.crypto import CallbackRejected as WeComRejected
from bot.wecom.longconn import DEFAULT_WS_URL, LongConnClient, LongConnTransport
from core.config import ConfigError, Settings
from core.errors import DomainError
from handlers.registry import Picture

log = logging.getLogger(__name__)

DINGTALK_STREAM = web.AppKey("dingtalk_stream", StreamClient)
WECOM_LONGCONN = web.AppKey("wecom_longconn", LongConnClient)
Accept = Callable[[Inbound], Awaitable[bool]]
Download = Callable[[str], Awaitable[tuple[bytes, str]]]
AibotDownload = Callable[[str, str], Awaitable[tuple[bytes, str]]]  # (url, aeskey) of a robot's picture
PICTURE_KEYS = MappingProxyType({"wecom": "media_id", "dingtalk": "download_code"})  # Inbound.image's reference


class PictureFetchers:
    """The dispatcher's fetch_picture: a picture message's bytes by the reference its Inbound carries — WeCom's
    MediaId (media/get), DingTalk's downloadCode (robot/messageFiles/download), the console's inline base64, the
    WeCom intelligent robot's url + per-message aeskey (`aibot`, set by wecom_longconn_ctx).
    The platform clients register their download once they exist (transports_ctx, at start-up)."""

    def __init__(self) -> None:
        self.downloads: dict[str, Download] = {}
        self.aibot: AibotDownload | None = None

    async def __call__(self, event: Inbound) -> Picture:
        """The picture of `event`; DomainError (said to the sender) when it cannot be downloaded."""
        assert event.image is not None
        if event.platform == "console":
            return await console_picture(event)
        download, ref = self.downloads.get(event.platform), event.image.get(PICTURE_KEYS.get(event.platform, ""))
        url, aeskey, aibot = event.image.get("url"), event.image.get("aeskey"), self.aibot
        if event.platform == "wecom" and aibot is not None and isinstance(url, str) and isinstance(aeskey, str):
            ref = url  # the intelligent robot's picture: decrypted with its message's own key

            async def download(link: str) -> tuple[bytes, str]:
                return await aibot(link, aeskey)
        if download is None or not isinstance(ref, str) or not ref:
            raise DomainError("NO_PICTURE", "收到图片，但无法下载它",
                              "请稍后重新发送；如一直如此，请联系管理员检查应用配置")
        try:
            data, content_type = await download(ref)
        except SendError as e:
            log.warning("%s picture download failed: %s", event.platform, e.code)
            if e.code == "too_large":
                raise DomainError("PHOTO_TOO_BIG", "图片太大，无法接收", "请压缩或截图后重新发送") from None
            raise DomainError("PICTURE_DOWNLOAD", "图片下载失败", "请重新发送这张图片") from None
        return Picture(data, content_type)


@dataclass(frozen=True)
class WeComConfig:
    """[wecom]: the self-built app (secrets from JXCBOT_WECOM_* environment variables) and [wecom.robots]; or,
    with mode "longconn", the intelligent robot (bot_id, its secret) over the long connection to ws_url."""

    corp_id: str
    agent_id: int
    secret: str = field(repr=False)
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)
    api_base: str = "https://qyapi.weixin.qq.com"
    robots: Mapping[str, str] = field(default_factory=dict, repr=False)
    mode: str = "callback"  # "callback": the self-built app's HTTP callback; "longconn": the intelligent robot
    bot_id: str = ""
    ws_url: str = DEFAULT_WS_URL

    @property
    def has_app(self) -> bool:
        """False when only group robots are configured (no callbacks, no app messages)."""
        return bool(self.corp_id)

    @property
    def longconn(self) -> bool:
        """Messages arrive, and replies and pushes go, over the intelligent robot's long connection."""
        return self.mode == "longconn"


@dataclass(frozen=True)
class DingTalkConfig:
    """[dingtalk]: the enterprise app robot and [dingtalk.robots] (custom group robots)."""

    app_key: str
    app_secret: str = field(repr=False)
    robot_code: str = ""
    api_base: str = "https://api.dingtalk.com"
    oapi_base: str = "https://oapi.dingtalk.com"
    card_template_id: str | None = None
    card_callback_token: str | None = field(default=None, repr=False)
    robots: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    link_secret: str | None = field(default=None, repr=False)  # signs /approve/{token} links
    card_callback_route_key: str | None = None
    public_url: str = ""  # where DingTalk reaches this server, e.g. https://bot.example.com
    mode: str | None = None  # "stream" | "http" as configured; None: stream unless public_url is set

    @property
    def has_app(self) -> bool:
        """False when only custom group robots are configured (no callbacks, no OpenAPI)."""
        return bool(self.app_key)

    @property
    def stream(self) -> bool:
        """Events arrive over the Stream connection this server opens (no public URL needed), not by HTTP."""
        return self.has_app and (self.mode or ("http" if self.public_url else "stream")) == "stream"


def _str(section: str, table: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = table.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            env = f"JXCBOT_{section.upper()}_{key.upper()}"
            raise ConfigError(f"[{section}] {key}", f"缺少该项（也可用环境变量 {env} 提供）")
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ConfigError(f"[{section}] {key}", "必须是字符串")
    return str(value).strip()


def _url(section: str, table: Mapping[str, Any], key: str, default: str) -> str:
    """An http(s) base URL without a trailing slash (default when not set)."""
    value = _str(section, table, key, False).rstrip("/")
    if value and not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"[{section}] {key}", f"必须是以 https:// 或 http:// 开头的网址，例如 {default or 'https://bot.example.com'}")
    return value or default


_AES_KEY = re.compile(r"^[A-Za-z0-9]{43}$")
_WECOM_APP_KEYS = ("corp_id", "agent_id", "secret", "token", "encoding_aes_key")
_DINGTALK_APP_KEYS = ("app_key", "app_secret", "robot_code", "card_template_id", "card_callback_token", "link_secret",
                      "card_callback_route_key", "public_url", "api_base", "mode")
DINGTALK_MODES = ("stream", "http")


def wecom_config(raw: Mapping[str, Any]) -> WeComConfig | None:
    """The [wecom] section, or None when WeCom is not configured. Without corp_id only group robots are set up
    ([wecom.robots]); any other app key without corp_id is an error rather than WeCom silently switched off."""
    table = raw.get("wecom")
    if not isinstance(table, Mapping):
        return None
    robots = table.get("robots") or {}
    shape = '每个群机器人写成 名称 = "webhook key"'
    if not isinstance(robots, Mapping):
        raise ConfigError("[wecom.robots]", shape)
    for name, key in robots.items():
        if not (isinstance(key, str) and key.strip()):
            raise ConfigError(f"[wecom.robots] {name}", shape)
    api_base = _url("wecom", table, "api_base", WeComConfig.api_base)
    if _wecom_mode(table) == "longconn":
        return _wecom_longconn_config(table, api_base, robots)
    for key in ("bot_id", "ws_url"):
        if table.get(key) not in (None, ""):
            raise ConfigError(f"[wecom] {key}", '只在智能机器人长连接模式使用：请同时写 mode = "longconn"')
    if not table.get("corp_id"):
        if any(table.get(k) not in (None, "") for k in _WECOM_APP_KEYS):
            raise ConfigError("[wecom] corp_id", "缺少该项（企业微信管理后台「我的企业」页的企业ID）；"
                                                 "只用群机器人时只写 [wecom.robots]")
        return WeComConfig("", 0, "", "", "", api_base, dict(robots)) if robots else None  # robots only
    agent_value = table.get("agent_id")
    if isinstance(agent_value, bool | float):
        raise ConfigError("[wecom] agent_id", "必须是数字（应用详情页的 AgentId）")
    agent = _str("wecom", table, "agent_id")
    if not agent.isdigit():
        raise ConfigError("[wecom] agent_id", "必须是数字（应用详情页的 AgentId）")
    aes = _str("wecom", table, "encoding_aes_key")
    if not _AES_KEY.match(aes):
        raise ConfigError("[wecom] encoding_aes_key",
                          "必须是 43 个英文字母或数字（接收消息设置页的 EncodingAESKey，原样复制）")
    return WeComConfig(_str("wecom", table, "corp_id"), int(agent), _str("wecom", table, "secret"),
                       _str("wecom", table, "token"), aes, api_base, dict(robots))


WECOM_MODES = ("longconn", "callback")
_CALLBACK_ONLY = ("corp_id", "agent_id", "token", "encoding_aes_key")


def _wecom_mode(table: Mapping[str, Any]) -> str:
    """[wecom] mode: "longconn" or "callback" (any case); when not set, longconn if bot_id is given without
    corp_id, else callback (the self-built app, as before)."""
    value = _str("wecom", table, "mode", False).lower()
    if not value:
        return "longconn" if table.get("bot_id") and not table.get("corp_id") else "callback"
    if value not in WECOM_MODES:
        raise ConfigError("[wecom] mode", '必须是 "longconn"（智能机器人长连接，无需公网地址，推荐）或 "callback"'
                                          "（自建应用接收消息回调，需要公网 HTTPS 地址）")
    return value


def _wecom_longconn_config(table: Mapping[str, Any], api_base: str, robots: Mapping[str, str]) -> WeComConfig:
    """[wecom] mode = "longconn": bot_id and secret (JXCBOT_WECOM_SECRET) of the intelligent robot, ws_url
    (WeCom's by default); the self-built app's callback keys are refused rather than ignored."""
    for key in _CALLBACK_ONLY:
        if table.get(key) not in (None, ""):
            raise ConfigError(f"[wecom] {key}", '长连接模式（mode = "longconn"）不用该项：智能机器人只需 bot_id 和 '
                                                'secret；用自建应用接收消息回调请写 mode = "callback"')
    if not _str("wecom", table, "bot_id", False):
        raise ConfigError("[wecom] bot_id", "缺少该项（企业微信管理后台 → 智能机器人 → API 模式选「长连接」后"
                                            "显示的 Bot ID；也可用环境变量 JXCBOT_WECOM_BOT_ID 提供）")
    if not _str("wecom", table, "secret", False):
        raise ConfigError("[wecom] secret", "缺少该项（智能机器人长连接的 Secret，与 Bot ID 在同一页；"
                                            "建议用环境变量 JXCBOT_WECOM_SECRET 提供，不写进配置文件）")
    ws_url = _str("wecom", table, "ws_url", False).rstrip("/")
    if ws_url and not re.match(r"^wss?://[^/\s]+", ws_url):
        raise ConfigError("[wecom] ws_url", f"必须是以 wss:// 或 ws:// 开头的地址，默认 {DEFAULT_WS_URL}")
    return WeComConfig("", 0, _str("wecom", table, "secret"), "", "", api_base, dict(robots), mode="longconn",
                       bot_id=_str("wecom", table, "bot_id"), ws_url=ws_url or DEFAULT_WS_URL)


def dingtalk_config(raw: Mapping[str, Any]) -> DingTalkConfig | None:
    """The [dingtalk] section, or None when DingTalk is not configured. Without app_key only custom group robots
    are set up ([dingtalk.robots]); any other app key without app_key is an error."""
    table = raw.get("dingtalk")
    if not isinstance(table, Mapping):
        return None
    robots = table.get("robots") or {}
    shape = "每个群机器人写成 名称 = { access_token = \"…\", secret = \"SEC…\" }"
    if not isinstance(robots, Mapping):
        raise ConfigError("[dingtalk.robots]", shape)
    for name, robot in robots.items():
        if not isinstance(robot, Mapping) or not robot.get("access_token"):
            raise ConfigError(f"[dingtalk.robots] {name}", shape)
        for key in ("access_token", "secret", "keyword"):
            if key in robot and not isinstance(robot[key], str):
                raise ConfigError(f"[dingtalk.robots] {name}", f"{key} 必须是字符串（用引号括起来）。{shape}")
    oapi_base = _url("dingtalk", table, "oapi_base", DingTalkConfig.oapi_base)
    if not table.get("app_key"):
        if any(table.get(k) not in (None, "") for k in _DINGTALK_APP_KEYS):
            raise ConfigError("[dingtalk] app_key", "缺少该项（钉钉开发者后台应用凭证中的 AppKey/Client ID）；"
                                                    "只用群机器人时只写 [dingtalk.robots]")
        if not robots:
            return None
        return DingTalkConfig("", "", oapi_base=oapi_base, robots={k: dict(v) for k, v in robots.items()})
    return DingTalkConfig(
        _str("dingtalk", table, "app_key"), _str("dingtalk", table, "app_secret"),
        _str("dingtalk", table, "robot_code", False),
        _url("dingtalk", table, "api_base", DingTalkConfig.api_base),
        oapi_base,
        _str("dingtalk", table, "card_template_id", False) or None,
        _str("dingtalk", table, "card_callback_token", False) or None,
        {k: dict(v) for k, v in robots.items()},
        _str("dingtalk", table, "link_secret", False) or None,
        _str("dingtalk", table, "card_callback_route_key", False) or None,
        _url("dingtalk", table, "public_url", ""),
        _mode(table))


def _mode(table: Mapping[str, Any]) -> str | None:
    """[dingtalk] mode: "stream" or "http" (any case), None when not set."""
    value = _str("dingtalk", table, "mode", False).lower()
    if value and value not in DINGTALK_MODES:
        raise ConfigError("[dingtalk] mode", '必须是 "stream"（Stream 模式，无需公网地址，推荐）或 "http"'
                                             "（HTTP 回调，需要 public_url）")
    return value or None


def wecom_routes(cfg: WeComConfig, accept: Accept) -> list[web.RouteDef]:
    """GET (URL check, plaintext within 1 s) and POST (encrypted messages and card clicks) /wecom/callback."""
    crypto = CallbackCrypto(cfg.token, cfg.encoding_aes_key, cfg.corp_id)

    async def check(request: web.Request) -> web.Response:
        q = request.query
        try:
            plain = crypto.verify_url(q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""),
                                      q.get("echostr", ""))
        except WeComRejected as e:
            log.warning("wecom URL check rejected from %s: %s", request.remote, e.reason)
            return web.Response(status=403, text="rejected")
        return web.Response(text=plain)

    async def event(request: web.Request) -> web.Response:
        q = request.query
        body = await request.read()
        try:
            xml = crypto.decrypt_post(q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""), body)
            inbound = parse_inbound(xml)
        except WeComRejected as e:
            if e.reason == "replayed nonce":  # WeCom's own retry of a request already stored: acknowledge it
                return web.Response(text="")
            log.warning("wecom callback rejected from %s: %s", request.remote, e.reason)
            return web.Response(status=403 if "signature" in e.reason else 400, text="rejected")
        if inbound is not None:
            try:
                await accept(inbound)  # stored before we answer; a duplicate is answered the same way
            except Exception:
                # Not stored: let WeCom's retry of this very request through the replay guard, and say so.
                crypto.release(q.get("timestamp", ""), q.get("nonce", ""))
                log.exception("wecom callback could not be stored")
                return web.Response(status=503, text="try again")
        return web.Response(text="")

    return [web.get("/wecom/callback", check), web.post("/wecom/callback", event)]


def dingtalk_routes(cfg: DingTalkConfig, accept: Accept) -> list[web.RouteDef]:
    """POST /dingtalk/callback (signed robot messages) and /dingtalk/card-callback (card button clicks)."""

    async def message(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            inbound = dt_callback.read_message_callback(request.headers, body, cfg.app_secret,
                                                        robot_code=cfg.robot_code or None)
        except DingTalkRejected as e:
            log.warning("dingtalk callback rejected from %s: %s", request.remote, e.reason)
            return web.json_response({"error": "rejected"}, status=403 if "sign" in e.reason else 400)
        return await _accepted(inbound, accept, "dingtalk callback")

    async def card(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            if cfg.card_callback_token is None:
                raise DingTalkRejected("card callbacks are not configured ([dingtalk] card_callback_token)")
            verify_shared_token(request.query.get("token"), cfg.card_callback_token)
            inbound = dt_callback.read_card_callback(body)
        except DingTalkRejected as e:
            log.warning("dingtalk card callback rejected from %s: %s", request.remote, e.reason)
            return web.json_response({"error": "rejected"}, status=403)
        return await _accepted(inbound, accept, "dingtalk card callback")

    links = approve_links.routes(cfg.link_secret, accept) if cfg.link_secret else []
    return [web.post("/dingtalk/callback", message), web.post("/dingtalk/card-callback", card), *links]


async def _accepted(inbound: Inbound | None, accept: Accept, what: str) -> web.Response:
    """Store a verified DingTalk event and answer 200; 503 when it could not be stored (DingTalk retries)."""
    if inbound is not None:
        try:
            await accept(inbound)
        except Exception:
            log.exception("%s could not be stored", what)
            return web.json_response({"error": "try again"}, status=503)
    return web.json_response({})


async def _register_card_callback(client: DingTalkClient, cfg: DingTalkConfig) -> None:
    """Tell DingTalk where card clicks go (HTTP mode); without it cards are created but clicks reach nobody."""
    if cfg.stream:  # cards are created with callbackType STREAM: clicks come over the connection
        return
    if not (cfg.card_template_id and cfg.card_callback_route_key and cfg.public_url and cfg.card_callback_token):
        if cfg.card_template_id:
            log.warning("dingtalk cards configured without card_callback_route_key/public_url/card_callback_token: "
                        "card button clicks will not reach this server")
        return
    url = f"{cfg.public_url}/dingtalk/card-callback?token={cfg.card_callback_token}"
    try:
        await client.register_card_callback(url, cfg.card_callback_token, cfg.card_callback_route_key)
    except SendError as e:  # the server still runs; cards fall back to links/text until this works
        log.warning("dingtalk card callback registration failed (%s); card clicks will not arrive", e.code)


def transports_ctx(wecom: WeComConfig | None, dingtalk: DingTalkConfig | None,
                   register: Callable[[str, Any], None], pictures: PictureFetchers | None = None,
                   ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx: one aiohttp ClientSession for the platform clients, registered as outbox transports (and
    the app clients' downloads of received pictures in `pictures`)."""
    fetchers = pictures if pictures is not None else PictureFetchers()

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            if wecom is not None:
                app = WeComClient(session, wecom.corp_id, wecom.agent_id, wecom.secret, wecom.api_base) \
                    if wecom.has_app else None
                register("wecom", WeComTransport(
                    app, WeComRobotClient(session, wecom.robots, wecom.api_base) if wecom.robots else None))
                if app is not None:
                    fetchers.downloads["wecom"] = app.download_media
            if dingtalk is not None:
                robots = DingTalkRobotClient(session, dingtalk.robots, dingtalk.oapi_base) if dingtalk.robots else None
                if not dingtalk.has_app:  # custom group robots only
                    if robots is not None:
                        register("dingtalk", robots)
                else:
                    client = DingTalkClient(session, dingtalk.app_key, dingtalk.app_secret, dingtalk.robot_code,
                                            dingtalk.api_base, dingtalk.oapi_base,
                                            card_template_id=dingtalk.card_template_id,
                                            card_callback_route_key=None if dingtalk.stream
                                            else dingtalk.card_callback_route_key, robots=robots)
                    await _register_card_callback(client, dingtalk)
                    register("dingtalk", client)
                    fetchers.downloads["dingtalk"] = client.download_file
            yield

    return ctx


def dingtalk_stream_ctx(app: web.Application, cfg: DingTalkConfig, accept: Accept, tracker: TaskTracker,
                       ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx for [dingtalk] mode = "stream": the Stream client (app[DINGTALK_STREAM]) runs as a tracked
    task from start-up, its events stored through `accept` before their ack, and is stopped on shutdown (the acks
    of events being stored sent first)."""
    client = StreamClient(None, cfg.app_key, cfg.app_secret, accept, api_base=cfg.api_base,
                          robot_code=cfg.robot_code or None)
    app[DINGTALK_STREAM] = client

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        task = tracker.spawn(client.run(), name="dingtalk stream")
        yield
        await client.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10.0)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return ctx


def wecom_longconn_ctx(app: web.Application, cfg: WeComConfig, accept: Accept, tracker: TaskTracker,
                      transports: dict[str, Any], pictures: PictureFetchers,
                      ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx for [wecom] mode = "longconn": the intelligent robot's connection (app[WECOM_LONGCONN]) runs
    as a tracked task from start-up, its callbacks stored through `accept`; its outbox Transport (replies, card
    updates, pushes, and [wecom.robots]) is registered now, before the sender starts (a transport in `transports`
    already — tests — wins); it is stopped on shutdown, before the handler tasks are awaited."""
    client = LongConnClient(None, cfg.bot_id, cfg.secret, accept, url=cfg.ws_url)
    transport = LongConnTransport(client, robots_configured=bool(cfg.robots))
    app[WECOM_LONGCONN] = client
    transports.setdefault("wecom", transport)
    pictures.aibot = client.download_picture

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            client.session = session
            if cfg.robots:
                transport.robots = WeComRobotClient(session, cfg.robots, cfg.api_base)
            task = tracker.spawn(client.run(), name="wecom longconn")
            yield
            await client.stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), 10.0)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    return ctx


def people_platforms(settings: Settings, wecom: WeComConfig | None,
                     dingtalk: DingTalkConfig | None) -> frozenset[str]:
    """The platforms people are addressed on directly: WeCom and DingTalk when their app is configured (group
    robots alone reach channels, not people), the console when it is served."""
    served = {"console"} if settings.console_enabled else set()
    if wecom is not None and (wecom.has_app or wecom.longconn):
        served.add("wecom")
    if dingtalk is not None and dingtalk.has_app:
        served.add("dingtalk")
    return frozenset(served)
