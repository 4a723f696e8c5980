"""Two instances (own connections to one database) deciding the same step at the same instant: one decision,
the other told who decided and when; each sees the final state."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from core.approvals import engine
from core.ledger.documents import get_document
from core.models import ApprovalEvent, ApprovalStep
from core.storage import Database
from tests.chat import Chat, reply
from tests.conftest import test_database_url
from tests.factories import line
from tests.test_approvals import AT, NOW, cream_on_hand, setup, submitted


def meet_at_the_lock(monkeypatch, db: Database, parties: int = 2) -> None:
    """On PostgreSQL, hold each decision inside its transaction until all `parties` have started theirs, so they
    really race for the document's row lock (on SQLite one write transaction holds the database lock anyway)."""
    if db.is_sqlite:
        return
    real, arrived, met = engine.get_document, [], asyncio.Event()

    async def meeting(session, number, *args, **kw):
        if kw.get("lock"):
            await session.execute(select(1))
            arrived.append(1)
            if len(arrived) == parties:
                met.set()
            await asyncio.wait_for(met.wait(), 10)
        return await real(session, number, *args, **kw)

    monkeypatch.setattr(engine, "get_document", meeting)


async def test_two_holders_of_the_role_on_two_instances_click_at_once_one_decides(db, settings, tmp_path,
                                                                                  monkeypatch):
    await setup(db, settings)
    number = await submitted(db, settings, "loss", [line("CREAM", 2, "kg")], warehouse="WH1")
    other = Database(test_database_url(tmp_path))
    first, second = Chat(db, settings, NOW), Chat(other, settings, NOW)
    try:
        meet_at_the_lock(monkeypatch, db)
        a, b = await asyncio.gather(first.send("陈经理", f"同意 {number}"), second.send("赵主管", f"同意 {number}"))
    finally:
        await first.close()
        await second.close()
        await other.dispose()
    answers = {"陈经理": reply(a, "陈经理"), "赵主管": reply(b, "赵主管")}
    won = [u for u, r in answers.items() if "全部签核通过，已过账" in (r.get("title") or "")]
    assert len(won) == 1, answers
    lost = next(u for u in answers if u not in won)
    assert f"{won[0]} 已于 {AT} 通过" in answers[lost]["text"], answers[lost]
    assert await cream_on_hand(db) == 10  # posted once: 12 − 2
    async with db.read() as s:
        assert (await get_document(s, number)).status == "posted"
        assert await s.scalar(select(func.count()).select_from(ApprovalEvent)
                              .where(ApprovalEvent.action == "posted")) == 1
        assert await s.scalar(select(func.count()).select_from(ApprovalStep)
                              .where(ApprovalStep.status == "approved")) == 1


async def test_three_signers_at_once_each_see_the_final_state(db, settings, tmp_path, monkeypatch):
    """The three roles of a sign-off approve at the same instant on three instances: exactly one posting, and
    afterwards every signer's 单据 shows it posted with all three signatures."""
    from tests.test_approvals import discrepancy

    await setup(db, settings)
    number = await discrepancy(db, settings)
    dbs = [db, *(Database(test_database_url(tmp_path)) for _ in range(2))]
    chats = [Chat(d, settings, NOW) for d in dbs]
    try:
        meet_at_the_lock(monkeypatch, db, parties=3)
        await asyncio.gather(*(c.send(u, f"同意 {number}") for c, u in zip(chats, ("张库管", "李采购", "王销售"),
                                                                             strict=True)))
        for c, u in zip(chats, ("张库管", "李采购", "王销售"), strict=True):
            body = reply(await c.send(u, f"单据 {number}"), u)["text"]
            assert "已过账" in body and body.count("通过") >= 3, body
    finally:
        for c in chats:
            await c.close()
        for d in dbs[1:]:
            await d.dispose()
    assert await cream_on_hand(db) == 10
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(ApprovalEvent)
                              .where(ApprovalEvent.action == "posted")) == 1
