"""DingTalk Stream mode: the outbound WebSocket that brings robot messages and card clicks without a public URL."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.dingtalk import callback as dt_callback
from bot.dingtalk.sign import CallbackRejected
from bot.inbound import Inbound

__all__ = [
    "OPEN_PATH",
    "SUBSCRIPTIONS",
    "TOPIC_CARD",
    "TOPIC_ROBOT",
    "Backoff",
    "StreamClient",
    "StreamRefused",
    "StreamStats",
    "ack_frame",
]

log = logging.getLogger(__name__)

OPEN_PATH = "/v1.0/gateway/connections/open"
TOPIC_ROBOT = "/v1.0/im/bot/messages/get"
TOPIC_CARD = "/v1.0/card/instances/callback"
SUBSCRIPTIONS: tuple[Mapping[str, str], ...] = (
    {"type": "EVENT", "topic": "*"},
    {"type": "CALLBACK", "topic": TOPIC_ROBOT},
    {"type": "CALLBACK", "topic": TOPIC_CARD},
)
TICKET_SECONDS = 90.0  # a ticket opens one WebSocket within 90 s of being issued, once
CONNECT_TIMEOUT = 30.0  # the WebSocket handshake must finish well inside the ticket's life
STABLE_SECONDS = 10.0  # a connection that lasted this long resets the backoff (a cut, not a refusal loop)
UA = "jxcbot-aiohttp/1"

Accept = Callable[[Inbound], Awaitable[bool]]


class StreamRefused(Exception):
    """connections/open did not give a ticket (bad credentials, Stream not enabled, gateway trouble)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Backoff:
    """Seconds before reconnect attempt n (0-based): first·factor^n capped at `cap`, drawn from its upper half
    (jitter, so several instances cut by the same outage don't come back in step)."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        """The pause before attempt `attempt`."""
        base = min(self.cap, self.first * self.factor ** min(attempt, 30))
        return random.uniform(base / 2, base)


@dataclass
class StreamStats:
    """What one client has done since it started (for logs, /healthz-style checks and the soak benchmark)."""

    opens: int = 0  # tickets obtained
    refused: int = 0  # connections/open or handshake failures
    connections: int = 0  # WebSockets opened
    disconnects: int = 0  # SYSTEM disconnect frames (the gateway rotating connections)
    lost: int = 0  # connections that ended without a disconnect frame (network cut, gateway restart)
    callbacks: int = 0  # CALLBACK frames received (redeliveries included)
    stored: int = 0  # events stored new
    duplicates: int = 0  # events already stored (a redelivery, or another instance got it first)
    acks: int = 0  # acknowledgements sent
    acks_lost: int = 0  # acknowledgements that could not be sent (the connection ended first)
    pongs: int = 0
    failed: int = 0  # events that could not be stored (answered 500)


def ack_frame(message_id: str, code: int = 200, data: Any = None, message: str = "OK") -> dict[str, Any]:
    """The acknowledgement of one frame: its messageId, a status code, and `data` as a JSON string."""
    return {"code": code, "headers": {"contentType": "application/json", "messageId": message_id},
            "message": message, "data": data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}


class StreamClient:
    """One Stream connection, kept open: connections/open with the app's clientId/clientSecret → endpoint and
    ticket → WebSocket `endpoint?ticket=…`; SYSTEM ping answered, every CALLBACK and EVENT frame acknowledged
    with its messageId, a robot message or card click stored (through `accept`) *before* its ack, so the
    gateway's redelivery after a lost ack is a duplicate the store ignores. After a network cut it reconnects
    with backoff; after a `disconnect` frame at once; each time with a fresh ticket."""

    def __init__(self, session: aiohttp.ClientSession | None, client_id: str, client_secret: str, accept: Accept, *,
                 api_base: str = "https://api.dingtalk.com", robot_code: str | None = None,
                 backoff: Backoff | None = None, heartbeat: float = 30.0, open_timeout: float = 10.0,
                 max_in_flight: int = 256, store_attempts: int = 3) -> None:
        self._session = session
        self.client_id, self._secret = client_id, client_secret
        self.accept, self.robot_code = accept, robot_code
        self.open_url = f"{api_base.rstrip('/')}{OPEN_PATH}"
        self.backoff = backoff or Backoff()
        self.heartbeat, self.open_timeout = heartbeat, open_timeout
        self.store_attempts = store_attempts
        self.stats = StreamStats()
        self.connected = asyncio.Event()  # set while a WebSocket is open
        self._stopping = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._slots = asyncio.Semaphore(max_in_flight)  # events being stored; beyond it reading waits
        self._in_flight: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"StreamClient({self.client_id!r}, {self.open_url!r})"

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Hold a connection until stop(): reconnect after every end, never raise. Without a session given,
        the client opens its own for its life."""
        if self._session is not None:
            await self._run()
            return
        async with aiohttp.ClientSession() as session:
            self._session = session
            try:
                await self._run()
            finally:
                self._session = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while not self._stopping.is_set():
            try:
                ws = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # refused, network down, DNS: try again later
                self.stats.refused += 1
                delay = self.backoff.delay(attempt)
                attempt += 1
                level = logging.ERROR if isinstance(e, StreamRefused) and 400 <= e.status < 500 else logging.WARNING
                log.log(level, "dingtalk stream: connecting failed (%s); next attempt in %.1f s", _why(e), delay)
                await self._pause(delay)
                continue
            if self._stopping.is_set():  # stop() came while connecting: it found no connection to close
                await ws.close()
                self.connected.clear()
                break
            started = loop.time()
            graceful = False
            try:
                graceful = await self._read(ws)
            except asyncio.CancelledError:
                await ws.close()
                raise
            except Exception:
                log.exception("dingtalk stream: reading the connection failed")
            finally:
                self.connected.clear()
                self._ws = None
                if not ws.closed:
                    await ws.close()
            if self._stopping.is_set():
                break
            if graceful:  # the gateway rotates connections: come back at once, on a fresh ticket
                attempt, delay = 0, random.uniform(0.0, 0.2)
                log.info("dingtalk stream: the gateway asked to reconnect")
            else:
                self.stats.lost += 1
                if loop.time() - started >= STABLE_SECONDS:
                    attempt = 0
                delay = self.backoff.delay(attempt)
                attempt += 1
                log.warning("dingtalk stream: connection lost; reconnecting in %.1f s", delay)
            await self._pause(delay)

    async def stop(self, grace: float = 5.0) -> None:
        """Take no new events, let the ones being stored get their acks out (up to `grace` s), close."""
        self._stopping.set()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace)
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    # -- connecting ---------------------------------------------------------------------------------------------

    async def _ticket(self) -> tuple[str, str]:
        """(endpoint, ticket) from connections/open; StreamRefused when it gives none."""
        body = {"clientId": self.client_id, "clientSecret": self._secret,
                "subscriptions": [dict(s) for s in SUBSCRIPTIONS], "ua": UA}
        assert self._session is not None
        async with self._session.post(self.open_url, json=body, headers={"Accept": "application/json"},
                                      timeout=aiohttp.ClientTimeout(total=self.open_timeout)) as resp:
            text = await resp.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if resp.status != 200 or not isinstance(data, dict):
                detail = data.get("code") or data.get("message") if isinstance(data, dict) else text[:120]
                raise StreamRefused(resp.status, str(detail))
        endpoint, ticket = data.get("endpoint"), data.get("ticket")
        if not (isinstance(endpoint, str) and endpoint.startswith(("wss://", "ws://")) and isinstance(ticket, str)
                and ticket):
            raise StreamRefused(resp.status, "no endpoint/ticket in the answer")
        return endpoint, ticket

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        loop = asyncio.get_running_loop()
        endpoint, ticket = await self._ticket()
        issued = loop.time()
        self.stats.opens += 1
        left = TICKET_SECONDS - (loop.time() - issued)
        assert self._session is not None
        # the handshake must finish inside the ticket's life; a later attempt takes a new ticket
        ws = await asyncio.wait_for(
            self._session.ws_connect(endpoint, params={"ticket": ticket}, heartbeat=self.heartbeat,
                                     autoping=True, max_msg_size=4 * 1024 * 1024),
            min(CONNECT_TIMEOUT, left))
        self._ws = ws
        self.stats.connections += 1
        self.connected.set()
        log.info("dingtalk stream: connected (%s)", endpoint.split("?")[0])
        return ws

    # -- frames -------------------------------------------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Handle frames until the connection ends; True when it ended on the gateway's `disconnect`."""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    log.warning("dingtalk stream: a frame that is not JSON ignored")
                    continue
                if not isinstance(frame, dict):
                    continue
                if await self._frame(ws, frame):
                    return True
            elif msg.type == aiohttp.WSMsgType.ERROR:
                log.warning("dingtalk stream: connection error: %s", ws.exception())
                break
        return False

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, frame: Mapping[str, Any]) -> bool:
        """One frame; True for a `disconnect`."""
        kind = frame.get("type")
        headers = frame.get("headers") if isinstance(frame.get("headers"), Mapping) else {}
        topic, message_id = headers.get("topic"), headers.get("messageId")
        if kind == "SYSTEM":
            if topic == "ping":
                if await self._send(ws, ack_frame(str(message_id or ""), data=frame.get("data") or "{}"),
                                    counted=False):
                    self.stats.pongs += 1
            elif topic == "disconnect":
                self.stats.disconnects += 1
                log.info("dingtalk stream: disconnect from the gateway (%s)", str(frame.get("data"))[:200])
                return True
            else:
                log.info("dingtalk stream: system frame %r ignored", str(topic)[:40])
            return False
        if not isinstance(message_id, str) or not message_id:
            log.warning("dingtalk stream: a %s frame without messageId ignored", str(kind)[:20])
            return False
        if kind == "EVENT":  # subscribed as the protocol asks; the bot uses none of them yet
            await self._send(ws, ack_frame(message_id, data={"status": "SUCCESS", "message": "ignored"}))
            return False
        if kind != "CALLBACK":
            log.info("dingtalk stream: frame of type %r ignored", str(kind)[:20])
            return False
        if self._stopping.is_set():
            return False  # not acknowledged: the gateway gives it to another connection
        self.stats.callbacks += 1
        try:
            data = json.loads(frame.get("data") or "")
            if not isinstance(data, dict):
                raise CallbackRejected("data is not a JSON object")
            if topic == TOPIC_ROBOT:
                inbound = dt_callback.message_to_inbound(data, robot_code=self.robot_code)
                response: Any = None
            elif topic == TOPIC_CARD:
                inbound, response = dt_callback.card_click_to_inbound(data), {}
            else:
                await self._send(ws, ack_frame(message_id, 404, {"response": None}, "topic not subscribed"))
                return False
        except (ValueError, RecursionError, CallbackRejected) as e:
            reason = e.reason if isinstance(e, CallbackRejected) else "malformed data"
            log.warning("dingtalk stream: %s frame rejected: %s", topic, reason)
            await self._send(ws, ack_frame(message_id, 400, {"response": None}, "bad request"))
            return False
        if inbound is None:  # quota notices, audio, senders outside the organisation: acknowledged, ignored
            await self._send(ws, ack_frame(message_id, data={"response": response}))
            return False
        await self._slots.acquire()  # backpressure: the gateway waits while many events are being stored
        task = asyncio.get_running_loop().create_task(self._store_then_ack(ws, message_id, inbound, response),
                                                      name=f"dingtalk stream {inbound.dedupe_key}")
        self._in_flight.add(task)
        task.add_done_callback(self._finished)
        return False

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("dingtalk stream: storing an event failed", exc_info=task.exception())

    async def _store_then_ack(self, ws: aiohttp.ClientWebSocketResponse, message_id: str, inbound: Inbound,
                              response: Any) -> None:
        """Store the event (committed), then acknowledge it; a store that keeps failing is answered 500."""
        for attempt in range(self.store_attempts):
            try:
                new = await self.accept(inbound)
                break
            except Exception:
                if attempt + 1 == self.store_attempts:
                    self.stats.failed += 1
                    log.exception("dingtalk stream: event %s could not be stored", inbound.dedupe_key)
                    await self._send(ws, ack_frame(message_id, 500, {"response": None}, "internal error"))
                    return
                await asyncio.sleep(0.25 * 2 ** attempt)
        if new:
            self.stats.stored += 1
        else:
            self.stats.duplicates += 1
        await self._send(ws, ack_frame(message_id, data={"response": response}))

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, frame: Mapping[str, Any], *,
                    counted: bool = True) -> bool:
        """Send one frame; False when the connection ended first (the gateway redelivers what it carried)."""
        sent = False
        if not ws.closed:
            try:
                await ws.send_str(json.dumps(frame, ensure_ascii=False))
                sent = True
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                pass
        if counted:
            if sent:
                self.stats.acks += 1
            else:
                self.stats.acks_lost += 1
        return sent


def _why(e: BaseException) -> str:
    if isinstance(e, StreamRefused):
        return f"connections/open refused: {e}"
    if isinstance(e, TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}"[:200]
