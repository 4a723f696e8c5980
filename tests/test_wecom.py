"""WeCom adapter: callback crypto (official vectors, attacks), callback → Inbound, API clients against the fake."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import xmltodict
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wechatpy.enterprise.crypto import PrpCrypto

from bot.inbound import Inbound
from bot.platforms import WeComConfig, wecom_routes
from bot.transport import SendError
from bot.wecom.callback import parse_inbound
from bot.wecom.client import (
    APP_MARKDOWN_LIMIT,
    ROBOT_MARKDOWN_LIMIT,
    TEXT_LIMIT,
    WeComClient,
    WeComRobotClient,
    WeComTransport,
    split_utf8,
)
from bot.wecom.crypto import DEFAULT_MAX_BODY, CallbackCrypto, CallbackRejected, ReplayGuard
from cards.model import Button, Message
from core.messaging.targets import Target
from tests.fakes.wecom import PATH_GETTOKEN, PATH_ROBOT, PATH_SEND, PATH_UPDATE, CallbackDriver, FakeWeCom, Fault

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "fixtures" / "wecom_vectors.json").read_text("utf-8"))
NAMES = ["V1", "V2", "V3"]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # header + 1 KiB of "pixels"

# Test-only callback secrets (the bot side of a fake app).
TOKEN = "jxcTestToken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP = "wwfakecorp0001"


def crypto_for(name: str, at: str, **kw: Any) -> CallbackCrypto:
    """The vector's app, with a clock frozen at the vector's timestamp."""
    v = VECTORS[name]
    return CallbackCrypto(v["token"], v["encoding_aes_key"], v["corp_id"], clock=lambda: float(at), **kw)


def envelope(v: dict[str, Any]) -> bytes:
    """The POST body WeCom sends for a vector (newlines as in the samples)."""
    return (f"<xml>\n<ToUserName><![CDATA[{v['corp_id']}]]></ToUserName>\n"
            f"<Encrypt><![CDATA[{v['post']['encrypt']}]]></Encrypt>\n"
            f"<AgentID><![CDATA[{v['post']['agent_id']}]]></AgentID>\n</xml>").encode()


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------------------------
# crypto: official vectors


@pytest.mark.parametrize("name", NAMES)
def test_vector_url_check_returns_exact_plaintext(name: str) -> None:
    g = VECTORS[name]["get"]
    crypto = crypto_for(name, g["timestamp"])
    assert crypto.verify_url(g["msg_signature"], g["timestamp"], g["nonce"], g["echostr"]) == g["plain"]


@pytest.mark.parametrize("name", NAMES)
def test_vector_url_check_survives_plus_turned_into_space(name: str) -> None:
    g = VECTORS[name]["get"]
    assert "+" in g["echostr"]
    mangled = g["echostr"].replace("+", " ")
    crypto = crypto_for(name, g["timestamp"])
    assert crypto.verify_url(g["msg_signature"], g["timestamp"], g["nonce"], mangled) == g["plain"]


def test_vector_url_check_still_percent_encoded() -> None:
    g = VECTORS["V2"]["get"]
    encoded = "P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D"
    assert crypto_for("V2", g["timestamp"]).verify_url(g["msg_signature"], g["timestamp"], g["nonce"], encoded) \
        == g["plain"]


def test_vector_v3_wrong_nonce_is_rejected() -> None:
    g = VECTORS["V3"]["get"]
    with pytest.raises(CallbackRejected, match="bad signature"):
        crypto_for("V3", g["timestamp"]).verify_url(g["msg_signature"], g["timestamp"], g["bad_nonce"], g["echostr"])


@pytest.mark.parametrize("name", NAMES)
def test_vector_post_decrypts(name: str) -> None:
    v = VECTORS[name]
    p = v["post"]
    plain = crypto_for(name, p["timestamp"]).decrypt_post(p["msg_signature"], p["timestamp"], p["nonce"], envelope(v))
    for fragment in p["plain_contains"]:
        assert fragment in plain


def test_vector_v1_post_to_inbound() -> None:
    v = VECTORS["V1"]
    p = v["post"]
    plain = crypto_for("V1", p["timestamp"]).decrypt_post(p["msg_signature"], p["timestamp"], p["nonce"], envelope(v))
    got = parse_inbound(plain, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert got == Inbound(platform="wecom", user_id="ChenJiaShun", dedupe_key="wecom:msg:ChenJiaShun:1456453720",
                          received_at=datetime(2026, 1, 1, tzinfo=UTC), text="你好")


def test_vector_v3_encrypt_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    v = VECTORS["V3"]
    e = v["encrypt_fixed_prefix"]
    monkeypatch.setattr(PrpCrypto, "get_random_string", lambda self: e["random_prefix"])
    crypto = crypto_for("V3", e["timestamp"])
    reply = xmltodict.parse(crypto.encrypt_reply(e["plain"], e["nonce"], e["timestamp"]))["xml"]
    assert reply["Encrypt"] == e["encrypt"]
    assert reply["MsgSignature"] == e["msg_signature"]
    assert crypto.decrypt(e["msg_signature"], e["timestamp"], e["nonce"], e["encrypt"]) == e["plain"]


def test_vector_v2_json_mode_bare_encrypt() -> None:
    """V2's POST Encrypt decrypts through the bare-Encrypt entry point too (JSON-mode callbacks)."""
    p = VECTORS["V2"]["post"]
    plain = crypto_for("V2", p["timestamp"]).decrypt(p["msg_signature"], p["timestamp"], p["nonce"], p["encrypt"])
    assert "<MsgId>4561255354251345929</MsgId>" in plain


# ---------------------------------------------------------------------------------------------------------
# crypto: everything bad is CallbackRejected, with the right reason


def test_forged_signature_rejected() -> None:
    v = VECTORS["V1"]
    p = v["post"]
    forged = p["msg_signature"][:-1] + ("0" if p["msg_signature"][-1] != "0" else "1")
    with pytest.raises(CallbackRejected, match="bad signature"):
        crypto_for("V1", p["timestamp"]).decrypt_post(forged, p["timestamp"], p["nonce"], envelope(v))


def test_wrong_corp_id_rejected() -> None:
    v = VECTORS["V1"]
    p = v["post"]
    other = CallbackCrypto(v["token"], v["encoding_aes_key"], "wwsomeoneelse", clock=lambda: float(p["timestamp"]))
    with pytest.raises(CallbackRejected, match="receiveid mismatch"):
        other.decrypt_post(p["msg_signature"], p["timestamp"], p["nonce"], envelope(v))


def driver(clock: Callable[[], float]) -> CallbackDriver:
    return CallbackDriver(TOKEN, AES_KEY, CORP, clock=clock)


@pytest.mark.parametrize(("tamper", "reason"), [("signature", "bad signature"), ("corp_id", "receiveid mismatch"),
                                                ("base64", "bad ciphertext")])
def test_tampered_callbacks_rejected(tamper: str, reason: str) -> None:
    clock = Clock(1_800_000_000)
    d = driver(clock)
    params, body = d.post(d.text_xml("zhang", "库存 奶油", 1), tamper=tamper)
    with pytest.raises(CallbackRejected, match=reason):
        CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock).decrypt_post(**params, body=body)


def test_truncated_ciphertext_rejected() -> None:
    clock = Clock(1_800_000_000)
    d = driver(clock)
    encrypt = d.encrypt("<xml/>")
    short = base64.b64encode(base64.b64decode(encrypt)[:-5]).decode()  # not a whole AES block any more
    sig = d.sign("1800000000", "12345", short)
    with pytest.raises(CallbackRejected, match="bad ciphertext"):
        CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock).decrypt(sig, "1800000000", "12345", short)


@pytest.mark.parametrize("skew", [-301, 301, 10**9])
def test_stale_or_future_timestamp_rejected(skew: int) -> None:
    clock = Clock(1_800_000_000)
    d = driver(clock)
    params, body = d.post(d.text_xml("zhang", "hi", 1))
    clock.now += skew
    with pytest.raises(CallbackRejected, match="stale timestamp"):
        CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock).decrypt_post(**params, body=body)


def test_timestamp_within_window_accepted_and_window_configurable() -> None:
    clock = Clock(1_800_000_000)
    d = driver(clock)
    params, body = d.post(d.text_xml("zhang", "hi", 1))
    clock.now += 299
    assert "hi" in CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock).decrypt_post(**params, body=body)
    with pytest.raises(CallbackRejected, match="stale timestamp"):
        CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock, window=60).decrypt_post(**params, body=body)


def test_replayed_nonce_rejected_until_it_ages_out() -> None:
    clock = Clock(1_800_000_000)
    d = driver(clock)
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock)
    params, body = d.post(d.text_xml("zhang", "hi", 1), nonce="555")
    crypto.decrypt_post(**params, body=body)
    with pytest.raises(CallbackRejected, match="replayed nonce"):
        crypto.decrypt_post(**params, body=body)
    # same nonce, other timestamp: a different signed request, not a replay
    params2, body2 = d.post(d.text_xml("zhang", "hi", 2), nonce="555", timestamp="1800000001")
    crypto.decrypt_post(**params2, body=body2)
    clock.now += 301  # out of the window: the timestamp check rejects it, and the entry is forgotten
    with pytest.raises(CallbackRejected, match="stale timestamp"):
        crypto.decrypt_post(**params, body=body)
    crypto.replay.check_unseen(0, "prune")
    assert len(crypto.replay) == 1  # the second request's timestamp is still inside the window
    clock.now += 1
    crypto.replay.check_unseen(0, "prune")
    assert len(crypto.replay) == 0


def test_release_lets_the_retry_of_a_failed_callback_through() -> None:
    clock = Clock(1_800_000_000)
    d = driver(clock)
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock)
    params, body = d.post(d.text_xml("zhang", "hi", 1))
    crypto.decrypt_post(**params, body=body)
    crypto.release(params["timestamp"], params["nonce"])  # e.g. storing the Inbound failed → 500
    assert "hi" in crypto.decrypt_post(**params, body=body)  # WeCom's retry is accepted


def test_forged_requests_do_not_poison_the_nonce_cache() -> None:
    clock = Clock(1_800_000_000)
    d = driver(clock)
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock)
    forged, body = d.post(d.text_xml("zhang", "hi", 1), nonce="777", tamper="signature")
    with pytest.raises(CallbackRejected):
        crypto.decrypt_post(**forged, body=body)
    params, body = d.post(d.text_xml("zhang", "hi", 1), nonce="777")
    assert "hi" in crypto.decrypt_post(**params, body=body)


def test_replay_guard_is_bounded() -> None:
    guard = ReplayGuard(300, max_entries=3, clock=lambda: 1000.0)
    for i in range(10):
        guard.remember(1000, str(i))
    assert len(guard) == 3


def test_oversized_body_rejected() -> None:
    clock = Clock(1_800_000_000)
    d = driver(clock)
    params, body = d.post(d.text_xml("zhang", "x", 1))
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP, clock=clock)
    padded = body.replace(b"</xml>", b" " * (DEFAULT_MAX_BODY - len(body) + 1) + b"</xml>")
    assert len(padded) == DEFAULT_MAX_BODY + 1
    with pytest.raises(CallbackRejected, match="body too large"):
        crypto.decrypt_post(**params, body=padded)
    assert "<Content>" in crypto.decrypt_post(**params, body=padded.replace(b" </xml>", b"</xml>"))  # at the limit


BAD_BODIES = [
    b"",
    b"   ",
    b"not xml at all",
    b"<xml>",
    b"<xml><Foo>1</Foo></xml>",
    b"<xml><Encrypt></Encrypt></xml>",
    b"<xml><Encrypt><a>1</a><a>2</a></Encrypt></xml>",
    b"<other><Encrypt>abc</Encrypt></other>",
    b"\xff\xfe<\x00x\x00",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    b"<xml><Encrypt>&b;</Encrypt></xml>",
    b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>',
    b"<xml><Encrypt>&undefined;</Encrypt></xml>",
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_malformed_bodies_rejected(body: bytes) -> None:
    with pytest.raises(CallbackRejected):
        CallbackCrypto(TOKEN, AES_KEY, CORP, clock=lambda: 1_800_000_000).decrypt_post(
            "0" * 40, "1800000000", "1", body)


@pytest.mark.parametrize("params", [
    {"msg_signature": "", "timestamp": "1800000000", "nonce": "1"},
    {"msg_signature": "ab", "timestamp": "", "nonce": "1"},
    {"msg_signature": "ab", "timestamp": "1800000000", "nonce": ""},
    {"msg_signature": "ab", "timestamp": "18e8", "nonce": "1"},
    {"msg_signature": "ab", "timestamp": "-1800000000", "nonce": "1"},
    {"msg_signature": "签名", "timestamp": "1800000000", "nonce": "1"},
    {"msg_signature": "a" * 5000, "timestamp": "1800000000", "nonce": "1"},
])
def test_bad_query_parameters_rejected(params: dict[str, str]) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP, clock=lambda: 1_800_000_000)
    with pytest.raises(CallbackRejected):
        crypto.verify_url(**params, echostr="abcd")
    with pytest.raises(CallbackRejected):
        crypto.decrypt_post(**params, body=b"<xml><Encrypt>abcd</Encrypt></xml>")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sig=st.text(max_size=50), nonce=st.text(max_size=20), body=st.binary(max_size=300),
       echo=st.text(max_size=200), encrypt=st.text(max_size=200))
def test_fuzz_only_callback_rejected_escapes(sig: str, nonce: str, body: bytes, echo: str, encrypt: str) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP, clock=lambda: 1_800_000_000)
    d = CallbackDriver(TOKEN, AES_KEY, CORP)
    good_sig = d.sign("1800000000", nonce, encrypt)  # correctly signed garbage reaches the AES layer
    for call in (
        lambda: crypto.verify_url(sig, "1800000000", nonce, echo),
        lambda: crypto.decrypt_post(sig, "1800000000", nonce, body),
        lambda: crypto.decrypt(good_sig, "1800000000", nonce or "n", encrypt),
        lambda: crypto.decrypt_post(good_sig, "1800000000", nonce or "n",
                                    f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()),
    ):
        try:
            call()
        except CallbackRejected:
            pass


def test_repr_hides_secrets() -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP)
    assert TOKEN not in repr(crypto) and AES_KEY not in repr(crypto)


# ---------------------------------------------------------------------------------------------------------
# callback XML → Inbound

NOW = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)


def test_text_message_to_inbound() -> None:
    d = driver(Clock(1_800_000_000))
    got = parse_inbound(d.text_xml("zhang", "  库存 奶油 \n", 4561255354251345929), now=NOW)
    assert got == Inbound(platform="wecom", user_id="zhang", dedupe_key="wecom:msg:zhang:4561255354251345929",
                          received_at=NOW, text="库存 奶油")
    assert got.chat_id is None and got.action is None


def test_card_click_to_inbound() -> None:
    d = driver(Clock(1_800_000_000))
    xml = d.card_click_xml("li", "jxc_42", "approval:12:1:approve", "rc-abc", create_time=1_800_000_123)
    got = parse_inbound(xml, now=NOW)
    assert got is not None
    assert got.user_id == "li" and got.action == "approval:12:1:approve" and got.text is None
    assert got.dedupe_key == "wecom:card:li:jxc_42:approval:12:1:approve:1800000123"
    assert dict(got.reply) == {"response_code": "rc-abc", "task_id": "jxc_42"}
    # a second click on another button of the same card is a distinct event
    other = parse_inbound(d.card_click_xml("li", "jxc_42", "approval:12:1:reject", "rc-def", 1_800_000_123), now=NOW)
    assert other is not None and other.dedupe_key != got.dedupe_key


def test_vote_card_click_with_selected_items_parses() -> None:
    d = driver(Clock(1_800_000_000))
    xml = d.card_click_xml("li", "t1", "submit", "rc", 1, card_type="vote_interaction",
                           selected=[("q1", ["o1"]), ("q2", ["o1", "o2"])])
    got = parse_inbound(xml, now=NOW)
    assert got is not None and got.action == "submit"


@pytest.mark.parametrize("xml", [
    "<xml><FromUserName>zhang</FromUserName><CreateTime>1</CreateTime><MsgType>voice</MsgType><MsgId>9</MsgId></xml>",
])
def test_other_message_types_ignored(xml: str) -> None:
    assert parse_inbound(xml) is None


@pytest.mark.parametrize("event", ["enter_agent", "subscribe", "template_card_menu_event", "taskcard_click",
                                   "click"])
def test_other_events_ignored(event: str) -> None:
    assert parse_inbound(driver(Clock(1)).event_xml("zhang", event)) is None


@pytest.mark.parametrize("xml", ["", "garbage", "<xml>", "<root><MsgType>text</MsgType></root>",
                                 "<xml><MsgType>text</MsgType><FromUserName>zhang</FromUserName></xml>",
                                 "<xml><MsgType>text</MsgType><MsgId>1</MsgId></xml>",
                                 "<xml><MsgType>event</MsgType><Event>template_card_event</Event>"
                                 "<FromUserName>li</FromUserName><EventKey>k</EventKey></xml>"])
def test_malformed_callback_xml_rejected(xml: str) -> None:
    with pytest.raises(CallbackRejected):
        parse_inbound(xml)


# ---------------------------------------------------------------------------------------------------------
# a minimal callback endpoint over real HTTP, driven the way WeCom drives it


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def callback_site() -> AsyncIterator[tuple[str, list[Inbound]]]:
    """The server's own /wecom/callback routes (bot.platforms.wecom_routes), recording what they accept."""
    received: list[Inbound] = []

    async def accept(inbound: Inbound) -> bool:
        received.append(inbound)
        return True

    app = web.Application(client_max_size=DEFAULT_MAX_BODY)
    app.add_routes(wecom_routes(WeComConfig(CORP, 1000002, "secret", TOKEN, AES_KEY), accept))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/wecom/callback")), received
    await server.close()


async def test_http_url_check_and_post(session: aiohttp.ClientSession,
                                       callback_site: tuple[str, list[Inbound]]) -> None:
    url, received = callback_site
    d = CallbackDriver(TOKEN, AES_KEY, CORP)
    for _ in range(5):  # random echostrs: several contain '+', '/', '=' and arrive percent-encoded
        attempt, plain = await d.verify(session, url)
        assert (attempt.status, attempt.body) == (200, plain)
        assert attempt.latency < 1.0
    attempts = await d.deliver(session, url, d.text_xml("zhang", "库存 奶油", 77))
    assert [a.status for a in attempts] == [200]
    assert received[0].text == "库存 奶油" and received[0].dedupe_key == "wecom:msg:zhang:77"


async def test_http_raw_plus_in_query_still_verifies(session: aiohttp.ClientSession,
                                                     callback_site: tuple[str, list[Inbound]]) -> None:
    url, _ = callback_site
    d = CallbackDriver(TOKEN, AES_KEY, CORP)
    for _ in range(40):
        params, plain = d.url_check()
        if "+" in params["echostr"]:
            break
    else:
        pytest.skip("no '+' drawn")
    raw = "&".join(f"{k}={v}" for k, v in params.items())  # '+' not encoded: the server decodes it to ' '
    async with session.get(f"{url}?{raw}") as resp:
        assert (resp.status, await resp.text()) == (200, plain)


async def test_http_tampered_callbacks_get_4xx_and_are_retried(session: aiohttp.ClientSession,
                                                               callback_site: tuple[str, list[Inbound]]) -> None:
    url, received = callback_site
    d = CallbackDriver(TOKEN, AES_KEY, CORP)
    attempts = await d.deliver(session, url, d.text_xml("zhang", "x", 1), tamper="signature")
    assert [a.status for a in attempts] == [403] * 4  # WeCom re-sends 3 times on non-200
    assert received == []


def test_passive_reply_round_trip() -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, CORP)
    reply = crypto.encrypt_reply("<xml><MsgType>update_button</MsgType></xml>", "123")
    assert CallbackDriver(TOKEN, AES_KEY, CORP).decrypt_reply(reply) == "<xml><MsgType>update_button</MsgType></xml>"


# ---------------------------------------------------------------------------------------------------------
# split_utf8


def test_split_utf8_cjk_no_newlines() -> None:
    text = "库存奶油" * 300  # 3600 bytes
    parts = split_utf8(text, 2048)
    assert "".join(parts) == text
    assert all(len(p.encode()) <= 2048 for p in parts)
    assert len(parts[0].encode()) == 2046  # 682 characters; the 683rd would cut a character


def test_split_utf8_prefers_newlines() -> None:
    lines = [f"第{i}行：奶油 12 箱" for i in range(200)]
    text = "\n".join(lines)
    parts = split_utf8(text, 500)
    assert "".join(parts) == text
    assert all(p.endswith("\n") for p in parts[:-1])


def test_split_utf8_fits_and_limits() -> None:
    assert split_utf8("", 10) == [""]
    assert split_utf8("ok", 4) == ["ok"]
    assert split_utf8("𝄞𝄞", 4) == ["𝄞", "𝄞"]  # 4-byte characters
    with pytest.raises(ValueError):
        split_utf8("x", 3)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=400), limit=st.integers(4, 64))
def test_split_utf8_property(text: str, limit: int) -> None:
    parts = split_utf8(text, limit)
    assert "".join(parts) == text
    assert all(len(p.encode("utf-8")) <= limit for p in parts)
    assert all(p for p in parts) or parts == [""]


# ---------------------------------------------------------------------------------------------------------
# app client against the fake


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeCom]:
    async with FakeWeCom(users={"zhang", "li", "wang"}) as f:
        yield f


@pytest.fixture
def client(fake: FakeWeCom, session: aiohttp.ClientSession) -> WeComClient:
    # Generous: none of its tests is about timeouts (those build clients with 0.15 s), and 0.5 s was once
    # exceeded by 10 concurrent sends on a loaded CI machine.
    return WeComClient(session, fake.corp_id, fake.agent_id, fake.secret, fake.base_url, timeout=5.0)


def user(name: str = "zhang") -> Target:
    return Target("wecom", "user", name)


def sent_texts(fake: FakeWeCom) -> list[str]:
    return [m["text"]["content"] for m in fake.messages if m["msgtype"] == "text"]


async def test_token_cached_across_sends(fake: FakeWeCom, client: WeComClient) -> None:
    for i in range(5):
        await client.send(user(), Message("text", text=f"第{i}条"))
    assert fake.gettoken_calls == 1
    assert sent_texts(fake) == [f"第{i}条" for i in range(5)]
    assert fake.messages[0]["agentid"] == fake.agent_id and fake.messages[0]["touser"] == "zhang"


async def test_token_expired_mid_stream_refreshes_once(fake: FakeWeCom, client: WeComClient) -> None:
    await client.send(user(), Message("text", text="一"))
    fake.expire_tokens()
    await client.send(user(), Message("text", text="二"))
    await client.send(user(), Message("text", text="三"))
    assert fake.gettoken_calls == 2
    assert [code for p, code in fake.log if p == PATH_SEND] == [0, 42001, 0, 0]
    assert sent_texts(fake) == ["一", "二", "三"]


async def test_concurrent_senders_share_one_refresh(fake: FakeWeCom, client: WeComClient) -> None:
    await client.send(user(), Message("text", text="warm"))
    fake.expire_tokens()
    await asyncio.gather(*(client.send(user("li"), Message("text", text=str(i))) for i in range(10)))
    assert fake.gettoken_calls == 2
    assert len(fake.messages) == 11


async def test_token_that_keeps_failing_is_bounded(fake: FakeWeCom, client: WeComClient) -> None:
    fake.always_invalid_token = True
    with pytest.raises(SendError) as err:
        await client.send(user(), Message("text", text="x"))
    assert err.value.code == 40014 and err.value.retryable
    assert fake.gettoken_calls == 2 and fake.calls(PATH_SEND) == 2


async def test_client_side_expiry_refetches(fake: FakeWeCom, session: aiohttp.ClientSession) -> None:
    clock = Clock(0.0)
    c = WeComClient(session, fake.corp_id, fake.agent_id, fake.secret, fake.base_url, timeout=0.5, clock=clock)
    await c.send(user(), Message("text", text="a"))
    clock.now += 7200 - 60  # inside the refresh margin
    fake.advance(7200)
    await c.send(user(), Message("text", text="b"))
    assert fake.gettoken_calls == 2
    assert [code for p, code in fake.log if p == PATH_SEND] == [0, 0]


@pytest.mark.parametrize(("secret", "corp", "code"), [("wrong", None, 40001), (None, "wwnope", 40013)])
async def test_bad_credentials_are_permanent(fake: FakeWeCom, session: aiohttp.ClientSession, secret: str | None,
                                             corp: str | None, code: int) -> None:
    c = WeComClient(session, corp or fake.corp_id, fake.agent_id, secret or fake.secret, fake.base_url, timeout=0.5)
    with pytest.raises(SendError) as err:
        await c.send(user(), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == (code, False)


@pytest.mark.parametrize("code", [-1, 45009, 45033])
async def test_busy_and_throttled_are_retryable(fake: FakeWeCom, client: WeComClient, code: int) -> None:
    fake.inject(PATH_SEND, Fault(errcode=code), Fault(errcode=code))
    for _ in range(2):
        with pytest.raises(SendError) as err:
            await client.send(user(), Message("text", text="x"))
        assert (err.value.code, err.value.retryable) == (code, True)
    await client.send(user(), Message("text", text="x"))
    assert sent_texts(fake) == ["x"]


async def test_gettoken_throttled_is_retryable(fake: FakeWeCom, client: WeComClient) -> None:
    fake.inject(PATH_GETTOKEN, Fault(errcode=45009))
    with pytest.raises(SendError) as err:
        await client.send(user(), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == (45009, True)


@pytest.mark.parametrize("code", [40003, 40008, 44004, 45002, 48002, 60020])
async def test_documented_errors_are_permanent(fake: FakeWeCom, client: WeComClient, code: int) -> None:
    fake.inject(PATH_SEND, Fault(errcode=code))
    with pytest.raises(SendError) as err:
        await client.send(user(), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == (code, False)


async def test_unknown_user_is_permanent(fake: FakeWeCom, client: WeComClient) -> None:
    with pytest.raises(SendError) as err:
        await client.send(user("ghost"), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == (81013, False)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_http_5xx_is_retryable(fake: FakeWeCom, client: WeComClient, status: int) -> None:
    fake.inject(PATH_SEND, Fault(status=status))
    with pytest.raises(SendError) as err:
        await client.send(user(), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == (status, True)


async def test_hung_response_times_out_retryable(fake: FakeWeCom, session: aiohttp.ClientSession) -> None:
    c = WeComClient(session, fake.corp_id, fake.agent_id, fake.secret, fake.base_url, timeout=0.15)
    fake.inject(PATH_SEND, Fault(hang=5.0))
    with pytest.raises(SendError) as err:
        await c.send(user(), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == ("timeout", True)


async def test_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    await server.close()  # nothing listens there any more
    c = WeComClient(session, "ww", 1, "s", base, timeout=0.5)
    with pytest.raises(SendError) as err:
        await c.send(user(), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == ("connection", True)


async def test_secrets_never_in_errors_or_logs(fake: FakeWeCom, session: aiohttp.ClientSession,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = WeComClient(session, fake.corp_id, fake.agent_id, fake.secret, fake.base_url, timeout=0.15)
    errors: list[SendError] = []
    fake.inject(PATH_SEND, Fault(status=502), Fault(hang=5.0), Fault(errcode=45009))
    for _ in range(3):
        with pytest.raises(SendError) as err:
            await c.send(user(), Message("text", text="x"))
        errors.append(err.value)
    fake.always_invalid_token = True
    with pytest.raises(SendError) as err:
        await c.send(user(), Message("text", text="x"))
    errors.append(err.value)
    secrets = [fake.secret, *fake.tokens]
    ours = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("bot."))
    assert "refreshing once" in ours  # the client did log
    text = " ".join(str(e) for e in errors) + ours + repr(c)
    assert not any(s in text for s in secrets)


async def test_long_text_split_within_limit(fake: FakeWeCom, client: WeComClient) -> None:
    text = "\n".join(f"{i:03d} 奶油（1箱=24瓶）在库 12 箱，可用 10 箱" for i in range(120))
    assert len(text.encode()) > 2 * TEXT_LIMIT
    await client.send(user(), Message("text", text=text))
    parts = sent_texts(fake)
    assert len(parts) >= 3
    assert all(len(p.encode()) <= TEXT_LIMIT for p in parts)
    assert "".join(parts) == text


async def test_fake_rejects_over_long_text(fake: FakeWeCom, client: WeComClient,
                                           session: aiohttp.ClientSession) -> None:
    token = await client.access_token()
    body = {"touser": "zhang", "msgtype": "text", "agentid": fake.agent_id, "text": {"content": "库" * 683}}
    async with session.post(f"{fake.base_url}{PATH_SEND}", params={"access_token": token}, json=body) as r:
        assert (await r.json())["errcode"] == 45002


async def test_markdown_split_at_app_limit(fake: FakeWeCom, client: WeComClient) -> None:
    text = "\n".join(f"- **奶油{i}** 低于安全线 <font color=\"warning\">3 箱</font>" for i in range(100))
    await client.send(user(), Message("markdown", title="采购预警", text=text))
    parts = [m["markdown"]["content"] for m in fake.messages]
    assert len(parts) >= 2 and all(len(p.encode()) <= APP_MARKDOWN_LIMIT for p in parts)
    assert "".join(parts) == "**采购预警**\n" + text


async def test_image_upload_then_image_message(fake: FakeWeCom, client: WeComClient) -> None:
    await client.send(user(), Message("image", title="近30天趋势", png=PNG))
    assert [m["msgtype"] for m in fake.messages] == ["text", "image"]
    assert fake.messages[0]["text"]["content"] == "近30天趋势"
    media = fake.media[fake.messages[1]["image"]["media_id"]]
    assert (media.type, media.data, media.filename, media.content_type) == ("image", PNG, "image.png", "image/png")


async def test_card_send_click_and_update(fake: FakeWeCom, client: WeComClient) -> None:
    card = Message("card", title="盘点差异 PD20261125001", text="奶油 −3 箱\n请库管确认",
                   buttons=(Button("同意", "approval:12:1:approve", "primary"),
                            Button("驳回", "approval:12:1:reject", "danger")))
    receipt = await client.send_card("li", card)
    sent = fake.messages[0]
    tc = sent["template_card"]
    assert sent["msgtype"] == "template_card" and tc["card_type"] == "button_interaction"
    assert tc["task_id"] == receipt.task_id and receipt.response_code
    assert [(b["text"], b["key"]) for b in tc["button_list"]] == [("同意", "approval:12:1:approve"),
                                                                    ("驳回", "approval:12:1:reject")]
    assert tc["main_title"]["title"] == "盘点差异 PD20261125001"
    # the click callback carries a ResponseCode; the outbox puts it into card_id of the re-rendered card
    code = fake.click("li", receipt.task_id)
    await client.send(user("li"), Message("card", title="已同意", text="张库管 已同意", card_id=code))
    assert fake.updates[-1]["button"] == {"replace_name": "已同意"}
    assert fake.updates[-1]["userids"] == ["li"] and fake.updates[-1]["response_code"] == code
    # a response_code is single use: update_card refuses, send() falls back to a fresh message
    with pytest.raises(SendError) as err:
        await client.update_card("li", code, Message("card", title="again"))
    assert err.value.retryable is False
    await client.send(user("li"), Message("card", title="已同意", text="张库管 已同意", card_id=code))
    assert fake.messages[-1]["msgtype"] == "markdown" and len(fake.updates) == 1
    # the send's own response_code replaces the whole card when buttons remain
    await client.send(user("li"), Message("card", title="第二步", text="待采购确认", card_id=receipt.response_code,
                                          buttons=(Button("确认", "approval:12:2:approve"),)))
    replaced = fake.updates[-1]["template_card"]
    assert [b["key"] for b in replaced["button_list"]] == ["approval:12:2:approve"]
    assert fake.calls(PATH_UPDATE) == 4


async def test_card_update_retryable_failure_is_not_masked(fake: FakeWeCom, client: WeComClient) -> None:
    receipt = await client.send_card("li", Message("card", title="t", buttons=(Button("同意", "a:1:1:approve"),)))
    fake.inject(PATH_UPDATE, Fault(errcode=45009))
    with pytest.raises(SendError) as err:
        await client.send(user("li"), Message("card", title="已同意", card_id=receipt.response_code))
    assert (err.value.code, err.value.retryable) == (45009, True)
    assert len(fake.messages) == 1  # no fresh card behind the outbox's back


async def test_card_without_buttons_goes_as_markdown(fake: FakeWeCom, client: WeComClient) -> None:
    await client.send(user(), Message("card", title="通知", text="月度健康报告已生成"))
    assert fake.messages[0]["msgtype"] == "markdown"


async def test_card_with_too_many_buttons_is_permanent(fake: FakeWeCom, client: WeComClient) -> None:
    buttons = tuple(Button(str(i), f"k{i}") for i in range(7))
    with pytest.raises(SendError) as err:
        await client.send(user(), Message("card", title="t", buttons=buttons))
    assert err.value.retryable is False and fake.messages == []


async def test_silent_drop_is_invisible_to_the_client(fake: FakeWeCom, client: WeComClient) -> None:
    fake.inject(PATH_SEND, Fault(drop=True))
    await client.send(user(), Message("text", text="lost"))
    fake.per_user_per_minute = 2
    for i in range(3):
        await client.send(user(), Message("text", text=str(i)))
    assert sent_texts(fake) == ["0", "1"]
    assert [m["text"]["content"] for m in fake.dropped] == ["lost", "2"]


async def test_app_client_refuses_other_targets(client: WeComClient) -> None:
    with pytest.raises(SendError) as err:
        await client.send(Target("wecom", "robot", "warehouse"), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == ("bad_target", False)


# ---------------------------------------------------------------------------------------------------------
# group robot client


@pytest.fixture
def robots(fake: FakeWeCom, session: aiohttp.ClientSession) -> WeComRobotClient:
    return WeComRobotClient(session, {"warehouse": fake.robot_key("warehouse"), "stale": "deleted-key"},
                            fake.base_url, timeout=0.5)


def robot(name: str = "warehouse") -> Target:
    return Target("wecom", "robot", name)


async def test_robot_markdown_split_at_4096(fake: FakeWeCom, robots: WeComRobotClient) -> None:
    text = "\n".join(f"> 风险品 {i}：30 天无动销，库存 {i} 箱" for i in range(200))
    await robots.send(robot(), Message("markdown", title="每日风险品", text=text))
    parts = [p["markdown"]["content"] for _, p in fake.robot_messages]
    assert len(parts) >= 2 and all(len(p.encode()) <= ROBOT_MARKDOWN_LIMIT for p in parts)
    assert max(len(p.encode()) for p in parts) > APP_MARKDOWN_LIMIT  # uses the robot's larger limit
    assert "".join(parts) == "**每日风险品**\n" + text
    assert {key for key, _ in fake.robot_messages} == {fake.robot_key("warehouse")}


async def test_robot_image_base64_md5(fake: FakeWeCom, robots: WeComRobotClient) -> None:
    await robots.send(robot(), Message("image", png=PNG))
    (_, payload), = fake.robot_messages
    assert base64.b64decode(payload["image"]["base64"]) == PNG
    assert payload["image"]["md5"] == hashlib.md5(PNG).hexdigest()


async def test_robot_image_too_large_is_permanent(fake: FakeWeCom, robots: WeComRobotClient) -> None:
    with pytest.raises(SendError) as err:
        await robots.send(robot(), Message("image", png=b"\x89PNG" + b"\0" * (2 * 1024 * 1024)))
    assert err.value.retryable is False and fake.robot_messages == []


async def test_robot_text_and_news(fake: FakeWeCom, robots: WeComRobotClient) -> None:
    await robots.send(robot(), Message("text", text="借条 JT001 已逾期"))
    await robots.send_news("warehouse", [{"title": "月报", "url": "http://127.0.0.1/report", "description": "d"}])
    assert [p["msgtype"] for _, p in fake.robot_messages] == ["text", "news"]


async def test_robot_errors_classified(fake: FakeWeCom, robots: WeComRobotClient) -> None:
    with pytest.raises(SendError) as err:
        await robots.send(robot("stale"), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == (93000, False)
    with pytest.raises(SendError) as err:
        await robots.send(robot("nobody"), Message("text", text="x"))
    assert (err.value.code, err.value.retryable) == ("unknown_robot", False)
    fake.inject(PATH_ROBOT, Fault(status=503), Fault(errcode=-1))
    for code in (503, -1):
        with pytest.raises(SendError) as err:
            await robots.send(robot(), Message("text", text="x"))
        assert (err.value.code, err.value.retryable) == (code, True)


async def test_robot_rate_limit_is_retryable(fake: FakeWeCom, robots: WeComRobotClient) -> None:
    fake.robot_per_minute = 3
    for i in range(3):
        await robots.send(robot(), Message("text", text=str(i)))
    with pytest.raises(SendError) as err:
        await robots.send(robot(), Message("text", text="4th"))
    assert (err.value.code, err.value.retryable) == (45009, True)
    fake.advance(61)
    await robots.send(robot(), Message("text", text="later"))
    assert len(fake.robot_messages) == 4


async def test_transport_routes_by_target_kind(fake: FakeWeCom, client: WeComClient,
                                               robots: WeComRobotClient) -> None:
    transport = WeComTransport(client, robots)
    await transport.send(user(), Message("text", text="to user"))
    await transport.send(robot(), Message("text", text="to group"))
    assert sent_texts(fake) == ["to user"]
    assert [p["text"]["content"] for _, p in fake.robot_messages] == ["to group"]
    with pytest.raises(SendError) as err:
        await transport.send(Target("wecom", "group", "chat1"), Message("text", text="x"))
    assert err.value.retryable is False


async def test_a_link_goes_as_one_news_article_cut_to_wecoms_limits(fake: FakeWeCom, client: WeComClient,
                                                                      robots: WeComRobotClient) -> None:
    link = Message("link", title="十一月库存健康报告" * 10, text="周转天数、呆滞品与缺货 " * 40,
                   url="https://bot.example.com/reports/2026-11", pic_url="https://bot.example.com/c.png")
    await client.send(user(), link)
    await robots.send(robot(), link)
    [app] = [m for m in fake.messages if m["msgtype"] == "news"]
    [(_, by_robot)] = fake.robot_messages
    for article in (app["news"]["articles"][0], by_robot["news"]["articles"][0]):
        assert article["url"] == "https://bot.example.com/reports/2026-11"
        assert article["picurl"] == "https://bot.example.com/c.png"
        assert len(article["title"].encode()) <= 128 and link.title.startswith(article["title"])
        assert len(article["description"].encode()) <= 512 and link.text.startswith(article["description"])


def test_a_link_needs_a_title_and_an_http_url_and_survives_the_outbox_round_trip() -> None:
    link = Message("link", title="报告", text="说明", url="https://bot.example.com/r", pic_url="https://x/p.png")
    assert Message.from_json(json.loads(json.dumps(link.to_json()))) == link
    for bad in ({"title": "", "url": "https://x"}, {"title": "报告", "url": "javascript:alert(1)"},
                {"title": "报告", "url": ""}):
        with pytest.raises(ValueError):
            Message("link", **bad)
