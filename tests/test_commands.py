"""The 库存/stock and 帮助/help chat commands end to end through the console API, dispatcher and outbox."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.server import build_app
from cards.model import text
from core.models import User
from handlers.registry import COMMANDS, Sender, command
from tests.factories import line, post, seed_chat_users

MILK_WH1 = "> WH1 中央仓：可用 **72**瓶（在库 72，借出 0，预留 0）"
MILK_S01 = "> S01 一号门店：可用 **10**瓶（在库 10，借出 0，预留 0）"
BATCH_1101_WH1 = ">   批次 ML1101 到期 2031-05-10：48瓶"
BATCH_1201_WH1 = ">   批次 ML1201 到期 2031-06-01：24瓶"
BATCH_1101_S01 = ">   批次 ML1101 到期 2031-05-10：10瓶"

CLERK = Sender(0, "张库管", frozenset({"warehouse"}))


@pytest.fixture
async def client(db, settings):
    """seed_chat_users (12 kg cream in WH1, 张库管 warehouse, 李经理 manager), an admin, and milk in two batches:
    WH1 2 cases of ML1101 + 1 case of ML1201 (72 bottles), S01 10 bottles of ML1101."""
    await seed_chat_users(db, settings, manager=True)

    async def more(s) -> None:
        s.add(User(name="王管理", department="信息部", roles="admin"))
        await post(s, settings, "purchase_receipt",
                   [line("MILK", 2, "箱", batch="ML1101", expiry=date(2031, 5, 10)),
                    line("MILK", 1, "箱", batch="ML1201", expiry=date(2031, 6, 1))], warehouse="WH1", supplier="SUP1")
        await post(s, settings, "purchase_receipt", [line("MILK", 10, "瓶", batch="ML1101", expiry=date(2031, 5, 10))],
                   warehouse="S01", supplier="SUP1")

    await db.write(more)
    async with TestClient(TestServer(build_app(settings, db))) as c:
        yield c


async def say(client: TestClient, user: str, message: str) -> str:
    """Send as user through the console API and return the text of the bot's one reply to them."""
    before = (await (await client.get("/console/api/messages")).json())["last"]
    r = await client.post("/console/api/send", json={"user": user, "text": message})
    assert r.status == 202, await r.text()
    for _ in range(250):
        data = await (await client.get(f"/console/api/messages?after={before}")).json()
        bot = [m for m in data["messages"] if m["direction"] == "bot" and m["target"]["address"] == user]
        if bot:
            assert len(bot) == 1, bot
            return bot[0]["message"]["text"]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no reply to {message!r}")


async def test_aliases_answer_exactly_like_the_chinese_names(client):
    stock = await say(client, "张库管", "库存 牛奶")
    assert "牛奶**（MILK）" in stock and MILK_WH1 in stock
    for alias in ("stock 牛奶", "STOCK 牛奶", "查库存 牛奶"):
        assert await say(client, "张库管", alias) == stock, alias
    help_ = await say(client, "张库管", "帮助")
    assert "库存" in help_
    for alias in ("help", "Help", "?", "？"):
        assert await say(client, "张库管", alias) == help_, alias


@pytest.mark.parametrize("query", ["MILK", "6900000000028", "牛"])
async def test_lookup_by_sku_barcode_or_name_fragment(client, query):
    body = await say(client, "张库管", f"库存 {query}")
    assert body.startswith(f"**库存查询「{query}」**")
    assert "**牛奶**（MILK）" in body and MILK_WH1 in body and MILK_S01 in body
    assert "淡奶油" not in body and "白砂糖" not in body


async def test_a_fragment_lists_every_matching_product(client):
    body = await say(client, "张库管", "库存 奶")
    assert "**淡奶油**（CREAM）" in body and "**牛奶**（MILK）" in body
    assert "> WH1 中央仓：可用 **12**kg（在库 12，借出 0，预留 0）" in body
    assert "白砂糖" not in body


async def test_batches_are_listed_with_their_expiry_under_each_warehouse(client):
    body = await say(client, "张库管", "库存 MILK")
    lines = body.splitlines()
    wh1, s01 = lines.index(MILK_WH1), lines.index(MILK_S01)
    assert lines[wh1 + 1:wh1 + 3] == [BATCH_1101_WH1, BATCH_1201_WH1]  # earliest expiry first
    assert lines[s01 + 1] == BATCH_1101_S01
    assert "批次" not in await say(client, "张库管", "库存 CREAM")  # unbatched stock: no batch lines


@pytest.mark.parametrize("message", ["库存 牛奶 S01", "库存 牛奶 一号门店", "库存　牛奶　S01", "stock MILK   S01"])
async def test_warehouse_argument_restricts_the_answer(client, message):
    """By code or name; separated by full-width spaces (a Chinese input method) or several spaces too."""
    body = await say(client, "张库管", message)
    assert "（仓库 " in body.splitlines()[0]
    assert MILK_S01 in body and BATCH_1101_S01 in body
    assert "WH1" not in body and "中央仓" not in body and "ML1201" not in body


async def test_product_without_stock_in_the_warehouse_says_so(client):
    body = await say(client, "张库管", "库存 奶油 S02")
    assert "**淡奶油**（CREAM）" in body and "> 暂无库存记录" in body and "WH1" not in body


async def test_unknown_warehouse_names_the_warehouses_there_are(client):
    body = await say(client, "张库管", "库存 牛奶 WH9")
    assert body.startswith("找不到仓库「WH9」\n处理办法：")
    assert "S01 一号门店" in body and "S02 二号门店" in body and "WH1 中央仓" in body
    assert "不写仓库则查看全部仓库" in body
    assert "牛奶**" not in body


@pytest.mark.parametrize("message", ["库存", "stock", "库存   ", "库存　"])
async def test_empty_query_gets_a_usage_hint(client, message):
    body = await say(client, "张库管", message)
    assert body.startswith("请告诉我要查哪个商品\n处理办法：")
    assert "库存 <SKU|条码|名称片段> [仓库编码]" in body and "例如：库存 奶油" in body


async def test_no_match_says_what_to_try(client):
    body = await say(client, "张库管", "库存 不存在的东西")
    assert body.startswith("没有找到与「不存在的东西」匹配的商品\n处理办法：")
    assert "换个关键词" in body and "SKU" in body and "条码" in body


async def test_help_lists_every_command_the_sender_may_use_with_summary_and_one_example(client):
    body = await say(client, "张库管", "帮助")
    assert body.startswith("**张库管，你可以这样用 jxcbot：**（你的角色：库管）")
    assert {"库存", "帮助", "盘点", "待办"} <= {c.names[0] for c in COMMANDS}
    listed = {line.split()[1].split("（")[0] for line in body.splitlines() if line.startswith("- ")}
    assert listed == {c.names[0] for c in COMMANDS if c.allowed(CLERK)}
    for c in COMMANDS:
        if c.allowed(CLERK):  # each with one example and the start of its summary
            assert any(line.startswith("- ") and c.example.split("、")[0] in line and " — " in line
                       for line in body.splitlines()), c.names
    assert "- 库存 奶油 — " in body and "- 盘点 开始 CW — " in body
    assert "帮助 <命令>" in body


async def test_help_fits_one_wecom_app_message_even_for_an_admin(client):
    from cards.wecom import APP_MARKDOWN_LIMIT

    body = await say(client, "王管理", "帮助")  # every command
    assert len(("**jxcbot 帮助**\n" + body).encode()) <= APP_MARKDOWN_LIMIT, len(body.encode())


@pytest.fixture
def manager_command():
    """A command only managers may use (the built-in ones are open to everyone); removed afterwards."""
    calls: list[str] = []

    @command("测试审批", "testapprove", summary="测试用：审批单据", usage="测试审批 <单号>", roles=("manager",))
    async def approve(ctx, args):
        calls.append(ctx.sender.name)
        return [text(f"已审批 {args}")]

    yield calls
    COMMANDS[:] = [c for c in COMMANDS if c.run is not approve]


async def test_a_sender_without_the_role_gets_the_role_message_and_nothing_runs(client, manager_command):
    body = await say(client, "张库管", "测试审批 CG001")
    assert body == "「测试审批」需要以下角色之一：主管。如需开通请联系管理员。"  # the role as users know it
    assert await say(client, "张库管", "testapprove CG001") == body
    assert manager_command == []
    assert await say(client, "李经理", "测试审批 CG001") == "已审批 CG001"
    assert await say(client, "王管理", "测试审批 CG002") == "已审批 CG002"  # admin may use every command
    assert manager_command == ["李经理", "王管理"]


async def test_help_shows_only_what_the_roles_allow_and_counts_the_rest(client, manager_command):
    clerk = await say(client, "张库管", "帮助")
    assert "测试审批" not in clerk
    hidden = [c for c in COMMANDS if not c.allowed(CLERK)]
    assert clerk.splitlines()[-1].startswith(f"另有 {len(hidden)} 个命令需要其他角色（")
    assert "主管" in clerk.splitlines()[-1]
    manager = await say(client, "李经理", "帮助")
    assert "- 测试审批 — 测试用" in manager
    full = await say(client, "李经理", "帮助 测试审批")
    assert "用法：测试审批 <单号>" in full and "也可以发：testapprove" in full


def test_roles_are_named_in_chinese_in_a_fixed_order():
    from core.models.masters import roles_zh

    assert roles_zh({"admin", "manager"}) == "主管、管理员"
    assert roles_zh(["sales", "warehouse", "purchasing"]) == "库管、采购、销售"
    assert roles_zh({"auditor"}) == "auditor"  # an unknown code stays readable
