"""Jobs end to end through the platform fakes: the risk report and a purchase warning's chart reach the WeCom group
robot (the PNG as base64 with its md5, checked by the fake), the warning card and its chart the DingTalk group."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import platforms
from bot.server import build_app
from cards.parts import split_message
from core.ledger.documents import LineInput
from core.messaging.outbound import Outbound
from core.messaging.targets import Target
from jobs.registry import JOBS
from jobs.runner import Deps, run_job
from tests.factories import line
from tests.fakes.dingtalk import FakeDingTalk
from tests.fakes.wecom import FakeWeCom
from tests.ledger_history import dated, local
from tests.test_platform_approvals import AES_KEY, CARD_SECRET, TOKEN
from tests.test_purchase_chat import setup, today
from tests.waiting import until

GROUP = "cidPurchasing001"


@pytest.fixture
async def server(db, settings):
    await setup(db, settings)  # sugar under its line once 50 kg leave; a pre-order in 3 days
    t = today(settings)

    async def low(s) -> None:
        await dated(s, settings, "other_issue", [line("SUGAR", 50, "kg")], local(settings, t), warehouse="WH1")
        await dated(s, settings, "sales_order", [LineInput("SUGAR", 30, "kg")], local(settings, t), post=False,
                    warehouse="WH1", customer="C2", delivery_date=t + timedelta(days=3))

    await db.write(low)
    async with FakeWeCom() as wecom, FakeDingTalk() as dingtalk:
        raw = {"wecom": {"corp_id": wecom.corp_id, "agent_id": wecom.agent_id, "secret": wecom.secret,
                         "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": wecom.base_url,
                         "robots": {"warehouse": wecom.robot_key("warehouse")}},
               "dingtalk": {"app_key": dingtalk.app_key, "app_secret": dingtalk.app_secret,
                            "robot_code": dingtalk.robot_code, "api_base": dingtalk.url, "oapi_base": dingtalk.url,
                            "card_callback_token": CARD_SECRET, "card_template_id": "tpl.approval",
                            "card_callback_route_key": "jxcbot", "public_url": "https://bot.example.com"}}
        channels = {"supervisors": (Target("wecom", "robot", "warehouse"),),
                    "purchasing": (Target("wecom", "robot", "warehouse"), Target("dingtalk", "group", GROUP))}
        s = replace(settings, raw=MappingProxyType(raw), channels=MappingProxyType(channels))
        async with TestClient(TestServer(build_app(s, db))) as client:
            yield client, wecom, dingtalk, s


async def test_reports_and_charts_reach_the_group_robots(db, server):
    _client, wecom, dingtalk, settings = server
    wc, dt = platforms.wecom_config(settings.raw), platforms.dingtalk_config(settings.raw)
    outbound = Outbound(split_message, settings.channels, platforms.people_platforms(settings, wc, dt))
    # the real clock: what a run queues is due when it is queued (the fixture's NOW is an hour ahead)
    deps = Deps(db, settings, outbound, owner="t", channels={"purchase_warnings": "purchasing"})
    local_now = datetime.now(UTC).astimezone(settings.timezone)
    for name in ("risk_report", "purchase_warnings"):
        done = await run_job(JOBS[name], JOBS[name].period(local_now), deps)
        assert done.ok, done
    await until(lambda: any(p.get("msgtype") == "image" for _, p in wecom.robot_messages)
                and any(p.get("msgtype") == "file" for _, p in wecom.robot_messages), "the robot's report and chart")
    kinds = [p["msgtype"] for _, p in wecom.robot_messages]
    assert "markdown" in kinds or "text" in kinds
    image = next(p["image"] for _, p in wecom.robot_messages if p["msgtype"] == "image")
    png = base64.b64decode(image["base64"])
    assert png.startswith(b"\x89PNG") and hashlib.md5(png).hexdigest() == image["md5"]  # (the fake checks too)
    await until(lambda: len([m for m in dingtalk.messages("group") if m.address == GROUP]) >= 1
                or any(c.space_type == "IM_GROUP" for c in dingtalk.cards.values()), "the DingTalk group's warning")
    group = [m for m in dingtalk.messages("group") if m.address == GROUP]
    cards = [c for c in dingtalk.cards.values() if c.space_type == "IM_GROUP"]
    said = " ".join(str(m.payload) for m in group) + " ".join(str(c.params) for c in cards)
    assert "采购预警" in said and "SUGAR" in said
    await until(lambda: any(m.kind == "sampleImageMsg" for m in dingtalk.messages("group")), "the group's chart")

