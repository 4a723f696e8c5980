"""Help per role with one example each, 帮助 <命令>, and the closest command for a message none takes."""

from __future__ import annotations

import pytest

from handlers.help import not_understood
from handlers.registry import COMMANDS, suggest
from tests.chat import Chat, reply
from tests.factories import seed_chat_users


@pytest.fixture
async def chat(db, settings):
    await seed_chat_users(db, settings, manager=True)
    c = Chat(db, settings)
    yield c
    await c.close()


def test_every_command_has_an_example_or_takes_no_argument():
    for c in COMMANDS:
        assert c.example, f"{c.names[0]}: usage has no 例如：… ({c.usage})"


@pytest.mark.parametrize(("typed", "meant", "fixed"), [
    ("盘店 开始 CW", "盘点", "盘点 开始 CW"),   # one character wrong
    ("库存奶油", "库存", "库存 奶油"),            # no space between command and argument
    ("盘点提交", "盘点", "盘点 提交"),
    ("stok 奶油", "库存", "库存 奶油"),           # an English alias misspelt: the Chinese name is suggested
])
def test_suggest_finds_the_command_meant(typed, meant, fixed):
    found = suggest(typed)
    assert found is not None and found[0].names[0] == meant
    assert found[1] == fixed


def test_nothing_close_gets_the_plain_answer():
    assert suggest("今天天气怎么样") is None
    assert not_understood("今天天气怎么样").startswith("没有看懂「今天天气怎么样」。发送「帮助」")


async def test_a_misspelt_command_is_answered_with_the_one_meant(chat):
    body = reply(await chat.send("张库管", "盘店 开始 CW"), "张库管")["text"]
    assert "你是不是想用「盘点」？可以这样发：盘点 开始 CW" in body
    body = reply(await chat.send("张库管", "库存奶油"), "张库管")["text"]
    assert "你是不是想用「库存」？可以这样发：库存 奶油" in body


async def test_help_differs_by_role(chat):
    clerk = reply(await chat.send("张库管", "帮助"), "张库管")["text"]
    manager = reply(await chat.send("李经理", "帮助"), "李经理")["text"]
    assert "- 盘点 开始 CW — 开一张盘点单" in clerk
    assert "（你的角色：库管）" in clerk and "（你的角色：主管）" in manager
    restricted = [c for c in COMMANDS if c.roles and "manager" not in c.roles]
    for c in restricted:  # a command for other roles only is not listed for the manager
        assert not any(line.startswith(f"- {c.names[0]}") for line in manager.splitlines()), c.names


async def test_help_for_one_command(chat):
    body = reply(await chat.send("张库管", "帮助 盘点"), "张库管")["text"]
    assert body.startswith("**盘点**：") and "用法：盘点 开始 <仓库>" in body and "也可以发：count" in body
    body = reply(await chat.send("张库管", "帮助 盘店"), "张库管")["text"]
    assert body == "没有叫「盘店」的命令。你是不是想问「帮助 盘点」？"
