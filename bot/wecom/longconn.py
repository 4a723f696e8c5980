"""WeCom intelligent robot (智能机器人) long connection: an outbound WebSocket that receives messages and card clicks
and carries replies, card updates and pushes — no public URL needed (official document 智能机器人长连接).

The protocol, spoken with aiohttp (frames are JSON `{cmd, headers: {req_id}, body}`):

- connect to wss://openws.work.weixin.qq.com, send `aibot_subscribe` {bot_id, secret}; the answer is a frame with
  the same req_id and errcode 0;
- `ping` every 30 s (answered like the subscribe); two pings unanswered: the connection is dead, reconnect;
- WeCom pushes `aibot_msg_callback` (text, image with a per-message AES key, mixed, voice as text, file) and
  `aibot_event_callback` (template_card_event for a button click, enter_chat, feedback_event, and
  disconnected_event: a newer connection of the same robot replaced this one — stop, do not reconnect);
  each carries a `msgid` to deduplicate WeCom's repeated callbacks;
- answers go back on the callback's req_id: `aibot_respond_msg` (a stream message or a template card) for a
  message, `aibot_respond_update_msg` {response_type update_template_card, template_card with the clicked card's
  task_id} within 5 s of a click; `aibot_send_msg` {chatid, msgtype markdown | template_card | image | file}
  pushes at any time (chatid: a user's userid in 1:1, or the group's chatid); `aibot_upload_media_init/chunk/
  finish` upload an image or file in 512 KiB chunks for its media_id. Every frame we send is answered by a frame
  with its req_id and an errcode.

There is no separate acknowledgement of a callback: an event is stored (the dispatcher's accept) before any frame
about it goes back, and a callback WeCom sends again carries the same msgid, which dedupe_key is built from."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.inbound import Inbound
from bot.transport import Delivered, SendError
from bot.wecom.client import MAX_BUTTONS, RETRYABLE_ERRORS, WeComRobotClient
from cards import render
from cards.model import FILE_LIMIT, Message
from cards.split import split_utf8
from cards.wecom import message_parts, with_title
from core.messaging.targets import Target

__all__ = ["DEFAULT_WS_URL", "LongConnClient", "LongConnTransport", "decrypt_media", "parse_frame"]

log = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://openws.work.weixin.qq.com"
SUBSCRIBE, PING = "aibot_subscribe", "ping"
MSG_CALLBACK, EVENT_CALLBACK = "aibot_msg_callback", "aibot_event_callback"
RESPOND, RESPOND_UPDATE, SEND = "aibot_respond_msg", "aibot_respond_update_msg", "aibot_send_msg"
UPLOAD_INIT, UPLOAD_CHUNK, UPLOAD_FINISH = "aibot_upload_media_init", "aibot_upload_media_chunk", \
    "aibot_upload_media_finish"

HEARTBEAT = 30.0  # seconds between pings (the official SDKs' default)
MISSED_PINGS = 2  # unanswered pings after which the connection counts as dead (a black hole: noticed in ~80 s)
PING_TIMEOUT = 10.0  # seconds a ping waits for its answer
ACK_TIMEOUT = 5.0  # seconds a frame we send waits for its answer
AUTH_TIMEOUT = 10.0  # seconds the subscribe waits for its answer
BACKOFF_BASE, BACKOFF_MAX = 1.0, 30.0  # reconnect delay: base·2^n, at most max, jittered (the SDKs' 1 s → 30 s)
STABLE = 10.0  # seconds a subscribed connection must last for the backoff to start again from the base
REPLY_WINDOW = 300.0  # seconds a message callback's req_id is used for the reply (WeCom waits 6 min for a stream)
UPDATE_WINDOW = 4.5  # seconds a click's req_id can update the card (WeCom allows 5 s)
STREAM_LIMIT = 20480  # bytes of a stream reply's content
PUSH_MARKDOWN_LIMIT = 4096  # bytes of a pushed markdown message (as a group robot's)
CHUNK = 512 * 1024  # bytes per upload chunk; at most 100 chunks
MAX_CHUNKS = 100
IMAGE_LIMIT = 10 * 1024 * 1024  # bytes of an image (a stream reply's msg_item, an upload, a received picture)
MIN_MEDIA = 6  # uploads must be larger than 5 bytes
_MENTION = re.compile(r"^(?:@\S+\s*)+")


# -- callbacks → Inbound -------------------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def parse_frame(frame: Mapping[str, Any], *, now: datetime | None = None) -> Inbound | None:
    """A callback frame as the neutral Inbound, or None for what we acknowledge and ignore.

    - `aibot_msg_callback` text → Inbound(text) (in a group the leading @mention of the robot is dropped); voice →
      its transcription as text; mixed → its text items, or its first picture when it has no text; image →
      Inbound(image={"url", "aeskey"}) (downloaded and decrypted with that message's own key); file and others →
      None. dedupe_key `wecom:aibot:{userid}:{msgid}`.
    - `aibot_event_callback` template_card_event (a button click on a card this robot sent) →
      Inbound(action=event_key, reply card_id = the card's task_id), dedupe_key
      `wecom:aibot:{userid}:{msgid}`; other events (enter_chat, feedback_event, disconnected_event) → None.

    reply carries {"req_id", "event"} so that the answer goes back on this callback (message: a reply; click:
    the card update). chat_id is the group's chatid for a group message, None in a 1:1 chat. Malformed frames
    (no msgid, no sender, an unknown shape) → None, logged."""
    body = frame.get("body")
    req_id = (frame.get("headers") or {}).get("req_id") if isinstance(frame.get("headers"), Mapping) else None
    if not isinstance(body, Mapping) or not isinstance(req_id, str) or not req_id:
        return None
    sender = body.get("from")
    user = _text(sender.get("userid")) if isinstance(sender, Mapping) else None
    msgid = _text(body.get("msgid"))
    if user is None or msgid is None:
        log.warning("wecom longconn: %s without msgid or sender ignored", frame.get("cmd"))
        return None
    group = body.get("chattype") == "group"
    chat_id = _text(body.get("chatid")) if group else None
    received = now or datetime.now(UTC)
    key = f"wecom:aibot:{user}:{msgid}"
    msgtype = body.get("msgtype")

    def inbound(event: str, **kw: Any) -> Inbound:
        reply = MappingProxyType({"req_id": req_id, "event": event, **kw.pop("reply", {})})
        return Inbound(platform="wecom", user_id=user, dedupe_key=key, received_at=received, chat_id=chat_id,
                       reply=reply, **kw)

    if frame.get("cmd") == MSG_CALLBACK:
        words: str | None = None
        picture: Mapping[str, Any] | None = None
        if msgtype == "text":
            words = (body.get("text") or {}).get("content") if isinstance(body.get("text"), Mapping) else None
        elif msgtype == "voice":  # WeCom sends the transcription
            words = (body.get("voice") or {}).get("content") if isinstance(body.get("voice"), Mapping) else None
        elif msgtype == "image":
            picture = body.get("image") if isinstance(body.get("image"), Mapping) else None
        elif msgtype == "mixed":
            items = (body.get("mixed") or {}).get("msg_item") if isinstance(body.get("mixed"), Mapping) else None
            items = [i for i in items or () if isinstance(i, Mapping)]
            said = [str((i.get("text") or {}).get("content") or "") for i in items if i.get("msgtype") == "text"]
            words = " ".join(s.strip() for s in said if s.strip()) or None
            if words is None:
                picture = next((i.get("image") for i in items if i.get("msgtype") == "image"), None)
        else:
            return None  # files, videos …: nothing the bot reads
        if picture is not None:
            url, aeskey = _text(picture.get("url")), _text(picture.get("aeskey"))
            if url is None or aeskey is None:
                log.warning("wecom longconn: picture %s without url or aeskey ignored", msgid)
                return None
            return inbound("message", image={"url": url, "aeskey": aeskey})
        said_text = words.strip() if isinstance(words, str) else ""
        if group:
            said_text = _MENTION.sub("", said_text).strip()
        return inbound("message", text=said_text)
    if frame.get("cmd") == EVENT_CALLBACK and msgtype == "event":
        event = body.get("event") if isinstance(body.get("event"), Mapping) else {}
        if event.get("eventtype") != "template_card_event":
            return None
        # The document nests the click under the event's name; early SDK types put it on the event itself.
        click = event.get("template_card_event")
        click = click if isinstance(click, Mapping) else event
        key_pressed, task_id = _text(click.get("event_key")), _text(click.get("task_id"))
        if key_pressed is None or task_id is None:
            log.warning("wecom longconn: card click %s without event_key or task_id ignored", msgid)
            return None
        return inbound("card", action=key_pressed, reply={"card_id": task_id})
    return None


def decrypt_media(data: bytes, aeskey: str) -> bytes:
    """A downloaded picture or file decrypted: AES-256-CBC, key = base64 of the message's aeskey, IV = its first
    16 bytes, PKCS#7 padding to 32 bytes. ValueError when it does not decrypt."""
    key = base64.b64decode(aeskey + "=" * (-len(aeskey) % 4))
    if len(key) != 32 or not data or len(data) % 16:
        raise ValueError("not an AES-256-CBC ciphertext for this key")
    plain = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    out = plain.update(data) + plain.finalize()
    pad = out[-1]
    if not 1 <= pad <= 32 or out[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad padding: wrong key or damaged download")
    return out[:-pad]


def _content_type(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG"):
        return "image/png"
    return "application/octet-stream"


# -- the connection ------------------------------------------------------------------------------------------

class Replaced(Exception):
    """WeCom said a newer connection of this robot took over (disconnected_event)."""


class AuthFailed(Exception):
    """WeCom refused the subscribe (wrong bot_id or secret)."""


@dataclass
class Callback:
    """A callback received on the current connection: what its req_id can still answer."""

    event: str  # "message" | "card"
    user: str
    chat_id: str | None
    at: float  # monotonic time it arrived
    used: bool = False  # a message is answered on its req_id once; later replies are pushes

    def usable(self, now: float) -> bool:
        window = UPDATE_WINDOW if self.event == "card" else REPLY_WINDOW
        return not self.used and now - self.at < window


def _req_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


Accept = Callable[[Inbound], Awaitable[bool]]


class LongConnClient:
    """One robot's long connection, kept up by `run()` (a background task the app starts and stops): subscribe,
    heartbeat, reconnect with jittered exponential backoff after a cut (the connection's callbacks' req_ids die
    with it), and stop for good when WeCom says a newer connection replaced it.

    Callbacks become Inbound events handed to `accept` (which stores them) in their own tasks, so a burst is stored
    in group commits; `callbacks` remembers the current connection's req_ids for LongConnTransport. Counters for
    tests and logs: `connects` (attempts), `sessions` (subscribed), `replaced`."""

    def __init__(self, session: aiohttp.ClientSession | None, bot_id: str, secret: str, accept: Accept, *,
                 url: str = DEFAULT_WS_URL, heartbeat: float | None = None, backoff: tuple[float, float] | None = None,
                 rng: random.Random | None = None) -> None:
        self.session = session  # set before run() (the app's cleanup_ctx opens it)
        self.bot_id = bot_id
        self._secret = secret
        self._accept = accept
        self.url = url
        self.heartbeat = heartbeat if heartbeat is not None else HEARTBEAT
        self.backoff = backoff if backoff is not None else (BACKOFF_BASE, BACKOFF_MAX)
        self._rng = rng or random.Random()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._handling: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self.callbacks: dict[str, Callback] = {}
        self.connects = 0
        self.sessions = 0
        self.replaced = False

    def __repr__(self) -> str:  # never show the secret
        return f"LongConnClient(bot_id={self.bot_id!r}, url={self.url!r})"

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Close the connection (run() then returns) and let the callbacks being stored finish."""
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._handling:
            await asyncio.gather(*self._handling, return_exceptions=True)

    @property
    def connected(self) -> bool:
        """Subscribed right now."""
        return self._connected.is_set()

    async def wait_connected(self, within: float) -> bool:
        """Wait up to `within` seconds for a subscribed connection (not at all once stopped or replaced: none
        is coming); whether there is one."""
        if self._connected.is_set() or self._stopping.is_set():
            return self._connected.is_set()
        waits = [asyncio.ensure_future(self._connected.wait()), asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return self._connected.is_set()

    async def run(self) -> None:
        """Connect, serve, and reconnect after a cut until stopped or replaced (a background task)."""
        if self.session is None:
            raise RuntimeError("LongConnClient.session is not set")
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            subscribed = False
            try:
                subscribed = await self._serve()
            except Replaced:
                self.replaced = True
                self._stopping.set()  # for good: senders waiting for a connection need not wait
                log.warning("wecom longconn: WeCom says a newer connection of robot %s replaced this one; "
                            "not reconnecting (another jxcbot uses the same robot?)", self.bot_id)
                return
            except AuthFailed as e:
                log.error("wecom longconn: subscribe refused (%s): check [wecom] bot_id and secret", e)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("wecom longconn: connection failed: %s", type(e).__name__)
            except Exception:
                log.exception("wecom longconn: connection loop error")
            if self._stopping.is_set():
                return
            failures = 0 if subscribed and time.monotonic() - started >= STABLE else failures + 1
            base, cap = self.backoff
            delay = min(cap, base * 2 ** max(0, failures - 1)) * self._rng.uniform(0.5, 1.0)
            log.info("wecom longconn: reconnecting in %.1f s", delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    async def _serve(self) -> bool:
        """One connection from connect to close; whether it got subscribed."""
        self.connects += 1
        assert self.session is not None
        ws = await asyncio.wait_for(self.session.ws_connect(
            self.url, autoping=True, heartbeat=None, max_msg_size=16 * 2**20,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)), AUTH_TIMEOUT)
        async with ws:
            self._ws = ws
            beat: asyncio.Task[None] | None = None
            reader = asyncio.get_running_loop().create_task(self._read(ws), name="jxcbot-wecom-longconn-read")
            subscribed = False
            try:
                try:
                    answer = await self.request(SUBSCRIBE, {"bot_id": self.bot_id, "secret": self._secret},
                                                within=AUTH_TIMEOUT, when_connected=False)
                except SendError as e:
                    if not reader.done():
                        raise AuthFailed(f"no answer to the subscribe ({e.code})") from None
                    answer = None  # the connection ended first: reader's outcome below
                if answer is not None:
                    if answer.get("errcode", 0) != 0:
                        raise AuthFailed(f"errcode {answer.get('errcode')} {str(answer.get('errmsg', ''))[:100]}")
                    subscribed = True
                    self.sessions += 1
                    self._connected.set()
                    log.info("wecom longconn: robot %s subscribed", self.bot_id)
                    beat = asyncio.get_running_loop().create_task(self._beat(ws), name="jxcbot-wecom-longconn-ping")
                await asyncio.wait([reader])
            finally:
                self._connected.clear()
                for task in (beat, reader):
                    if task is not None and not task.done():
                        task.cancel()
                await asyncio.gather(*(t for t in (beat, reader) if t is not None), return_exceptions=True)
                self._ws = None
                self.callbacks.clear()  # their req_ids died with this connection: replies go as pushes
                self._fail_pending()
        error = reader.exception() if reader.done() and not reader.cancelled() else None
        if isinstance(error, Replaced):
            raise error
        if error is not None:
            log.warning("wecom longconn: connection lost: %s", type(error).__name__)
        return subscribed

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SendError("wecom longconn: connection closed", retryable=True,
                                               code="disconnected"))
        self._pending.clear()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read frames until the connection ends (Replaced after a disconnected_event); then the frames still
        waiting for an answer fail (retryable)."""
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    log.warning("wecom longconn: a frame that is not JSON ignored")
                    continue
                if not isinstance(frame, dict):
                    continue
                cmd = frame.get("cmd")
                if cmd in (MSG_CALLBACK, EVENT_CALLBACK):
                    if _is_replacement(frame):
                        self._connected.clear()
                        await ws.close()
                        raise Replaced()
                    self._callback(frame)
                    continue
                headers = frame.get("headers")
                req_id = headers.get("req_id") if isinstance(headers, dict) else None
                future = self._pending.pop(req_id, None) if isinstance(req_id, str) else None
                if future is not None and not future.done():
                    future.set_result(frame)
                elif req_id and not str(req_id).startswith(PING):
                    log.debug("wecom longconn: answer to an unknown req_id ignored")
        finally:
            self._connected.clear()
            self._fail_pending()

    def _callback(self, frame: dict[str, Any]) -> None:
        """Remember the callback's req_id and store its event in a task of its own."""
        try:
            event = parse_frame(frame)
        except ValueError:
            log.warning("wecom longconn: unreadable callback ignored")
            return
        if event is None:
            return
        self._prune()
        self.callbacks[str(event.reply["req_id"])] = Callback(str(event.reply["event"]), event.user_id,
                                                              event.chat_id, time.monotonic())
        task = asyncio.get_running_loop().create_task(self._store(event), name=f"store {event.dedupe_key}")
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    async def _store(self, event: Inbound) -> None:
        """accept() the event (stored before anything about it goes back); a failed store is tried again a few
        times (WeCom sends a callback again only on its own terms)."""
        for attempt in range(1, 4):
            try:
                if not await self._accept(event):
                    log.info("wecom longconn: repeated callback %s", event.dedupe_key)
                return
            except Exception:
                if attempt == 3:
                    log.exception("wecom longconn: callback %s could not be stored", event.dedupe_key)
                    return
                await asyncio.sleep(0.5 * attempt)

    def _prune(self) -> None:
        if len(self.callbacks) < 1000:
            return
        now = time.monotonic()
        for req_id in [r for r, c in self.callbacks.items() if now - c.at >= REPLY_WINDOW]:
            del self.callbacks[req_id]

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """A ping every `heartbeat` seconds (answered within PING_TIMEOUT); MISSED_PINGS unanswered in a row close
        the connection."""
        missed = 0
        while not ws.closed:
            await asyncio.sleep(self.heartbeat)
            try:
                answer = await self.request(PING, None, within=min(self.heartbeat, PING_TIMEOUT))
                missed = 0 if answer.get("errcode", 0) == 0 else missed + 1
            except SendError:
                missed += 1
            if missed >= MISSED_PINGS:
                log.warning("wecom longconn: %d pings unanswered, reconnecting", missed)
                await ws.close()
                return

    # -- requests ------------------------------------------------------------------------------------------

    async def request(self, cmd: str, body: Mapping[str, Any] | None, *, req_id: str | None = None,
                      within: float = ACK_TIMEOUT, when_connected: bool = True) -> dict[str, Any]:
        """Send one frame and return WeCom's answer (the frame with its req_id: errcode, errmsg, body). SendError
        (retryable) when there is no connection or no answer in time; the errcode is the caller's to judge."""
        ws = self._ws
        if ws is None or ws.closed or (when_connected and not self._connected.is_set()):
            raise SendError("wecom longconn: not connected", retryable=True, code="disconnected")
        req_id = req_id or _req_id(cmd)
        while req_id in self._pending:  # one frame per req_id in flight (replies to one callback go in order)
            await asyncio.wait([self._pending[req_id]], timeout=within)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        frame: dict[str, Any] = {"cmd": cmd, "headers": {"req_id": req_id}}
        if body is not None:
            frame["body"] = body
        try:
            async with self._send_lock:
                await ws.send_str(json.dumps(frame, ensure_ascii=False))
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as e:
            self._pending.pop(req_id, None)
            raise SendError(f"wecom longconn {cmd}: {type(e).__name__}", retryable=True, code="disconnected") from None
        try:
            return await asyncio.wait_for(asyncio.shield(future), within)
        except TimeoutError:
            raise SendError(f"wecom longconn {cmd}: no answer in {within:g} s", retryable=True,
                            code="timeout") from None
        finally:
            if self._pending.get(req_id) is future:
                del self._pending[req_id]

    async def call(self, cmd: str, body: Mapping[str, Any], *, req_id: str | None = None,
                   within: float = ACK_TIMEOUT) -> dict[str, Any]:
        """request() that raises SendError for a non-zero errcode (retryable for -1, 45009 …) and returns the
        answer's body."""
        answer = await self.request(cmd, body, req_id=req_id, within=within)
        code = answer.get("errcode", 0)
        if code not in (0, None):
            retryable = code in RETRYABLE_ERRORS
            log.warning("wecom longconn %s failed: errcode=%s retryable=%s", cmd, code, retryable)
            raise SendError(f"wecom longconn {cmd}: errcode {code} {str(answer.get('errmsg', ''))[:200]}".rstrip(),
                            retryable=retryable, code=code)
        result = answer.get("body")
        return result if isinstance(result, dict) else {}

    async def upload(self, data: bytes, kind: str, filename: str) -> str:
        """Upload an image or file in chunks (init → chunk × N → finish); its media_id (valid 3 days)."""
        limit = IMAGE_LIMIT if kind == "image" else FILE_LIMIT
        if not MIN_MEDIA <= len(data) <= limit:
            raise SendError(f"wecom longconn upload: {kind} of {len(data)} bytes", retryable=False, code=40006)
        chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
        if len(chunks) > MAX_CHUNKS:
            raise SendError("wecom longconn upload: more than 100 chunks", retryable=False, code="too_large")
        init = await self.call(UPLOAD_INIT, {"type": kind, "filename": filename, "total_size": len(data),
                                             "total_chunks": len(chunks), "md5": hashlib.md5(data).hexdigest()})
        upload_id = init.get("upload_id")
        if not isinstance(upload_id, str) or not upload_id:
            raise SendError("wecom longconn upload: no upload_id", retryable=True, code="bad_response")
        for n, chunk in enumerate(chunks):
            await self.call(UPLOAD_CHUNK, {"upload_id": upload_id, "chunk_index": n,
                                           "base64_data": base64.b64encode(chunk).decode("ascii")})
        done = await self.call(UPLOAD_FINISH, {"upload_id": upload_id})
        media_id = done.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise SendError("wecom longconn upload: no media_id", retryable=True, code="bad_response")
        return media_id

    async def download_picture(self, url: str, aeskey: str) -> tuple[bytes, str]:
        """A received picture: downloaded (its url is valid 5 minutes) and decrypted with its message's aeskey.
        SendError: too_large beyond 10 MB, permanent when it does not decrypt, retryable for network trouble."""
        try:
            if self.session is None:
                raise SendError("wecom longconn picture: not started", retryable=True, code="disconnected")
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status != 200:
                    raise SendError(f"wecom longconn picture: HTTP {resp.status}",
                                    retryable=resp.status >= 500, code=resp.status)
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > IMAGE_LIMIT + 32:
                        raise SendError("wecom longconn picture: over 10 MB", retryable=False, code="too_large")
                    chunks.append(chunk)
        except TimeoutError:
            raise SendError("wecom longconn picture: timed out", retryable=True, code="timeout") from None
        except aiohttp.ClientError as e:
            raise SendError(f"wecom longconn picture: {type(e).__name__}", retryable=True, code="connection") from None
        try:
            data = decrypt_media(b"".join(chunks), aeskey)
        except ValueError:
            raise SendError("wecom longconn picture: does not decrypt", retryable=False, code="bad_media") from None
        return data, _content_type(data)


def _is_replacement(frame: Mapping[str, Any]) -> bool:
    body = frame.get("body")
    event = body.get("event") if isinstance(body, Mapping) else None
    return isinstance(event, Mapping) and event.get("eventtype") == "disconnected_event"


# -- the outbox transport ------------------------------------------------------------------------------------

def template_card(message: Message, task_id: str) -> dict[str, Any]:
    """The robot's template_card for a neutral card: button_interaction (the app's template; 1..6 buttons) when
    it has buttons, else a text_notice (a decided card keeps its task_id and loses its buttons)."""
    if message.buttons:
        if len(message.buttons) > MAX_BUTTONS:
            raise SendError(f"wecom card: {len(message.buttons)} buttons (1..{MAX_BUTTONS})", retryable=False,
                            code="bad_card")
        return render.wecom_template_card(message, task_id)
    title = message.title or render.first_line(message.text) or "-"
    card: dict[str, Any] = {"card_type": "text_notice", "main_title": {"title": render.clip(title, 26)},
                            "task_id": task_id}
    if message.text:
        card["sub_title_text"] = render.clip(message.text, 160)
    return card


class LongConnTransport:
    """The outbox Transport for platform "wecom" when [wecom] mode = "longconn".

    kind "aibot" (a reply: address = the callback's req_id, fallback = the sender or the group): the first reply
    to a message goes back on its req_id (aibot_respond_msg); a card update after a click (a card carrying the
    clicked card's task_id as card_id) goes as aibot_respond_update_msg within 5 s; everything else — later
    replies, a req_id of a connection since cut, a window passed, an update WeCom refuses — is pushed to the
    fallback. kind "user" / "group": pushed with aibot_send_msg (chatid = userid / group chatid). kind "robot":
    the group robots of [wecom.robots]. A pushed card cannot be updated later (the protocol updates a card only
    in answer to its click): no handle is returned, so the next update of that copy is a fresh card."""

    platform = "wecom"

    def __init__(self, client: LongConnClient, robots: WeComRobotClient | None = None, *,
                 robots_configured: bool | None = None, wait: float = 5.0) -> None:
        self.client = client
        self.robots = robots  # set at start-up when [wecom.robots] is configured (it needs the session)
        self.robots_configured = robots is not None if robots_configured is None else robots_configured
        self.wait = wait  # seconds a send waits for the connection to come back before failing (retryable)

    async def send(self, target: Target, message: Message) -> Delivered | None:
        """Deliver one message; SendError (retryable while disconnected)."""
        if target.kind == "robot":
            if self.robots is None:
                if self.robots_configured:
                    raise SendError("wecom robots: not started yet", retryable=True, code="starting")
                raise SendError("wecom: no group robots configured", retryable=False, code="bad_target")
            await self.robots.send(target, message)
            return None
        if target.kind not in ("aibot", "user", "group") or not target.address:
            raise SendError(f"wecom longconn cannot send to {target.kind!r}", retryable=False, code="bad_target")
        if not await self.client.wait_connected(self.wait):
            raise SendError("wecom longconn: not connected", retryable=True, code="disconnected")
        if target.kind == "aibot":
            answered = await self._answer(target.address, message)
            if answered:
                return None
            if target.fallback is None:
                raise SendError("wecom longconn: reply window passed and no fallback", retryable=False,
                                code="expired")
            target = target.fallback
        for part in message_parts(target, message):
            await self._push(target.address, part)
        return None

    async def _answer(self, req_id: str, message: Message) -> bool:
        """Answer on the callback's req_id when it can still carry this message; False: push it instead."""
        callback = self.client.callbacks.get(req_id)
        if callback is None or not callback.usable(time.monotonic()):
            return False
        if callback.event == "card":
            if message.kind != "card" or not message.card_id:
                return False  # a click's req_id only updates the clicked card
            callback.used = True
            body = {"response_type": "update_template_card", "userids": [callback.user],
                    "template_card": template_card(message, message.card_id)}
            return await self._on_req(RESPOND_UPDATE, body, req_id)
        body = await self._reply_body(message)
        if body is None:
            return False
        callback.used = True
        return await self._on_req(RESPOND, body, req_id)

    async def _on_req(self, cmd: str, body: dict[str, Any], req_id: str) -> bool:
        try:
            await self.client.call(cmd, body, req_id=req_id)
        except SendError as e:
            if e.retryable and e.code != "timeout":
                raise
            # Refused (an old req_id, the window gone) or unanswered: push instead. An unanswered frame may have
            # arrived; a push after it is a duplicate the user can read, a lost reply is not.
            log.info("wecom longconn %s on the callback refused (%s): pushing instead", cmd, e.code)
            return False
        return True

    async def _reply_body(self, message: Message) -> dict[str, Any] | None:
        """The aibot_respond_msg body for a reply to a message (None: only a push can carry it)."""
        if message.kind == "card" and message.buttons:
            return {"msgtype": "template_card", "template_card": template_card(message, _task_id())}
        if message.kind == "image":
            png = message.png or b""
            if len(png) > IMAGE_LIMIT:
                return None
            item = {"msgtype": "image", "image": {"base64": base64.b64encode(png).decode("ascii"),
                                                  "md5": hashlib.md5(png).hexdigest()}}
            return _stream(message.title or "图片", msg_item=[item])
        if message.kind == "file":
            media_id = await self.client.upload(message.data or b"", "file", message.filename)
            return {"msgtype": "file", "file": {"media_id": media_id}}
        content = _markdown(message)
        if len(content.encode()) > STREAM_LIMIT:
            return None
        return _stream(content)

    async def _push(self, chatid: str, message: Message) -> None:
        """aibot_send_msg of one part to a user (userid) or a group (chatid)."""
        body: dict[str, Any] = {"chatid": chatid}
        if message.kind == "card" and message.buttons:
            body.update(msgtype="template_card", template_card=template_card(message, _task_id()))
        elif message.kind in ("image", "file"):
            data = (message.png if message.kind == "image" else message.data) or b""
            name = message.filename or ("image.jpg" if data.startswith(b"\xff\xd8") else "image.png")
            media_id = await self.client.upload(data, message.kind, name)
            body.update(msgtype=message.kind, **{message.kind: {"media_id": media_id}})
        else:
            content = _markdown(message)
            if not content.strip():
                raise SendError("wecom longconn markdown: empty content", retryable=False, code=44004)
            *before, content = split_utf8(content, PUSH_MARKDOWN_LIMIT)  # message_parts keeps parts within 2048 B
            for piece in before:
                await self.client.call(SEND, {"chatid": chatid, "msgtype": "markdown", "markdown": {"content": piece}})
            body.update(msgtype="markdown", markdown={"content": content})
        await self.client.call(SEND, body)


def _task_id() -> str:
    return f"jxc_{uuid.uuid4().hex}"


def _stream(content: str, msg_item: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    stream: dict[str, Any] = {"id": _req_id("stream"), "finish": True, "content": content}
    if msg_item:
        stream["msg_item"] = msg_item
    return {"msgtype": "stream", "stream": stream}


def _markdown(message: Message) -> str:
    """A text, markdown, link or button-less card as the markdown a stream or a push carries."""
    if message.kind == "card":
        return render.card_markdown(message, "wecom")
    if message.kind == "link":
        head = f"[{message.title}]({message.url})"
        return f"{head}\n{message.text}" if message.text.strip() else head
    return with_title(message, bold=message.kind == "markdown")
