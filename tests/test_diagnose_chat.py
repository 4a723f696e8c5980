"""诊断 and 解冻 in chat: the same core and words as `jxcbot diagnose`; bad input named; managers only for 解冻."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.importer import load_demo
from core.models import Document
from tests.chat import Chat, reply


@pytest.fixture
async def chat(db, settings):
    await db.write(lambda s: load_demo(s, settings))
    c = Chat(db, settings)
    yield c
    await c.close()


async def say(chat, user: str, text: str) -> str:
    return reply(await chat.send(user, text), user)["text"]


async def test_a_pairs_three_books_and_a_posted_documents_answer(chat):
    pick = await say(chat, "王库管", "诊断 奶油 CW")  # a fragment matching two products: the pick list
    assert "1. 奶油奶酪（RM-CHEESE）→ 诊断 RM-CHEESE CW" in pick and "诊断 RM-CREAM CW" in pick
    books = await say(chat, "王库管", "诊断 淡奶油 CW")
    assert "诊断 淡奶油（RM-CREAM）@ CW" in books and "库存账：在库" in books and "三账一致" in books
    async with chat.db.read() as s:
        receipt = await s.scalar(select(Document.number).where(Document.type == "purchase_receipt",
                                                               Document.status == "posted").limit(1))
    posted = await say(chat, "王库管", f"诊断 {receipt.lower()}")  # the number in any case
    assert f"诊断 {receipt}（采购入库，已过账）" in posted and "该单据已过账，无需过账检查" in posted
    assert "找不到单据 QC00000000000" in await say(chat, "王库管", "诊断 QC" + "0" * 11)  # an unknown number named


async def test_bad_input_names_what_to_write(chat):
    assert "不是单据号" in await say(chat, "王库管", "诊断 RM-CREAM")
    assert "找不到仓库「XX」" in await say(chat, "王库管", "诊断 RM-CREAM XX")  # the product is there: only the
    assert "没有找到与「NOPE」匹配的商品" in await say(chat, "王库管", "诊断 NOPE CW")  # warehouse named, and back
    assert "找不到仓库「XX」" in await say(chat, "陈经理", "解冻 RM-CREAM XX 试一下")
    assert "需要一个单据号，或商品和仓库两项" in await say(chat, "王库管", "诊断")
    assert "没有处于冻结状态" in await say(chat, "陈经理", "解冻 RM-CREAM CW 试一下")
    assert "需要商品、仓库和说明" in await say(chat, "陈经理", "解冻 RM-CREAM CW")
