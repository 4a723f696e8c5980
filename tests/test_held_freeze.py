"""A posting the magnitude guard holds freezes its product + warehouse even when the handler's whole unit of work
rolls back (the dispatcher writes the freeze after the rollback): nothing posted, the pair frozen, the error told."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.ledger.documents import create_document, post_document, submit_document
from core.models import Freeze, StockMove
from handlers.registry import COMMANDS, command
from tests.chat import Chat, reply
from tests.factories import line, post, seed


@pytest.fixture
def raw_receipt():
    """A command that posts a receipt straight through core and lets a refusal propagate (as 收货 or 退货 do)."""

    @command("测试入库", summary="测试用", usage="测试入库 <数量>", writes=True)
    async def receive(ctx, args):
        doc = await create_document(ctx.unit, ctx.settings, "purchase_receipt", [line("CREAM", args, "kg")],
                                    warehouse="WH1", supplier="SUP1")
        await submit_document(ctx.unit, ctx.settings, doc, ctx.now)
        await post_document(ctx.unit, ctx.settings, doc, ctx.now)
        return []

    yield
    COMMANDS[:] = [c for c in COMMANDS if c.run is not receive]


async def test_a_held_posting_freezes_its_pair_though_the_handler_rolled_back(db, settings, raw_receipt):
    async def history(s) -> None:
        await seed(s)
        for _ in range(3):  # the guard needs some history: the largest movement is 10 kg
            await post(s, settings, "purchase_receipt", [line("CREAM", 10, "kg")], warehouse="WH1", supplier="SUP1")

    await db.write(history)
    chat = Chat(db, settings)
    try:
        said = reply(await chat.send("张库管", "测试入库 5000"), "张库管")["text"]  # 5 t: grams typed as kg
    finally:
        await chat.close()
    assert "远超历史最大单笔" in said
    async with db.read() as s:
        assert len(list(await s.scalars(select(StockMove.id)))) == 3  # nothing of it posted
        frozen = list(await s.scalars(select(Freeze).where(Freeze.active.is_(True))))
    assert len(frozen) == 1 and "数量异常暂扣" in frozen[0].reason
