"""诊断 and 解冻 in chat: the same core and words as `jxcbot diagnose`; bad input named; managers only for 解冻."""

from __future__ import annotations

import pytest

from core.importer import load_demo
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
    posted = await say(chat, "王库管", "诊断 QC" + "0" * 11)
    assert "QC00000000000" in posted  # an unknown number is named


async def test_bad_input_names_what_to_write(chat):
    assert "不是单据号" in await say(chat, "王库管", "诊断 RM-CREAM")
    assert "仓库" in await say(chat, "王库管", "诊断 RM-CREAM XX")
    assert "需要一个单据号，或商品和仓库两项" in await say(chat, "王库管", "诊断")
    assert "没有处于冻结状态" in await say(chat, "陈经理", "解冻 RM-CREAM CW 试一下")
    assert "需要商品、仓库和说明" in await say(chat, "陈经理", "解冻 RM-CREAM CW")
