"""Signed approval links, the DingTalk fallback when a card cannot call back: per user, expiring, single use."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from bot.inbound import Inbound

MAX_TOKEN = 1024

log = logging.getLogger(__name__)


class LinkRejected(Exception):
    """A link that is malformed, forged or expired (reason in English for the log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LinkClaim:
    """What a valid link says: who may use it, for which button key, until when; nonce makes it single use."""

    user_id: str
    action: str
    expires: int  # epoch seconds
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def make_token(secret: str, user_id: str, action: str, expires: datetime) -> str:
    """A token binding the user (a per-person link sent 1:1), the button key and the expiry."""
    payload = _b64(json.dumps({"u": user_id, "a": action, "e": int(expires.timestamp()),
                               "n": secrets.token_urlsafe(12)}, separators=(",", ":")).encode())
    return f"{payload}.{_sign(secret, payload)}"


def read_token(secret: str, token: str, now: datetime) -> LinkClaim:
    """The claim of a genuine, unexpired token; LinkRejected otherwise (constant-time signature check)."""
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise LinkRejected("malformed token")
    payload, sig = token.split(".")
    if not hmac.compare_digest(_sign(secret, payload), sig):
        raise LinkRejected("bad signature")
    try:
        data = json.loads(_unb64(payload))
        claim = LinkClaim(str(data["u"]), str(data["a"]), int(data["e"]), str(data["n"]))
    except (ValueError, KeyError, TypeError):
        raise LinkRejected("malformed payload") from None
    if claim.expires < now.timestamp():
        raise LinkRejected("expired")
    return claim


_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>jxcbot 审批</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font:16px/1.6 system-ui,sans-serif;max-width:32em;margin:2em auto;padding:0 1em">{body}</body></html>"""


def _page(body: str, status: int = 200) -> web.Response:
    return web.Response(text=_PAGE.format(body=body), status=status, content_type="text/html", charset="utf-8")


def routes(secret: str, accept: Callable[[Inbound], Awaitable[bool]],
           clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[web.RouteDef]:
    """GET shows a confirmation page (link previews and prefetchers change nothing); POST decides, once."""

    def claim_of(request: web.Request) -> LinkClaim | web.Response:
        try:
            return read_token(secret, request.match_info["token"], clock())
        except LinkRejected as e:
            if e.reason == "expired":
                return _page("<h2>链接已过期</h2><p>请回到钉钉，在最新的审批消息中重新操作。</p>", 410)
            return _page("<h2>链接无效</h2><p>请使用钉钉消息中的原始链接，不要修改或转发。</p>", 403)

    async def confirm(request: web.Request) -> web.Response:
        claim = claim_of(request)
        if isinstance(claim, web.Response):
            return claim
        return _page(f"<h2>确认操作</h2><p>操作：<b>{html.escape(claim.action)}</b></p>"
                     f"<p>有效期至 {datetime.fromtimestamp(claim.expires, UTC):%Y-%m-%d %H:%M} UTC，只能使用一次。</p>"
                     '<form method="post"><button type="submit" style="font-size:18px;padding:6px 24px">'
                     "确认</button></form>")

    async def decide(request: web.Request) -> web.Response:
        claim = claim_of(request)
        if isinstance(claim, web.Response):
            return claim
        event = Inbound("dingtalk", claim.user_id, f"link:{claim.nonce}", clock(), action=claim.action)
        try:
            new = await accept(event)
        except Exception:
            log.exception("approval link %s could not be stored", event.dedupe_key)
            return _page("<h2>暂时无法提交</h2><p>系统繁忙，操作没有生效。请稍后刷新本页面再点一次“确认”。</p>", 503)
        if not new:
            return _page("<h2>该链接已使用过</h2><p>操作不会重复执行，结果以钉钉中的通知为准。</p>", 409)
        return _page("<h2>已提交</h2><p>处理结果会通过钉钉通知你，可以关闭此页面。</p>")

    return [web.get("/approve/{token}", confirm), web.post("/approve/{token}", decide)]
