"""Approvals through the whole server against the local WeCom and DingTalk fakes: evidence photos sent as platform
picture messages (WeCom MediaId → media/get, DingTalk downloadCode → robot/messageFiles/download) and the
three-party sign-off of a count discrepancy by encrypted / signed card clicks, with the card updates observed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.server import build_app
from core.ledger.documents import create_document, get_document, submit_document
from core.models import ApprovalEvent, Attachment, Document, User
from tests.factories import line, post, seed
from tests.fakes.dingtalk import FakeDingTalk, signed_callback
from tests.fakes.wecom import CallbackDriver, FakeWeCom
from tests.waiting import until

TOKEN = "jxcbotTestToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8  # JPEG magic: the evidence check reads the content, not the name
CARD_SECRET = "card-secret"


async def _seed(db, settings) -> None:
    async def work(s) -> None:
        await seed(s)  # 张库管: warehouse, WeCom "zhang"
        s.add_all([User(name="李采购", roles="purchasing", dingtalk_staff_id="li01"),
                   User(name="王销售", roles="sales", wecom_user_id="wang"),
                   User(name="赵销售", roles="sales", dingtalk_staff_id="zhao01")])
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")

    await db.write(work)


async def discrepancy_without_photo(db, settings, by: str = "张库管") -> str:
    """A count of 10 kg cream in WH1 (book 12) by `by`: its discrepancy, the line typed, no photo yet."""

    async def work(s) -> str:
        count = await create_document(s, settings, "stock_count", [line("CREAM", 0, "kg", counted_qty=10)],
                                      warehouse="WH1", created_by=by)
        await submit_document(s, settings, count, datetime.now(UTC))
        number = (await s.scalars(select(Document.number).where(Document.type == "discrepancy")
                                  .order_by(Document.id.desc()))).first()
        doc = await get_document(s, number)
        for ln in doc.lines:
            ln.discrepancy_type = "客户借货未还"
        return doc.number

    return await db.write(work)


@pytest.fixture
async def server(db, settings):
    """One server serving WeCom and DingTalk (with interactive cards), both pointed at their fakes."""
    await _seed(db, settings)
    async with FakeWeCom() as wecom, FakeDingTalk() as dingtalk:
        raw = {"wecom": {"corp_id": wecom.corp_id, "agent_id": wecom.agent_id, "secret": wecom.secret,
                         "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": wecom.base_url},
               "dingtalk": {"app_key": dingtalk.app_key, "app_secret": dingtalk.app_secret,
                            "robot_code": dingtalk.robot_code, "api_base": dingtalk.url, "oapi_base": dingtalk.url,
                            "card_callback_token": CARD_SECRET, "card_template_id": "tpl.approval",
                            "card_callback_route_key": "jxcbot", "public_url": "https://bot.example.com"}}
        app = build_app(replace(settings, raw=MappingProxyType(raw)), db)
        async with TestClient(TestServer(app)) as client, aiohttp.ClientSession() as http:
            # DingTalk would call the public URL; here it is this server's loopback address
            dingtalk.callbacks["jxcbot"]["url"] = str(client.make_url(f"/dingtalk/card-callback?token={CARD_SECRET}"))
            yield client, wecom, dingtalk, CallbackDriver(TOKEN, AES_KEY, wecom.corp_id, wecom.agent_id), http


async def wecom_post(client, driver, xml: str) -> None:
    params, body = driver.post(xml)
    r = await client.post("/wecom/callback", params=params, data=body)
    assert r.status == 200, await r.text()


async def dingtalk_post(client, fake, payload: dict) -> None:
    headers, body = signed_callback(payload, fake.app_secret)
    r = await client.post("/dingtalk/callback", headers=headers, data=body)
    assert r.status == 200, await r.text()


def wecom_texts(fake: FakeWeCom, user: str) -> list[str]:
    out = []
    for m in fake.messages:
        if m["touser"] == user:
            body = m[m["msgtype"]]
            out.append(body.get("content") or body.get("sub_title_text") or str(body))
    return out


async def photos(db, number: str) -> list[Attachment]:
    async with db.read() as s:
        doc = await get_document(s, number)
        return list((await s.execute(select(Attachment).where(Attachment.document_id == doc.id))).scalars())


async def test_a_wecom_picture_after_evidence_is_downloaded_by_media_id_and_kept(server, db, settings):
    client, wecom, _dingtalk, driver, _http = server
    number = await discrepancy_without_photo(db, settings)
    await wecom_post(client, driver, driver.text_xml("zhang", f"凭证 {number}", msg_id=8101))
    await until(lambda: any("凭证照片" in t for t in wecom_texts(wecom, "zhang")), "the 凭证 answer")
    media_id = wecom.user_picture(JPEG)
    await wecom_post(client, driver, driver.image_xml("zhang", media_id, msg_id=8102))
    await until(lambda: any("已保存凭证照片" in t for t in wecom_texts(wecom, "zhang")), "the photo kept")
    [photo] = await photos(db, number)
    assert (photo.sha256, photo.content_type, photo.platform) == (hashlib.sha256(JPEG).hexdigest(), "image/jpeg",
                                                                 "wecom")
    assert ("/cgi-bin/media/get", 0) in wecom.log


async def test_a_dingtalk_picture_after_evidence_is_downloaded_by_download_code_and_kept(server, db, settings):
    client, _wecom, dingtalk, _driver, _http = server
    number = await discrepancy_without_photo(db, settings, by="李采购")
    await dingtalk_post(client, dingtalk, dingtalk.text_message(f"凭证 {number}", staff_id="li01", msg_id="dp-1"))
    await until(lambda: any("凭证照片" in str(s.payload) for s in dingtalk.sent), "the 凭证 answer")
    code = dingtalk.user_picture(JPEG)
    await dingtalk_post(client, dingtalk, dingtalk.picture_message(code, staff_id="li01", msg_id="dp-2"))
    await until(lambda: any("已保存凭证照片" in str(s.payload) for s in dingtalk.sent), "the photo kept")
    [photo] = await photos(db, number)
    assert (photo.sha256, photo.platform) == (hashlib.sha256(JPEG).hexdigest(), "dingtalk")
    assert any(path == "/v1.0/robot/messageFiles/download" for _t, _m, path in dingtalk.calls)


async def test_a_picture_that_cannot_be_downloaded_is_answered_and_nothing_is_kept(server, db, settings):
    client, wecom, _dingtalk, driver, _http = server
    number = await discrepancy_without_photo(db, settings)
    await wecom_post(client, driver, driver.text_xml("zhang", f"凭证 {number}", msg_id=8201))
    await until(lambda: any("凭证照片" in t for t in wecom_texts(wecom, "zhang")), "the 凭证 answer")
    await wecom_post(client, driver, driver.image_xml("zhang", "expired-media-id", msg_id=8202))
    await until(lambda: any("图片下载失败" in t for t in wecom_texts(wecom, "zhang")), "the failure answer")
    assert await photos(db, number) == []


def wecom_cards(fake: FakeWeCom, user: str) -> list[dict]:
    """The button cards message/send delivered to `user`, in order."""
    return [m["template_card"] for m in fake.messages if m["touser"] == user and m["msgtype"] == "template_card"]


def dingtalk_card(fake: FakeDingTalk, staff_id: str):
    """The interactive card delivered to `staff_id` 1:1 (the last one)."""
    return [c for c in fake.cards.values() if c.space_type == "IM_ROBOT" and c.space_id == staff_id][-1]


def key_of(buttons: list[dict], label: str = "同意") -> str:
    return next(b["key"] if "key" in b else b["action"] for b in buttons if b.get("text") == label)


async def test_a_discrepancy_signed_by_clicks_on_wecom_and_dingtalk_every_card_updated_and_posted(server, db,
                                                                                                  settings):
    """The seed's 账实不符 step 4 through both platforms: 张库管 sends the photo on WeCom, the sign-off cards go
    to each role's holders (WeCom app cards, DingTalk interactive cards), three clicks — an encrypted
    template_card_event, a DingTalk card callback, and a WeCom click on a card sent afresh — decide it, every copy
    is updated on the fakes after each decision, and the third approval posts the difference once."""
    client, wecom, dingtalk, driver, http = server
    number = await discrepancy_without_photo(db, settings)
    await wecom_post(client, driver, driver.text_xml("zhang", f"凭证 {number}", msg_id=8301))
    await until(lambda: any("凭证照片" in t for t in wecom_texts(wecom, "zhang")), "the 凭证 answer")
    await wecom_post(client, driver, driver.image_xml("zhang", wecom.user_picture(JPEG), msg_id=8302))
    await until(lambda: wecom_cards(wecom, "zhang") and wecom_cards(wecom, "wang") and len(
        [c for c in dingtalk.cards.values() if c.space_type == "IM_ROBOT"]) >= 2, "the sign-off cards")
    wang, zhang = wecom_cards(wecom, "wang")[-1], wecom_cards(wecom, "zhang")[-1]
    li, zhao = dingtalk_card(dingtalk, "li01"), dingtalk_card(dingtalk, "zhao01")
    assert [b["text"] for b in json.loads(zhao.params["buttons"])] == ["同意", "驳回"]

    # 1. 王销售 clicks 同意 on WeCom: the click's own code updates his card; every other copy is updated too.
    code = wecom.click("wang", wang["task_id"])
    click = driver.card_click_xml("wang", wang["task_id"], key_of(wang["button_list"]), code,
                                  create_time=1_800_000_001)
    for _ in range(3):  # WeCom retries the callback it thinks went unanswered: one decision
        await wecom_post(client, driver, click)
    await until(lambda: len(zhao.history) >= 2 and len(li.history) >= 2 and len(wecom.updates) >= 2,
                "the copies updated after the first decision")
    assert wecom.response_codes[code].used
    assert "王销售" in wecom.card_views[(wang["task_id"], "wang")].replace_name  # greyed out with the decision
    assert "王销售 已以「销售」身份通过" in zhao.params["title"] and zhao.params["buttons"] == "[]"  # same role
    assert "销售：已通过 王销售" in li.params["content"] and json.loads(li.params["buttons"])  # purchasing: to sign
    zhang_view = wecom.card_views[(zhang["task_id"], "zhang")]
    assert "销售：已通过 王销售" in zhang_view.card["sub_title_text"] and zhang_view.card["button_list"]

    # 2. 李采购 clicks 同意 on his DingTalk card (the card callback): his card is updated by its outTrackId;
    #    张库管's WeCom code is used up now, so his copy comes as a fresh card with the buttons.
    li_key = key_of(json.loads(li.params["buttons"]))
    for _ in range(2):  # the same click delivered twice: one decision
        status, _ = await dingtalk.click(http, li.out_track_id, "li01", li_key)
        assert status == 200
    await until(lambda: "李采购 已以「采购」身份通过" in li.params["title"] and len(wecom_cards(wecom, "zhang")) >= 2,
                "the copies updated after the second decision")
    assert li.params["buttons"] == "[]" and "采购：已通过 李采购" in zhao.params["content"]
    fresh = wecom_cards(wecom, "zhang")[-1]
    assert fresh["task_id"] != zhang["task_id"] and "采购：已通过 李采购" in fresh["sub_title_text"]

    # 3. 张库管 clicks the fresh card: the third approval posts; every card shows it.
    code = wecom.click("zhang", fresh["task_id"])
    await wecom_post(client, driver, driver.card_click_xml("zhang", fresh["task_id"], key_of(fresh["button_list"]),
                                                           code, create_time=1_800_000_003))
    await until(lambda: "已过账" in zhao.params["title"] and "已过账" in li.params["title"]
                and wecom.response_codes[code].used, "the final state on every card")
    assert "已过账" in (wecom.card_views[(fresh["task_id"], "zhang")].replace_name or "")
    async with db.read() as s:
        doc = await get_document(s, number)
        trail = (await s.execute(select(ApprovalEvent.action, ApprovalEvent.platform, User.name)
                                 .join(User, User.id == ApprovalEvent.user_id, isouter=True)
                                 .where(ApprovalEvent.action == "approve").order_by(ApprovalEvent.id))).all()
    assert doc.status == "posted"
    assert trail == [("approve", "wecom", "王销售"), ("approve", "dingtalk", "李采购"), ("approve", "wecom", "张库管")]
