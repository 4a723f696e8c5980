"""A borrow slip end to end through the WeCom fake: encrypted scancode_waitmsg events fill the slip, a typed line is
refused, the signature comes as a WeCom picture (media/get), the manager approves, stock goes on loan, a return
brings part of it back."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.server import build_app
from core.models import Attachment, Document, DocumentLine
from tests.fakes.wecom import CallbackDriver, FakeWeCom
from tests.test_borrow_chat import CREAM, JPEG, balance, load
from tests.test_platform_approvals import AES_KEY, TOKEN, wecom_post, wecom_texts
from tests.waiting import until

ZHAO, CHEN = "zhaoxiaoshou", "chenjingli"  # the demo's 赵销售 (sales) and 陈经理 (manager) WeCom ids


@pytest.fixture
async def wecom(db, settings):
    await load(db, settings)
    async with FakeWeCom() as fake:
        raw = {"wecom": {"corp_id": fake.corp_id, "agent_id": fake.agent_id, "secret": fake.secret,
                         "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": fake.base_url}}
        app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
        async with TestClient(TestServer(app)) as client:
            yield client, fake, CallbackDriver(TOKEN, AES_KEY, fake.corp_id, fake.agent_id)


async def test_scan_sign_approve_return_on_wecom(db, wecom):
    client, fake, driver = wecom
    said = lambda user: "\n".join(wecom_texts(fake, user))  # noqa: E731

    async def send(user: str, xml: str, expect: str) -> None:
        await wecom_post(client, driver, xml)
        await until(lambda: expect in said(user), f"{expect!r} for {user}")

    before = await balance(db, "RM-CREAM", "CR20261101")
    await send(ZHAO, driver.text_xml(ZHAO, "借货 C002", msg_id=9101), "还没有商品")
    await send(ZHAO, driver.text_xml(ZHAO, f"借货 C002 {CREAM} 2kg CR20261101", msg_id=9102),
               "必须扫码录入")  # typed on WeCom: refused, the fix names the app menu's 扫码
    t = int(time.time())
    await send(ZHAO, driver.scan_xml(ZHAO, f"(01)0{CREAM}(10)CR20261101", create_time=t),
               "扫码记录第 1 行：淡奶油 批次 CR20261101，现为 1kg")
    await send(ZHAO, driver.scan_xml(ZHAO, f"EAN_13,{CREAM}", create_time=t + 1),
               "扫码记录第 2 行：淡奶油，现为 1kg")  # no batch in the code: first to expire first
    async with db.read() as s:
        slip = (await s.scalars(select(Document).where(Document.type == "borrow", Document.status == "draft"))).one()
        lines = (await s.execute(select(DocumentLine.batch_code, DocumentLine.qty, DocumentLine.entry)
                                 .where(DocumentLine.document_id == slip.id).order_by(DocumentLine.line_no))).all()
    assert lines == [("CR20261101", Decimal(1), "scan"), ("", Decimal(1), "scan")]
    await send(ZHAO, driver.text_xml(ZHAO, "借货 改 2 3", msg_id=9103), "已把第 2 行改为 3kg")
    await send(ZHAO, driver.text_xml(ZHAO, f"签字 {slip.number}", msg_id=9104), "分钟内发送客户在借条")
    await send(ZHAO, driver.image_xml(ZHAO, fake.user_picture(JPEG), msg_id=9105), "已保存客户签字")
    async with db.read() as s:
        kept = (await s.execute(select(Attachment.kind, Attachment.platform)
                                .where(Attachment.document_id == slip.id))).all()
    assert kept == [("signature", "wecom")]
    await send(ZHAO, driver.text_xml(ZHAO, "借货 提交", msg_id=9106), "等待主管审批")
    await until(lambda: slip.number in said(CHEN), "the manager's card")
    await wecom_post(client, driver, driver.text_xml(CHEN, f"同意 {slip.number}", msg_id=9107))
    await until(lambda: "全部签核通过，已过账" in said(ZHAO), "the requester told of the approval")
    # 1 kg of the scanned batch and 3 kg first-to-expire, which is the same batch (the demo's later receipt of
    # cream expires after it)
    assert await balance(db, "RM-CREAM", "CR20261101") == (before[0] - 4, before[1] + 4)
    assert (await balance(db, "RM-CREAM"))[1] == 4
    await send(ZHAO, driver.text_xml(ZHAO, f"归还 {slip.number} {CREAM} 4kg", msg_id=9108), "已全部归还")
    assert await balance(db, "RM-CREAM", "CR20261101") == before and (await balance(db, "RM-CREAM"))[1] == 0
