"""The daily reminders: an overdue borrow slip to its author, a sign-off pending too long to its approvers; once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from cards.parts import split_message
from core.approvals.engine import Actor, submit_for_approval
from core.ledger.documents import create_document, post_document, submit_document
from core.messaging.outbound import Outbound
from core.messaging.people import by_name
from core.models import OutboxMessage, User
from jobs.registry import JOBS
from jobs.runner import Deps, run_job
from tests.factories import line, post, seed

NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


async def setup(db, settings) -> tuple[str, str, str]:
    async def work(s) -> tuple[str, str, str]:
        await seed(s)
        s.add_all([User(name="赵销售", roles="sales", department="销售部"),
                   User(name="陈经理", roles="manager", department="运营")])
        await post(s, settings, "purchase_receipt", [line("CREAM", 12, "kg")], warehouse="WH1", supplier="SUP1")
        slips = []
        today = NOW.astimezone(settings.timezone).date()  # due dates are local days (UTC's date differs after 16:00)
        for due in (today - timedelta(days=2), today + timedelta(days=5)):
            doc = await create_document(s, settings, "borrow", [line("CREAM", 1, "kg")], warehouse="WH1",
                                        customer="C2", created_by="赵销售", due_date=due)
            await submit_document(s, settings, doc)
            await post_document(s, settings, doc)
            slips.append(doc.number)
        clerk = await by_name(s, "张库管")
        numbers = []
        for hours in (30, 1):
            loss = await create_document(s, settings, "loss", [line("SUGAR" if hours == 1 else "CREAM", 1, "kg")],
                                         warehouse="WH1", created_by="张库管")
            await submit_for_approval(s, settings, loss, Actor(clerk, "console", "t"), NOW - timedelta(hours=hours))
            numbers.append(loss.number)
        return slips[0], numbers[0], numbers[1]

    return await db.write(work)


async def test_overdue_slips_and_stale_sign_offs_are_reminded_once_a_day(db, settings):
    overdue, stale, fresh = await setup(db, settings)
    deps = Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: NOW)
    period = f"{NOW.astimezone(settings.timezone):%Y-%m-%d}"
    done = await run_job(JOBS["reminders"], period, deps)
    assert done.ok and done.result == "逾期借条 1 张，超时签核 1 步", done
    async with db.read() as s:
        rows = {r.dedupe_key: (json.loads(r.target)["address"], json.loads(r.message)["text"])
                for r in await s.scalars(select(OutboxMessage))}
    texts = {to: body for to, body in rows.values()}
    assert set(texts) == {"赵销售", "陈经理"}
    assert overdue in texts["赵销售"] and "已逾期 2 天" in texts["赵销售"] and "淡奶油 1kg" in texts["赵销售"]
    assert stale in texts["陈经理"] and "已 30 小时" in texts["陈经理"] and fresh not in texts["陈经理"]
    assert all(k.startswith(f"job:reminders:{period}:") for k in rows)
    again = await run_job(JOBS["reminders"], period, Deps(db, settings, Outbound(split_message), owner="u",
                                                          clock=lambda: NOW))
    assert not again.ran
