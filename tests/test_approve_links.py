"""Signed approval links: GET confirms without acting, POST acts once, forged or expired links are refused."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.approve_links import LinkRejected, make_token, read_token
from bot.server import DISPATCHER, build_app
from core.models import InboundEvent, User
from tests.factories import seed
from tests.fakes.dingtalk import FakeDingTalk

SECRET = "link-secret-for-tests"


def test_token_round_trip_and_rejections():
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    token = make_token(SECRET, "manager01", "approval:12:1:approve", now + timedelta(hours=1))
    claim = read_token(SECRET, token, now)
    assert (claim.user_id, claim.action) == ("manager01", "approval:12:1:approve")
    assert make_token(SECRET, "manager01", "approval:12:1:approve", now).split(".")[0] != token.split(".")[0]
    with pytest.raises(LinkRejected, match="signature"):
        read_token("another-secret", token, now)
    payload, sig = token.split(".")
    forged = make_token(SECRET, "someone-else", "approval:12:1:approve", now + timedelta(hours=1)).split(".")[0]
    with pytest.raises(LinkRejected, match="signature"):
        read_token(SECRET, f"{forged}.{sig}", now)
    with pytest.raises(LinkRejected, match="expired"):
        read_token(SECRET, token, now + timedelta(hours=2))
    for bad in ("", "abc", "a.b.c", "x" * 2000, f"{payload}."):
        with pytest.raises(LinkRejected):
            read_token(SECRET, bad, now)


@pytest.fixture
async def client(db, settings):
    async def setup(s) -> None:
        await seed(s)
        s.add(User(name="王经理", dingtalk_staff_id="manager01", roles="manager"))

    await db.write(setup)
    async with FakeDingTalk() as fake:
        raw = {"dingtalk": {"app_key": fake.app_key, "app_secret": fake.app_secret, "robot_code": fake.robot_code,
                            "api_base": fake.url, "oapi_base": fake.url, "link_secret": SECRET}}
        app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
        async with TestClient(TestServer(app)) as c:
            yield c, fake


async def _events(db) -> int:
    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(InboundEvent))).scalar_one()


async def test_get_confirms_post_acts_once(client, db):
    c, fake = client
    token = make_token(SECRET, "manager01", "approval:12:1:approve", datetime.now(UTC) + timedelta(hours=1))
    page = await c.get(f"/approve/{token}")
    assert page.status == 200 and "确认" in await page.text() and 'method="post"' in await page.text()
    assert await _events(db) == 0  # a link preview or prefetch changes nothing
    first = await c.post(f"/approve/{token}")
    assert first.status == 200 and "已提交" in await first.text()
    again = await c.post(f"/approve/{token}")
    assert again.status == 409 and "已使用" in await again.text()
    assert await _events(db) == 1
    for _ in range(200):  # the clicker hears back on DingTalk (1:1 message to their staff id)
        if fake.sent:
            break
        await asyncio.sleep(0.02)
    assert [s.address for s in fake.sent] == ["manager01"]


async def test_forged_and_expired_links_are_refused(client, db):
    c, _fake = client
    expired = make_token(SECRET, "manager01", "approval:12:1:approve", datetime.now(UTC) - timedelta(seconds=1))
    assert (await c.get(f"/approve/{expired}")).status == 410
    assert (await c.post(f"/approve/{expired}")).status == 410
    forged = make_token("not-our-secret", "manager01", "approval:12:1:approve", datetime.now(UTC) + timedelta(hours=1))
    r = await c.post(f"/approve/{forged}")
    assert r.status == 403 and "无效" in await r.text()
    assert await _events(db) == 0


async def test_a_decision_not_stored_says_try_again_and_the_link_still_works(client, db, monkeypatch):
    c, _fake = client
    token = make_token(SECRET, "manager01", "approval:12:1:approve", datetime.now(UTC) + timedelta(hours=1))
    stores = c.server.app[DISPATCHER].stores
    real = stores.submit

    async def broken(*_a, **_kw):
        raise OSError("disk I/O error")

    monkeypatch.setattr(stores, "submit", broken)
    failed = await c.post(f"/approve/{token}")
    assert failed.status == 503 and "没有生效" in await failed.text()
    assert await _events(db) == 0
    monkeypatch.setattr(stores, "submit", real)
    again = await c.post(f"/approve/{token}")
    assert again.status == 200 and "已提交" in await again.text()
    assert await _events(db) == 1
