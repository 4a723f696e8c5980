"""A local fake of DingTalk's Stream gateway: connections/open and the WebSocket, a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.dingtalk import FakeDingTalk, card_click_payload

__all__ = [
    "TOPIC_CARD",
    "TOPIC_ROBOT",
    "FakeDingTalkStream",
    "FakeStreamGateway",
    "Pending",
    "StreamConnection",
]

TOPIC_ROBOT = "/v1.0/im/bot/messages/get"
TOPIC_CARD = "/v1.0/card/instances/callback"
OPEN_PATH = "/v1.0/gateway/connections/open"


@dataclass
class StreamConnection:
    """One WebSocket a client opened with a ticket. state: "open" | "disconnecting" (told to go, gets no new
    frames) | "closed"; how: why it closed ("client", "cut", "disconnect", "shutdown")."""

    number: int
    ticket: str
    subscriptions: tuple[tuple[str, str], ...]
    ws: web.WebSocketResponse
    request: web.Request
    opened_at: float
    state: str = "open"
    closed_at: float | None = None
    how: str | None = None
    frames_in: int = 0  # frames received from the client

    def subscribed(self, kind: str, topic: str) -> bool:
        """Whether this connection asked for (kind, topic); EVENT "*" covers every event."""
        return (kind, topic) in self.subscriptions or (kind == "EVENT" and ("EVENT", "*") in self.subscriptions)


@dataclass
class Pending:
    """One pushed message (a robot message, a card click, an event) until a connection acknowledges it.
    Every attempt is a frame with a new messageId; `data` (and so the message's msgId) stays the same."""

    kind: str
    topic: str
    data: dict[str, Any]
    message_ids: list[str] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)  # the connection of each attempt
    acks: list[dict[str, Any]] = field(default_factory=list)  # valid acks received (a late one counts too)
    acked: asyncio.Event = field(default_factory=asyncio.Event)  # answered for good: a 200 or a 4xx
    pushed_at: float = field(default_factory=time.monotonic)
    acked_at: float | None = None  # monotonic time of the first final answer
    refused: bool = False  # answered 4xx
    gave_up: bool = False  # max_attempts sent without an answer

    @property
    def attempts(self) -> int:
        """Frames sent for this message (1 + redeliveries)."""
        return len(self.message_ids)

    def response(self) -> Any:
        """The `response` of the first ack's data (None before one)."""
        return json.loads(self.acks[0]["data"]).get("response") if self.acks else None


class FakeStreamGateway:
    """DingTalk's Stream gateway (protocol notes §2): `POST /v1.0/gateway/connections/open` checks the
    clientId/clientSecret and the subscriptions and answers {endpoint, ticket} (90 s, single use); `GET
    /connect?ticket=…` upgrades to the WebSocket that carries CALLBACK/EVENT frames (headers topic, messageId,
    contentType, time; data a JSON string) and SYSTEM ping/disconnect, and takes the client's acks (code 200,
    headers.messageId, contentType application/json, data a JSON string).

    Delivery is at-least-once: a message not acknowledged (200, or 4xx: refused for good) within `ack_timeout`
    is sent again with a new
    messageId to a live connection chosen at random (as DingTalk balances among a client's connections); a
    message pushed while none is live waits for one. Knobs: lose_acks() (acks discarded as lost on the way),
    cut() (the TCP connection dropped, no close frame), disconnect() (the SYSTEM frame, then the server closes
    after `grace` s), cut_every() (cuts on a timer, for the soak)."""

    def __init__(self, *, client_id: str, client_secret: str, ack_timeout: float = 2.0, ticket_ttl: float = 90.0,
                 disconnect_grace: float = 10.0, max_attempts: int = 50) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.ack_timeout, self.ticket_ttl = ack_timeout, ticket_ttl
        self.disconnect_grace, self.max_attempts = disconnect_grace, max_attempts
        self.tickets: dict[str, tuple[float, tuple[tuple[str, str], ...]]] = {}  # unused ticket → (issued, subs)
        self.opens: list[dict[str, Any]] = []  # connections/open bodies accepted
        self.refused_opens = 0
        self.refused_tickets = 0  # upgrade attempts with an unknown, used or expired ticket
        self.connections: list[StreamConnection] = []
        self.pending: list[Pending] = []
        self.bad_frames: list[Any] = []  # client frames that are not a valid ack
        self.nacks: list[dict[str, Any]] = []  # acks with a code other than 200
        self.lost_acks: list[dict[str, Any]] = []  # acks thrown away by lose_acks()
        self.pongs: dict[str, dict[str, Any]] = {}  # ping messageId → the client's answer
        self._lose = 0
        self._cut_after_frame = 0
        self._by_mid: dict[str, Pending] = {}
        self._pings: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._closing = False

    # -- HTTP side ----------------------------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        """Add the gateway's two routes to `app` (named streamOpen and streamConnect)."""
        app.router.add_route("POST", OPEN_PATH, self._open, name="streamOpen")
        app.router.add_route("GET", "/connect", self._connect, name="streamConnect")

    async def _open(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.refused_opens += 1
            return web.json_response({"code": "invalidParameter", "message": "body"}, status=400)
        if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
            self.refused_opens += 1
            return web.json_response({"code": "invalidClientIdOrSecret", "message": "无效的clientId或clientSecret"},
                                     status=400)
        subs = body.get("subscriptions")
        if not isinstance(subs, list) or not subs or not all(
                isinstance(s, dict) and s.get("type") in ("EVENT", "CALLBACK", "SYSTEM") and s.get("topic")
                for s in subs):
            self.refused_opens += 1
            return web.json_response({"code": "invalidParameter.subscriptions", "message": "subscriptions"},
                                     status=400)
        if any(s["type"] == "EVENT" and s["topic"] != "*" for s in subs):  # the protocol allows only "*"
            self.refused_opens += 1
            return web.json_response({"code": "invalidParameter.topic", "message": "EVENT topic must be *"},
                                     status=400)
        self.opens.append(body)
        ticket = str(uuid.uuid4())
        self.tickets[ticket] = (time.monotonic(), tuple((s["type"], s["topic"]) for s in subs))
        return web.json_response({"endpoint": f"ws://{request.host}/connect", "ticket": ticket})

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        issued = self.tickets.pop(ticket, None)  # single use
        if issued is None or time.monotonic() - issued[0] > self.ticket_ttl or self._closing:
            self.refused_tickets += 1
            return web.json_response({"code": "invalidTicket", "message": "ticket 无效或已过期"}, status=401)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = StreamConnection(len(self.connections) + 1, ticket, issued[1], ws, request, time.monotonic())
        self.connections.append(conn)
        self._changed.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    conn.frames_in += 1
                    self._client_frame(msg.data)
        finally:
            if conn.state != "closed":
                conn.state, conn.closed_at = "closed", time.monotonic()
                conn.how = conn.how or "client"
            self._changed.set()
        return ws

    def _client_frame(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
            mid = frame["headers"]["messageId"]
            ok = (isinstance(frame.get("code"), int) and frame["headers"].get("contentType") == "application/json"
                  and isinstance(frame.get("data"), str) and isinstance(mid, str))
            if ok:
                json.loads(frame["data"])
        except (ValueError, KeyError, TypeError):
            self.bad_frames.append(raw)
            return
        if not ok:
            self.bad_frames.append(frame)
            return
        if mid in self._pings:
            if not self._pings[mid].done():
                self._pings[mid].set_result(frame)
            self.pongs[mid] = frame
            return
        pending = self._by_mid.get(mid)
        if pending is None:
            self.bad_frames.append(frame)
            return
        if self._lose > 0:
            self._lose -= 1
            self.lost_acks.append(frame)
            return
        if frame["code"] != 200:
            self.nacks.append(frame)
            if 400 <= frame["code"] < 500:  # refused for good (bad request, unknown topic): not sent again
                pending.refused = True
                pending.acked_at = pending.acked_at or time.monotonic()
                pending.acked.set()
            return  # 5xx: the client could not take it now; sent again after the timeout
        pending.acks.append(frame)
        pending.acked_at = pending.acked_at or time.monotonic()
        pending.acked.set()

    # -- pushing ------------------------------------------------------------------------------------------------

    def live(self) -> list[StreamConnection]:
        """Connections open and not told to disconnect."""
        return [c for c in self.connections if c.state == "open" and not c.ws.closed]

    def push(self, topic: str, data: Mapping[str, Any], kind: str = "CALLBACK") -> Pending:
        """Deliver `data` on `topic` (at least once, see the class); returns its Pending at once."""
        pending = Pending(kind, topic, dict(data))
        self.pending.append(pending)
        self._spawn(self._deliver(pending))
        return pending

    def message(self, payload: Mapping[str, Any]) -> Pending:
        """A robot message (a §1 body, e.g. FakeDingTalk.text_message()) over the stream."""
        return self.push(TOPIC_ROBOT, payload)

    async def _deliver(self, pending: Pending) -> None:
        while len(pending.message_ids) < self.max_attempts and not self._closing:
            conn = await self._pick(pending)
            mid = f"{random.getrandbits(32):08x}_{next(self._ids)}_{int(time.time() * 1000):x}"
            self._by_mid[mid] = pending
            pending.message_ids.append(mid)
            pending.connections.append(conn.number)
            frame = {"specVersion": "1.0", "type": pending.kind,
                     "headers": {"appId": "fake-app-id", "connectionId": f"conn{conn.number}",
                                 "contentType": "application/json", "messageId": mid,
                                 "time": str(int(time.time() * 1000)), "topic": pending.topic},
                     "data": json.dumps(pending.data, ensure_ascii=False)}
            try:
                await conn.ws.send_str(json.dumps(frame, ensure_ascii=False))
            except (ConnectionError, RuntimeError):
                pass  # the connection went meanwhile: redelivered after the timeout
            if self._cut_after_frame:  # the network goes while this frame (or its ack) is on the way
                self._cut_after_frame -= 1
                self.cut()
            try:
                await asyncio.wait_for(pending.acked.wait(), self.ack_timeout)
                return
            except TimeoutError:
                continue
        pending.gave_up = not pending.acked.is_set()

    async def _pick(self, pending: Pending) -> StreamConnection:
        while True:
            choices = [c for c in self.live() if c.subscribed(pending.kind, pending.topic)]
            if choices:
                return random.choice(choices)
            self._changed.clear()
            await self._changed.wait()

    async def settled(self, seconds: float = 10.0) -> None:
        """Wait until every pushed message is acknowledged; AssertionError listing the rest after `seconds`."""
        waiting = [p for p in self.pending if not p.acked.is_set()]
        if waiting:
            waits = [asyncio.ensure_future(p.acked.wait()) for p in waiting]
            await asyncio.wait(waits, timeout=seconds)
            for w in waits:
                w.cancel()
        left = [p for p in self.pending if not p.acked.is_set()]
        assert not left, f"{len(left)} messages never acknowledged: {[p.data.get('msgId') for p in left[:5]]}"

    # -- system frames and faults -------------------------------------------------------------------------------

    def _target(self, conn: StreamConnection | None) -> list[StreamConnection]:
        return [conn] if conn is not None else self.live()

    async def ping(self, conn: StreamConnection | None = None, seconds: float = 2.0) -> dict[str, Any]:
        """A SYSTEM ping with a fresh opaque to `conn` (default: the newest live one); the client's pong."""
        target = conn or self.live()[-1]
        mid, opaque = f"ping_{next(self._ids)}", str(uuid.uuid4())
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pings[mid] = waiter
        await target.ws.send_str(json.dumps({
            "specVersion": "1.0", "type": "SYSTEM",
            "headers": {"contentType": "application/json", "messageId": mid, "time": str(int(time.time() * 1000)),
                        "topic": "ping"},
            "data": json.dumps({"opaque": opaque})}))
        answer = await asyncio.wait_for(waiter, seconds)
        assert json.loads(answer["data"]) == {"opaque": opaque} and answer["code"] == 200, answer
        return answer

    async def disconnect(self, conn: StreamConnection | None = None, grace: float | None = None) -> None:
        """The SYSTEM disconnect frame to `conn` (default every live one): it gets no new frames, and the server
        closes it `grace` s later (default disconnect_grace) if the client has not."""
        for c in self._target(conn):
            c.state = "disconnecting"
            await c.ws.send_str(json.dumps({
                "specVersion": "1.0", "type": "SYSTEM",
                "headers": {"contentType": "application/json", "topic": "disconnect",
                            "time": str(int(time.time() * 1000))},
                "data": json.dumps({"reason": "connection is expired"})}))
            self._spawn(self._close_later(c, self.disconnect_grace if grace is None else grace))
        self._changed.set()

    async def _close_later(self, conn: StreamConnection, grace: float) -> None:
        await asyncio.sleep(grace)
        if not conn.ws.closed:
            conn.how = "disconnect"
            await conn.ws.close()

    def cut(self, conn: StreamConnection | None = None) -> int:
        """Drop the TCP connection of `conn` (default every live one) without a close frame; how many."""
        targets = self._target(conn)
        for c in targets:
            c.state, c.how, c.closed_at = "closed", "cut", time.monotonic()
            transport = c.request.transport
            if transport is not None:
                transport.abort()
        self._changed.set()
        return len(targets)

    def lose_acks(self, n: int = 1) -> None:
        """Throw away the next `n` acks as if lost on the network (their messages are redelivered)."""
        self._lose += n

    def cut_every(self, seconds: float, *, mid_frame: bool = True) -> asyncio.Task[None]:
        """Cut every live connection every `seconds` until the gateway closes (cancel the task to stop).
        mid_frame: each cut waits for the next frame sent and drops the connections right after it, so the
        frame or its ack is lost with them and the message must come again."""

        async def loop() -> None:
            while not self._closing:
                await asyncio.sleep(seconds)
                if mid_frame:
                    self._cut_after_frame += 1
                else:
                    self.cut()

        return self._spawn(loop())

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop delivering and close every connection."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for c in self.connections:
            if not c.ws.closed:
                c.how = c.how or "shutdown"
                await c.ws.close()
        self._changed.set()


class FakeDingTalkStream(FakeDingTalk):
    """The DingTalk fake (OpenAPI, sessionWebhook, cards) with the Stream gateway on the same port, as
    api.dingtalk.com serves connections/open: point [dingtalk] api_base at `url` and leave out public_url."""

    def __init__(self, *, ack_timeout: float = 2.0, disconnect_grace: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream = FakeStreamGateway(client_id=self.app_key, client_secret=self.app_secret,
                                        ack_timeout=ack_timeout, disconnect_grace=disconnect_grace)

    def _app(self) -> web.Application:
        app = super()._app()
        self.stream.install(app)
        return app

    async def close(self) -> None:
        await self.stream.close()
        await super().close()

    def stream_click(self, out_track_id: str, user_id: str, action: str) -> Pending:
        """Click a button of a delivered card whose callbackType is STREAM: the §4 payload over the stream.
        The card data of the ack's response (if any) is applied to the stored card when acknowledged."""
        card = self.cards[out_track_id]
        assert card.callback_type == "STREAM", f"card {out_track_id} calls back by {card.callback_type}"
        pending = self.stream.push(TOPIC_CARD, card_click_payload(out_track_id, user_id, action,
                                                                  space_type=card.space_type, space_id=card.space_id))

        async def apply() -> None:
            await pending.acked.wait()
            answer = pending.response()
            new = (answer.get("cardData") or {}).get("cardParamMap") if isinstance(answer, dict) else None
            if isinstance(new, dict):
                card.params = {**card.params, **new}
                card.history.append(dict(card.params))

        self.stream._spawn(apply())
        return pending
