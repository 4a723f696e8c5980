"""DingTalk adapter: signatures, callback parsing, and the API/robot clients against a local fake of DingTalk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, unquote_plus

import aiohttp
import pytest
from aiohttp import web

from bot.dingtalk.callback import (
    card_click_to_inbound,
    message_to_inbound,
    parse_body,
    read_card_callback,
    read_message_callback,
)
from bot.dingtalk.client import DingTalkClient, DingTalkRobotClient, split_utf8
from bot.dingtalk.sign import (
    CallbackRejected,
    compute_sign,
    robot_sign_params,
    robot_sign_query,
    verify_callback,
    verify_shared_token,
)
from bot.transport import SendError
from cards.model import Button, Message
from core.messaging.targets import Target
from tests.fakes.dingtalk import (
    FakeDingTalk,
    Fault,
    card_click_payload,
    signed_callback,
    signed_headers,
    text_message,
)

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "dingtalk_vectors.json").read_text(encoding="utf-8"))
APP_SECRET = "ding-app-secret"
ROBOT_SECRET = "SEC0123456789abcdef0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def group(cid: str = "cidGroup1==") -> Target:
    return Target("dingtalk", "group", cid)


def user(uid: str = "wh01") -> Target:
    return Target("dingtalk", "user", uid)


def calls_to(fake: FakeDingTalk, path: str) -> int:
    return sum(1 for _, _, p in fake.calls if p == path)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_client(fake: FakeDingTalk, http: aiohttp.ClientSession, **kwargs: Any) -> DingTalkClient:
    options: dict[str, Any] = {"api_base": fake.url, "oapi_base": fake.url, "timeout": 0.3, "clock": fake.clock,
                               **kwargs}
    return DingTalkClient(http, options.pop("app_key", fake.app_key), options.pop("app_secret", fake.app_secret),
                          options.pop("robot_code", fake.robot_code), **options)


@pytest.fixture
def client(fake: FakeDingTalk, http: aiohttp.ClientSession) -> DingTalkClient:
    return make_client(fake, http)


def make_robots(fake: FakeDingTalk, http: aiohttp.ClientSession, **kwargs: Any) -> DingTalkRobotClient:
    options: dict[str, Any] = {"timeout": 0.3, "clock": fake.clock, **kwargs}
    robots = options.pop("robots", {"alerts": {"access_token": "robot-token-1", "secret": ROBOT_SECRET}})
    return DingTalkRobotClient(http, robots, fake.url, **options)


# -- signatures ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["sign"], ids=lambda v: v["secret"])
def test_official_sign_vectors(vector: dict[str, str]) -> None:
    """The documented formula reproduces every vector, for inbound verification and custom-robot signing."""
    ts, secret = vector["timestamp"], vector["secret"]
    assert compute_sign(ts, secret) == vector["sign"]
    assert compute_sign(int(ts), secret) == vector["sign"]
    verify_callback(ts, vector["sign"], secret, now_ms=int(ts))
    assert robot_sign_params(secret, int(ts)) == {"timestamp": ts, "sign": vector["sign"]}
    query = parse_qs(robot_sign_query(secret, int(ts)).lstrip("&"))
    assert query == {"timestamp": [ts], "sign": [vector["sign"]]}  # decodes back to the raw sign: encoded once
    assert unquote_plus(vector["urlencoded"]) == vector["sign"]
    if vector["urlencoded"] == quote_plus(vector["sign"]):  # vector 3 lists "=" unencoded; both decode alike
        assert robot_sign_query(secret, int(ts)) == f"&timestamp={ts}&sign={vector['urlencoded']}"


def test_window_is_one_hour_inclusive() -> None:
    """Exactly ±1 h passes; one millisecond more is stale (VECTORS window_ms)."""
    v = VECTORS["sign"][0]
    ts = int(v["timestamp"])
    window = VECTORS["window_ms"]
    for now in (ts - window, ts + window):
        verify_callback(v["timestamp"], v["sign"], v["secret"], now_ms=now)
    for now in (ts - window - 1, ts + window + 1):
        with pytest.raises(CallbackRejected, match="stale timestamp"):
            verify_callback(v["timestamp"], v["sign"], v["secret"], now_ms=now)


V1 = VECTORS["sign"][0]  # its sign contains "+", so encoding mistakes show


@pytest.mark.parametrize(("timestamp", "sign", "reason"), [
    (V1["timestamp"], compute_sign(V1["timestamp"], "wrong secret"), "sign mismatch"),
    (V1["timestamp"], V1["urlencoded"], "malformed sign"),  # URL-encoded in the header
    (V1["timestamp"], V1["sign"].replace("+", " "), "malformed sign"),  # "+" became a space
    (V1["timestamp"], V1["sign"].rstrip("="), "malformed sign"),  # padding lost
    (V1["timestamp"], "not base64 at all!", "malformed sign"),
    (V1["timestamp"], "签名", "malformed sign"),
    (V1["timestamp"], V1["sign"][:-2] + "N=", "sign mismatch"),  # decodes to the same bytes: still rejected
    (V1["timestamp"], "", "missing headers"),
    (None, V1["sign"], "missing headers"),
    ("", V1["sign"], "missing headers"),
    ("1577262236757.0", V1["sign"], "malformed timestamp"),
    ("-1577262236757", V1["sign"], "malformed timestamp"),
    ("１５７７２６２２３６７５７", V1["sign"], "malformed timestamp"),  # fullwidth digits
    ("9" * 40, V1["sign"], "malformed timestamp"),
])
def test_bad_callback_headers_are_rejected(timestamp: str | None, sign: str, reason: str) -> None:
    """Forged, mangled, missing or odd headers → CallbackRejected with a reason, never another exception."""
    with pytest.raises(CallbackRejected) as info:
        verify_callback(timestamp, sign, V1["secret"], now_ms=int(V1["timestamp"]))
    assert info.value.reason == reason


def test_read_message_callback_checks_everything() -> None:
    """The one-call entry point: headers from the driver pass; forged/stale/missing/oversized/malformed fail."""
    now = int(time.time() * 1000)
    payload = text_message("库存 奶油", msg_id="msgOK", created_ms=now)
    headers, body = signed_callback(payload, APP_SECRET, timestamp_ms=now)
    inbound = read_message_callback(headers, body, APP_SECRET, now_ms=now, robot_code="ding-robot-code")
    assert inbound is not None and inbound.text == "库存 奶油"
    lower = {k.lower(): v for k, v in headers.items()}
    assert read_message_callback(lower, body, APP_SECRET, now_ms=now) is not None

    cases: list[tuple[dict[str, str], bytes, str]] = [
        (signed_headers(APP_SECRET, now, forge=True), body, "sign mismatch"),
        (signed_headers(APP_SECRET, now, skew_ms=-3_600_001), body, "stale timestamp"),
        (signed_headers(APP_SECRET, now, skew_ms=3_600_001), body, "stale timestamp"),
        ({"Content-Type": "application/json"}, body, "missing headers"),
        (headers, b"{" + b" " * (64 * 1024) + b"}", "body too large"),
        (headers, b"{not json", "malformed json"),
        (headers, b"\xff\xfe{}", "malformed json"),
        (headers, b"[1, 2]", "malformed json"),
        (headers, b"[" * 60_000, "malformed json"),  # nesting bomb under the size limit
        (headers, json.dumps({**payload, "text": "plain"}).encode(), "malformed message: text.content"),
        (headers, json.dumps({**payload, "robotCode": "someone-else"}).encode(), "other robot"),
    ]
    for hdrs, raw, reason in cases:
        with pytest.raises(CallbackRejected) as info:
            read_message_callback(hdrs, raw, APP_SECRET, now_ms=now, robot_code="ding-robot-code")
        assert info.value.reason == reason


@pytest.mark.parametrize(("key", "value"), [
    ("msgId", None), ("msgId", 17), ("msgtype", 3), ("conversationType", "3"), ("conversationType", None),
    ("conversationId", None), ("senderStaffId", 12), ("sessionWebhook", 5), ("sessionWebhook", "ftp://x"),
    ("sessionWebhookExpiredTime", "soon"), ("sessionWebhookExpiredTime", True), ("text", {"content": 1}),
    ("text", None),
])
def test_malformed_fields_never_escape_as_other_exceptions(key: str, value: Any) -> None:
    """Any field of the wrong type or shape → CallbackRejected, not KeyError/TypeError (which would be a 500)."""
    payload = text_message("hi", conversation_id="cidG==")
    payload[key] = value
    with pytest.raises(CallbackRejected):
        message_to_inbound(payload)


def test_shared_token_for_card_callbacks() -> None:
    """Our own secret in the registered card callback URL is compared in constant time."""
    verify_shared_token("s3cret", "s3cret")
    for provided in (None, "", "s3cre", "s3cret!", "秘密"):
        with pytest.raises(CallbackRejected, match="bad token"):
            verify_shared_token(provided, "s3cret")
    with pytest.raises(CallbackRejected):
        verify_shared_token("anything", "")


# -- JSON → Inbound ------------------------------------------------------------------------------------------------


def test_one_to_one_text_message() -> None:
    payload = text_message("  库存 奶油 ", staff_id="wh01", msg_id="msgP2P001", created_ms=1_764_000_000_000,
                           session_webhook="https://oapi.dingtalk.com/robot/sendBySession?session=abc")
    inbound = message_to_inbound(payload, received_at=AT)
    assert inbound is not None
    assert (inbound.platform, inbound.user_id, inbound.dedupe_key) == ("dingtalk", "wh01", "msgP2P001")
    assert inbound.chat_id is None and inbound.text == "库存 奶油" and inbound.action is None
    assert dict(inbound.reply) == {"session_webhook": "https://oapi.dingtalk.com/robot/sendBySession?session=abc",
                                   "session_webhook_expires": 1_764_000_000_000 + 5_400_000}
    assert inbound.received_at == AT


def test_group_text_message() -> None:
    """Group: conversationType "2" (a string), chat_id = conversationId, the @mention's leading space stripped."""
    payload = text_message("审批 12", staff_id="mgr01", conversation_id="cidGroup1==", msg_id="msgGRP001")
    assert payload["text"]["content"] == " 审批 12" and payload["conversationType"] == "2"
    inbound = message_to_inbound(payload)
    assert inbound is not None
    assert (inbound.user_id, inbound.chat_id, inbound.text, inbound.dedupe_key) == (
        "mgr01", "cidGroup1==", "审批 12", "msgGRP001")
    assert inbound.received_at.tzinfo is not None


def test_ignored_messages() -> None:
    """None = acknowledge and ignore: audio, notices without msgtype, senders outside the org."""
    assert message_to_inbound(text_message("x", msgtype="audio")) is None
    assert message_to_inbound({"errorCode": 20001, "errorMsg": "quota"}) is None
    assert message_to_inbound(text_message("x", staff_id=None)) is None
    rich = message_to_inbound(text_message("库存 牛奶", msgtype="richText"))
    assert rich is not None and rich.text == "库存 牛奶"


def test_card_click() -> None:
    """A click → action = the button key from cardPrivateData.params, user = the clicker, a stable dedupe key."""
    payload = card_click_payload("track-001", "mgr01", "approval:12:1:approve", space_id="cidGroup1==")
    inbound = read_card_callback(json.dumps(payload).encode(), received_at=AT)
    assert inbound is not None
    content = json.loads(payload["content"])
    canonical = json.dumps(["track-001", "mgr01", content], sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    assert inbound.dedupe_key == "card:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]
    assert (inbound.user_id, inbound.action, inbound.text, inbound.chat_id) == (
        "mgr01", "approval:12:1:approve", None, "cidGroup1==")
    assert dict(inbound.reply) == {"card_id": "track-001", "space_type": "IM_GROUP", "space_id": "cidGroup1=="}
    again = card_click_to_inbound(json.loads(json.dumps(payload)))  # a platform retry: same key
    other = card_click_to_inbound(card_click_payload("track-001", "wh01", "approval:12:1:approve"))
    assert again is not None and again.dedupe_key == inbound.dedupe_key
    assert other is not None and other.dedupe_key != inbound.dedupe_key
    one_to_one = card_click_to_inbound(card_click_payload("t2", "u1", "a", space_type="IM_ROBOT", space_id="u1"))
    assert one_to_one is not None and one_to_one.chat_id is None


@pytest.mark.parametrize("change", [
    {"content": "{broken"}, {"content": "[]"}, {"content": json.dumps({"cardPrivateData": {}})},
    {"content": 5}, {"userId": None}, {"outTrackId": ""}, {"spaceType": 3},
])
def test_malformed_card_clicks(change: dict[str, Any]) -> None:
    payload = {**card_click_payload("track-001", "mgr01", "approval:1:1:approve"), **change}
    with pytest.raises(CallbackRejected):
        card_click_to_inbound(payload)
    assert card_click_to_inbound({**payload, "type": "otherCallback"}) is None
    with pytest.raises(CallbackRejected, match="malformed json"):
        parse_body(b"null")


# -- OpenAPI client ------------------------------------------------------------------------------------------------


async def test_token_is_cached_and_fetched_once_under_concurrency(fake: FakeDingTalk,
                                                                   client: DingTalkClient) -> None:
    await asyncio.gather(*(client.send(user(f"u{i}"), Message("text", text=f"hello {i}")) for i in range(10)))
    await client.send(group(), Message("text", text="again"))
    assert fake.token_requests == 1 and client.token_fetches == 1
    assert sorted(fake.texts("user")) == sorted(f"hello {i}" for i in range(10))
    assert fake.texts("group") == ["again"]


async def test_token_expiry_mid_stream_refreshes_once(fake: FakeDingTalk, client: DingTalkClient) -> None:
    await client.send(user(), Message("text", text="one"))
    fake.expire_tokens()  # the platform forgets the token before our cached expiry
    await client.send(user(), Message("text", text="two"))
    assert fake.token_requests == 2
    assert calls_to(fake, "/v1.0/robot/oToMessages/batchSend") == 3  # one rejected, one retried
    fake.clock.advance(7200)  # past expireIn: refreshed proactively, no rejected call
    await client.send(user(), Message("text", text="three"))
    assert fake.token_requests == 3 and calls_to(fake, "/v1.0/robot/oToMessages/batchSend") == 4
    assert fake.texts("user") == ["one", "two", "three"]


@pytest.mark.parametrize("status", [400, 401])
async def test_token_rejected_again_is_bounded(http: aiohttp.ClientSession, status: int) -> None:
    """A token that keeps being rejected: exactly one refresh and one retry, then SendError (no recursion)."""
    async with FakeDingTalk(auth_error_status=status) as fake:
        client = make_client(fake, http)
        fake.reject_tokens = True
        with pytest.raises(SendError) as info:
            await client.send(user(), Message("text", text="x"))
        assert info.value.retryable and info.value.code in ("InvalidAuthentication", 401)
        assert fake.token_requests == 2 and calls_to(fake, "/v1.0/robot/oToMessages/batchSend") == 2
        assert fake.sent == []


async def test_bad_credentials_are_permanent(fake: FakeDingTalk, http: aiohttp.ClientSession) -> None:
    client = make_client(fake, http, app_secret="wrong")
    with pytest.raises(SendError) as info:
        await client.send(user(), Message("text", text="x"))
    assert not info.value.retryable and info.value.code == "invalidClientIdOrSecret"


async def test_throttling_is_retryable(fake: FakeDingTalk, client: DingTalkClient) -> None:
    fake.throttle("batchSend", times=3)
    for _ in range(3):
        with pytest.raises(SendError) as info:
            await client.send(user(), Message("text", text="x"))
        assert info.value.retryable and info.value.code == "send.too.fast"
    await client.send(user(), Message("text", text="after the burst"))
    assert fake.texts("user") == ["after the burst"]
    fake.flow_controlled.add("wh01")
    with pytest.raises(SendError) as info:
        await client.send(user(), Message("text", text="x"))
    assert info.value.retryable and info.value.code == "flowControlledStaffIdList"
    fake.fail("groupSend", status=429, body={"code": "Throttling.Api", "message": "rate"})
    with pytest.raises(SendError) as info:
        await client.send(group(), Message("text", text="x"))
    assert info.value.retryable


async def test_permanent_errors(fake: FakeDingTalk, http: aiohttp.ClientSession, client: DingTalkClient) -> None:
    fake.invalid_staff.add("ghost")
    with pytest.raises(SendError) as info:
        await client.send(user("ghost"), Message("text", text="x"))
    assert not info.value.retryable and info.value.code == "invalidStaffIdList"
    other = make_client(fake, http, robot_code="not-our-robot")
    with pytest.raises(SendError) as info:
        await other.send(group(), Message("text", text="x"))
    assert not info.value.retryable and info.value.code == "invalidParameter.robotCode.auth"
    with pytest.raises(SendError) as info:
        await client.send(Target("wecom", "user", "x"), Message("text", text="x"))
    assert not info.value.retryable
    with pytest.raises(SendError) as info:
        await client.send(Target("dingtalk", "robot", "nobody"), Message("text", text="x"))
    assert not info.value.retryable and info.value.code == "unknown-robot"


async def test_5xx_timeouts_and_connection_errors_are_retryable(fake: FakeDingTalk, http: aiohttp.ClientSession,
                                                                client: DingTalkClient) -> None:
    fake.fail("groupSend", status=503)
    with pytest.raises(SendError) as info:
        await client.send(group(), Message("text", text="x"))
    assert info.value.retryable and info.value.code == "ServiceUnavailable"
    fake.fail("token", status=502, body={"code": "BadGateway", "message": "x"})
    fresh = make_client(fake, http)
    with pytest.raises(SendError) as info:
        await fresh.send(group(), Message("text", text="x"))
    assert info.value.retryable
    fake.hang("groupSend", seconds=5)
    started = time.monotonic()
    with pytest.raises(SendError) as info:
        await client.send(group(), Message("text", text="x"))
    assert info.value.retryable and info.value.code == "timeout" and time.monotonic() - started < 1.5
    fake.inject("groupSend", Fault(reset=True))
    with pytest.raises(SendError) as info:
        await client.send(group(), Message("text", text="x"))
    assert info.value.retryable and info.value.code == "connection"
    dead = make_client(fake, http, api_base="http://127.0.0.1:9", oapi_base="http://127.0.0.1:9")
    with pytest.raises(SendError) as info:
        await dead.send(group(), Message("text", text="x"))
    assert info.value.retryable and info.value.code == "connection"
    await client.send(group(), Message("text", text="recovered"))
    assert fake.texts("group") == ["recovered"]


async def test_silently_dropped_message_is_not_detectable(fake: FakeDingTalk, client: DingTalkClient) -> None:
    """The platform can answer OK and lose the message; the transport cannot know (documents the limit)."""
    fake.drop("groupSend")
    await client.send(group(), Message("text", text="lost"))
    await client.send(group(), Message("text", text="kept"))
    assert fake.texts("group") == ["kept"]


def test_split_utf8() -> None:
    text = "库存😀a\n" * 3000
    for limit in (4, 5, 7, 100, 20_000):
        pieces = split_utf8(text, limit)
        assert "".join(pieces) == text
        assert all(0 < len(p.encode()) <= limit for p in pieces)
    assert split_utf8("short", 20_000) == ["short"]
    assert split_utf8("", 10) == [""]
    newline_first = split_utf8("a" * 60 + "\n" + "b" * 60, 100)
    assert newline_first == ["a" * 60 + "\n", "b" * 60]
    with pytest.raises(ValueError):
        split_utf8("x", 3)


async def test_long_text_is_split_within_limits(fake: FakeDingTalk, client: DingTalkClient) -> None:
    """50 kB of Chinese with newlines and quotes → several group messages the fake accepts (msgParam ≤ 15 000
    bytes after JSON escaping), which re-join to the original."""
    text = "".join(f"第{i}行：奶油库存 \"低\" 于安全线\n" for i in range(2000))
    assert len(text.encode()) > 20_000
    await client.send(group(), Message("text", text=text))
    parts = fake.texts("group")
    assert len(parts) > 1 and "".join(parts) == text
    assert all(len(json.dumps({"content": p}, ensure_ascii=False, separators=(",", ":")).encode()) <= 15_000
               for p in parts)


async def test_fake_enforces_the_size_limits(fake: FakeDingTalk, http: aiohttp.ClientSession,
                                             client: DingTalkClient) -> None:
    """The acceptance above means something: the fake refuses a 20 001-byte webhook body (460101) and a msgParam
    over 15 000 bytes, and such a refusal is permanent for the client."""
    url, _ = fake.new_session()
    body = {"msgtype": "text", "text": {"content": ""}}
    body["text"]["content"] = "x" * (20_001 - len(json.dumps(body, separators=(",", ":"))))
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(raw) == 20_001
    async with http.post(url, data=raw, headers={"Content-Type": "application/json"}) as resp:
        assert (await resp.json())["errcode"] == 460101
    token = await client.access_token()
    param = json.dumps({"content": "x" * 15_000})
    async with http.post(f"{fake.url}/v1.0/robot/groupMessages/send", headers={"x-acs-dingtalk-access-token": token},
                         json={"robotCode": fake.robot_code, "msgKey": "sampleText", "msgParam": param,
                               "openConversationId": "cidG=="}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == "invalidParameter.msgParam.invalid"
    assert fake.sent == []


async def test_markdown(fake: FakeDingTalk, client: DingTalkClient) -> None:
    await client.send(group(), Message("markdown", title="日报", text="### 风险品\n\n- 奶油 **12** 箱"))
    [sent] = fake.messages("group")
    assert sent.kind == "sampleMarkdown" and sent.payload == {"title": "日报", "text": "### 风险品\n\n- 奶油 **12** 箱"}
    await client.send(user(), Message("markdown", text="# 标题行\n正文"))
    assert fake.messages("user")[0].payload["title"] == "标题行"


async def test_image_upload_flow(fake: FakeDingTalk, client: DingTalkClient) -> None:
    """PNG → media/upload → caption as text + sampleImageMsg with photoURL = the media id; a token rejected by
    the upload is refreshed once."""
    await client.send(group(), Message("text", text="warm up"))
    fake.expire_tokens()
    await client.send(group(), Message("image", png=PNG, title="奶油 30 天趋势"))
    [media_id] = fake.media
    assert fake.media[media_id] == PNG
    kinds = [(s.kind, s.payload) for s in fake.messages("group")][1:]
    assert kinds == [("sampleText", {"content": "奶油 30 天趋势"}), ("sampleImageMsg", {"photoURL": media_id})]
    assert fake.token_requests == 2
    fake.inject("upload", Fault(body={"errcode": -1, "errmsg": "系统繁忙"}))
    with pytest.raises(SendError) as info:
        await client.send(user(), Message("image", png=PNG))
    assert info.value.retryable and info.value.code == -1


APPROVAL = Message("card", title="采购申请 CG20261126001", text="奶油 24 箱，**待审批**", buttons=(
    Button("同意", "approval:12:1:approve", "primary"), Button("驳回", "approval:12:1:reject", "danger")))


async def test_card_send_click_and_update(fake: FakeDingTalk, http: aiohttp.ClientSession,
                                          aiohttp_server: Any) -> None:
    """Round trip: the client creates and delivers a card, a click reaches our callback as the button key with
    the clicker's id, and an update with card_id = the click's outTrackId changes the card in place."""
    clicks: list[Any] = []

    async def card_callback(request: web.Request) -> web.Response:
        verify_shared_token(request.query.get("token"), "route-secret")
        inbound = read_card_callback(await request.read())
        clicks.append(inbound)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/dingtalk/card-callback", card_callback)
    bot = await aiohttp_server(app)
    client = make_client(fake, http, card_template_id="tpl-approval.schema")
    await client.register_card_callback(str(bot.make_url("/dingtalk/card-callback?token=route-secret")),
                                        "api-secret", "jxcbot")
    await client.send(group("cidGroup1=="), APPROVAL)
    [card] = fake.cards.values()
    assert (card.space_type, card.space_id, card.callback_type, card.route_key) == (
        "IM_GROUP", "cidGroup1==", "HTTP", "jxcbot")
    assert card.params["title"] == "采购申请 CG20261126001"
    assert json.loads(card.params["buttons"]) == [
        {"text": "同意", "action": "approval:12:1:approve", "style": "primary"},
        {"text": "驳回", "action": "approval:12:1:reject", "style": "danger"}]

    status, _ = await fake.click(http, card.out_track_id, "mgr01", "approval:12:1:approve")
    assert status == 200
    [inbound] = clicks
    assert (inbound.user_id, inbound.action, inbound.reply["card_id"]) == (
        "mgr01", "approval:12:1:approve", card.out_track_id)

    done = Message("card", title=APPROVAL.title, text="奶油 24 箱，**已同意**（张经理）",
                   card_id=inbound.reply["card_id"])
    await client.send(group("cidGroup1=="), done)
    assert card.params["content"] == "奶油 24 箱，**已同意**（张经理）" and card.params["buttons"] == "[]"
    assert len(card.history) == 2 and len(fake.cards) == 1

    await client.send(user("mgr01"), APPROVAL)  # 1:1 with the robot
    assert [(c.space_type, c.space_id) for c in fake.cards.values()][1] == ("IM_ROBOT", "mgr01")
    with pytest.raises(SendError) as info:
        await client.send(group(), Message("card", title="x", card_id="no-such-card"))
    assert not info.value.retryable
    fake.card_deliver_error = "机器人不在群内"
    with pytest.raises(SendError) as info:
        await client.send(group("cidOther=="), APPROVAL)
    assert not info.value.retryable and info.value.code == "deliver"


async def test_card_without_template_falls_back_to_text(fake: FakeDingTalk, client: DingTalkClient) -> None:
    await client.send(group(), APPROVAL)
    assert fake.cards == {}
    assert fake.texts("group") == ["采购申请 CG20261126001\n奶油 24 箱，**待审批**\n可选操作：同意 / 驳回\n"
                                   "请在钉钉中 jxcbot 发来的卡片上点击按钮办理。"]


async def test_session_webhook_reply_and_expiry(fake: FakeDingTalk, client: DingTalkClient) -> None:
    """Reply to an inbound through its sessionWebhook; after ~90 min it is refused before any request is made;
    a session the platform has forgotten answers 300001 → permanent; foreign webhook hosts are refused."""
    inbound = message_to_inbound(fake.text_message("库存 奶油", msg_id="m1"))
    assert inbound is not None
    target = Target("dingtalk", "session", inbound.reply["session_webhook"], inbound.reply["session_webhook_expires"])
    await client.send(target, Message("text", text="奶油：在库 12 箱"))
    await client.send(target, Message("markdown", title="库存", text="**奶油** 12 箱"))
    await client.send(target, APPROVAL)  # cards cannot go through a session: text
    await client.send(target, Message("image", png=PNG, title="趋势"))
    kinds = [s.kind for s in fake.messages("session")]
    assert kinds == ["text", "markdown", "text", "markdown"]
    assert fake.texts("session")[0] == "奶油：在库 12 箱"
    assert "![趋势](@lADfake" in fake.messages("session")[3].payload["markdown"]["text"]

    before = calls_to(fake, "/robot/sendBySession")
    fake.clock.advance(5_400)
    with pytest.raises(SendError) as info:
        await client.send(target, Message("text", text="too late"))
    assert not info.value.retryable and info.value.code == "session-expired"
    assert calls_to(fake, "/robot/sendBySession") == before
    no_expiry = Target("dingtalk", "session", target.address)
    with pytest.raises(SendError) as info:
        await client.send(no_expiry, Message("text", text="too late"))
    assert not info.value.retryable and info.value.code == 300001
    evil = Target("dingtalk", "session", "https://attacker.example/robot/sendBySession?session=x")
    with pytest.raises(SendError) as info:
        await client.send(evil, Message("text", text="secret stock data"))
    assert info.value.code == "session-url"


async def test_a_session_reply_goes_through_its_fallback_for_images_and_once_the_webhook_expires(
        fake: FakeDingTalk, client: DingTalkClient) -> None:
    """With a fallback (the group, or the person, through the OpenAPI): an image goes as sampleImageMsg rather than
    markdown on the webhook, and a text after the webhook expired still arrives; text before expiry uses the webhook."""
    inbound = message_to_inbound(fake.text_message("库存 奶油", msg_id="m9"))
    assert inbound is not None
    target = Target("dingtalk", "session", inbound.reply["session_webhook"], inbound.reply["session_webhook_expires"],
                    Target("dingtalk", "user", inbound.user_id))
    await client.send(target, Message("text", text="奶油：在库 12 箱"))
    await client.send(target, Message("image", png=PNG, title="趋势"))
    assert [s.kind for s in fake.messages("session")] == ["text"]
    assert [s.kind for s in fake.messages("user")] == ["sampleText", "sampleImageMsg"]
    assert fake.messages("user")[1].payload["photoURL"].startswith("@lADfake")
    fake.clock.advance(5_400)
    await client.send(target, Message("text", text="稍后的回复"))
    assert [s.kind for s in fake.messages("user")][-1] == "sampleText"
    assert [s.kind for s in fake.messages("session")] == ["text"]


# -- custom group robot ---------------------------------------------------------------------------------------------


def _time_with_plus_in_sign(secret: str) -> float:
    ms = int(time.time() * 1000)
    while "+" not in compute_sign(ms, secret) or "/" not in compute_sign(ms, secret):
        ms += 1
    return ms / 1000


async def test_robot_signature_accepted_and_block_after_20(fake: FakeDingTalk, http: aiohttp.ClientSession) -> None:
    """Signed sends (a sign with "+" and "/") pass the fake's check; the 21st in a minute is answered 130101 and
    the robot is blocked for 10 minutes: retryable, retry_after 600, and later sends are held back locally."""
    fake.clock.freeze(_time_with_plus_in_sign(ROBOT_SECRET))
    fake.add_robot("robot-token-1", secret=ROBOT_SECRET)
    robots = make_robots(fake, http, per_minute=None)
    for i in range(20):
        await robots.send(Target("dingtalk", "robot", "alerts"), Message("text", text=f"预警 {i}"))
    assert len(fake.messages("robot")) == 20
    with pytest.raises(SendError) as info:
        await robots.send(Target("dingtalk", "robot", "alerts"), Message("text", text="21st"))
    assert info.value.retryable and info.value.code == 130101 and info.value.retry_after == pytest.approx(600)
    before = calls_to(fake, "/robot/send")
    fake.clock.advance(120)
    with pytest.raises(SendError) as info:
        await robots.send(Target("dingtalk", "robot", "alerts"), Message("text", text="22nd"))
    assert info.value.retryable and info.value.retry_after == pytest.approx(480)
    assert calls_to(fake, "/robot/send") == before
    fake.clock.advance(481)
    await robots.send(Target("dingtalk", "robot", "alerts"), Message("markdown", title="恢复", text="**ok**"))
    assert fake.messages("robot")[-1].payload == {"msgtype": "markdown",
                                                  "markdown": {"title": "恢复", "text": "**ok**"}}


async def test_robot_local_limit_and_errors(fake: FakeDingTalk, http: aiohttp.ClientSession) -> None:
    fake.add_robot("robot-token-1", secret=ROBOT_SECRET)
    fake.add_robot("kw-token", keywords=("库存",))
    robots = make_robots(fake, http, robots={
        "alerts": {"access_token": "robot-token-1", "secret": ROBOT_SECRET},
        "wrong-secret": {"access_token": "robot-token-1", "secret": "SECnope"},
        "keywords": {"access_token": "kw-token", "keyword": "库存"},
        "no-keyword": {"access_token": "kw-token"},
        "gone": {"access_token": "deleted-token"},
    })
    alerts = Target("dingtalk", "robot", "alerts")
    for i in range(20):
        await robots.send(alerts, Message("text", text=f"{i}"))
    with pytest.raises(SendError) as info:  # our own limiter: never provokes the 10-minute block
        await robots.send(alerts, Message("text", text="21st"))
    assert info.value.retryable and info.value.code == "rate-limit" and 0 < info.value.retry_after <= 60
    assert calls_to(fake, "/robot/send") == 20

    for name, code in (("wrong-secret", 310000), ("no-keyword", 310000), ("gone", 300005)):
        with pytest.raises(SendError) as info:
            await robots.send(Target("dingtalk", "robot", name), Message("text", text="hello"))
        assert not info.value.retryable and info.value.code == code
        assert "deleted-token" not in str(info.value) and "SECnope" not in str(info.value)
    await robots.send(Target("dingtalk", "robot", "keywords"), Message("image", png=PNG, title="库存趋势"))
    assert fake.messages("robot")[-1].payload["text"]["content"].startswith("库存趋势\n")
    before = len(fake.messages("robot"))
    await robots.send(Target("dingtalk", "robot", "keywords"), Message("text", text="库存" + "多" * 20_000))
    parts = [s.payload["text"]["content"] for s in fake.messages("robot")][before:]
    assert len(parts) == 4 and all(p.startswith("库存") for p in parts)  # the keyword on every part
    assert parts[0] + "".join(p.removeprefix("库存\n") for p in parts[1:]) == "库存" + "多" * 20_000

    raw = robot_sign_params(ROBOT_SECRET, fake.clock.ms())  # a hand-built URL with a raw "+" fails like on DingTalk
    while "+" not in raw["sign"]:
        fake.clock.advance(0.001)
        raw = robot_sign_params(ROBOT_SECRET, fake.clock.ms())
    url = f"{fake.url}/robot/send?access_token=robot-token-1&timestamp={raw['timestamp']}&sign={raw['sign']}"
    fake.robots["robot-token-1"].window.clear()
    async with http.post(url, json={"msgtype": "text", "text": {"content": "x"}}) as resp:
        assert (await resp.json())["errcode"] == 310000


async def test_secrets_never_logged(fake: FakeDingTalk, http: aiohttp.ClientSession,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.add_robot("robot-token-1", secret=ROBOT_SECRET)
    client = make_client(fake, http, robots=make_robots(fake, http))
    await client.send(group(), Message("text", text="x"))
    fake.expire_tokens()
    await client.send(group(), Message("text", text="y"))
    await client.send(Target("dingtalk", "robot", "alerts"), Message("text", text="z"))
    fake.reject_tokens = True
    with pytest.raises(SendError) as info:
        await client.send(group(), Message("text", text="x"))
    text = caplog.text + str(info.value) + repr(client)
    for secret in (fake.app_secret, ROBOT_SECRET, "robot-token-1", *fake.tokens):
        assert secret not in text
    assert fake.tokens  # the check above did look at real tokens


async def test_a_link_goes_as_sample_link_link_or_a_robot_link_with_its_keyword(
        fake: FakeDingTalk, client: DingTalkClient, http: aiohttp.ClientSession) -> None:
    link = Message("link", title="十一月库存健康报告", text="周转天数、呆滞品与缺货",
                   url="https://bot.example.com/reports/2026-11", pic_url="https://bot.example.com/c.png")
    await client.send(Target("dingtalk", "user", "mgr01"), link)
    [sent] = fake.messages("user")
    assert sent.kind == "sampleLink"
    assert sent.payload == {"title": "十一月库存健康报告", "text": "周转天数、呆滞品与缺货",
                            "messageUrl": "https://bot.example.com/reports/2026-11",
                            "picUrl": "https://bot.example.com/c.png"}
    inbound = message_to_inbound(fake.text_message("报告", msg_id="m-link"))
    assert inbound is not None
    await client.send(Target("dingtalk", "session", inbound.reply["session_webhook"],
                             inbound.reply["session_webhook_expires"]), link)
    assert fake.messages("session")[-1].payload["link"]["messageUrl"] == link.url
    fake.add_robot("kw-token", keywords=("库存",))
    robots = make_robots(fake, http, robots={"kw": {"access_token": "kw-token", "keyword": "库存"}})
    await robots.send(Target("dingtalk", "robot", "kw"), Message("link", title="月报", url=link.url))
    body = fake.messages("robot")[-1].payload
    assert body["msgtype"] == "link" and body["link"]["text"].startswith("库存")  # the robot's keyword, or refused
