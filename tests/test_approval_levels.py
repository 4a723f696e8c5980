"""A purchase request above `[approvals.purchase_request] second_above` needs finance too, after the manager."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType

import pytest

from core.config import ConfigError, load_config
from core.ledger.doctypes import MANAGER
from core.ledger.documents import get_document
from core.models import User
from tests.chat import Chat, reply
from tests.factories import line
from tests.test_approvals import NOW, setup, submitted


def _config(tmp_path, body: str):
    path = tmp_path / "jxcbot.toml"
    path.write_text(body, encoding="utf-8")
    return load_config(path, env={})


def test_second_above_is_read_and_checked(tmp_path):
    s = _config(tmp_path, "[approvals.purchase_request]\nsecond_above = 5000\n")
    policy = s.approvals["purchase_request"]
    assert policy.roles == ("manager",) and policy.second_above == Decimal(5000)
    assert policy.roles_for(Decimal("5000")) == (("manager",), False)
    assert policy.roles_for(Decimal("5000.01")) == (("manager", "finance"), True)
    for bad in ("-1", '"很多"', "true"):
        with pytest.raises(ConfigError) as e:
            _config(tmp_path, f"[approvals.purchase_request]\nsecond_above = {bad}\n")
        assert "second_above" in str(e.value) and "不小于 0 的金额" in str(e.value)
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, '[approvals.purchase_request]\nsecond_roles = ["boss"]\n')
    assert "second_roles" in str(e.value) and "finance" in str(e.value)


def test_no_second_level_by_default():
    from core.approvals.policy import policy_for
    from core.config import Settings

    assert policy_for(Settings(), "purchase_request").roles_for(Decimal(10**9)) == (("manager",), False)


@pytest.fixture
async def chat(db, settings):
    await setup(db, settings)

    async def finance(s) -> None:
        s.add(User(name="钱财务", roles="finance", department="财务部"))

    await db.write(finance)
    c = Chat(db, settings, NOW)
    yield c
    await c.close()


def _levels(settings):
    """Settings where a purchase request above 1,000 also needs finance."""
    levels = replace(MANAGER, second_above=Decimal(1000))
    return replace(settings, approvals=MappingProxyType({"purchase_request": levels}))


async def test_a_large_request_goes_to_finance_after_the_manager(db, settings, chat):
    chat.d.settings = levels = _levels(settings)
    number = await submitted(db, levels, "purchase_request", [line("CREAM", 50, "kg", unit_price="45")],
                             warehouse="WH1", supplier="SUP1")
    assert not [r for r in await chat.send("钱财务", "待办") if r["kind"] == "card"]  # the manager signs first
    refused = reply(await chat.send("钱财务", f"同意 {number}"), "钱财务")["text"]
    assert "主管" in refused
    rows = await chat.send("陈经理", f"同意 {number}")
    assert any(r["to"] == "钱财务" and r["kind"] == "card" and number in r["text"] for r in rows)
    async with db.read() as s:
        assert (await get_document(s, number)).status == "submitted"
    await chat.send("钱财务", f"同意 {number}")
    async with db.read() as s:
        assert (await get_document(s, number)).status == "posted"


async def test_a_small_request_needs_only_the_manager(db, settings, chat):
    chat.d.settings = levels = _levels(settings)
    number = await submitted(db, levels, "purchase_request", [line("CREAM", 10, "kg", unit_price="45")],
                             warehouse="WH1", supplier="SUP1")
    await chat.send("陈经理", f"同意 {number}")
    async with db.read() as s:
        assert (await get_document(s, number)).status == "posted"
