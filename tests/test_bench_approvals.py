"""bench.approvals: a small run passes its own checks and reports its figures; the checks catch an undecided
sign-off, a missing and a double posting. Speed is not asserted."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select

from bench import approvals
from core.approvals.engine import Actor, decide
from core.messaging.people import by_name
from core.models import Approval, ApprovalEvent, Document, StockMove
from tests.conftest import PG_URL


def test_a_small_run_posts_every_document_once_and_reports_its_figures(capsys):
    argv = ["--docs", "3", "--warmup-docs", "1", "--senders", "3", "--json"]
    assert approvals.main(argv + (["--database-url", PG_URL] if PG_URL else [])) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["clicks"] == 9 and r["warmup_clicks"] == 3 and r["problems"] == []
    # all four documents (the warm-up one too) decided by the three approvers and posted exactly once
    assert r["approvals_approved"] == 4 and r["steps_approved"] == 12
    assert r["posted_events"] == 4 and r["discrepancy_moves"] == 4
    assert r["undecided"] == r["not_posted"] == r["posted_twice"] == r["wrong_stock"] == []
    assert r["card_updates_seen"] == 9 and r["card_updates_missing"] == 0 and r["errors"] == r["non_200"] == 0
    for key in ("clicks_per_s_acked", "clicks_per_s_until_all_posted", "click_ack_ms_p50", "click_ack_ms_p99",
                "card_update_ms_p50", "card_update_ms_p99", "bare_per_s", "store_per_s", "ratio"):
        assert isinstance(r[key], float) and r[key] > 0, key


async def test_the_checks_catch_undecided_unposted_and_double_posted_documents(db, settings):
    numbers = await approvals.seed(db, settings, 3)
    # nothing clicked yet: every sign-off undecided, nothing posted, stock still at the book quantity
    r = await approvals.verify(db, numbers)
    assert r["undecided"] == r["not_posted"] == numbers and r["posted_twice"] == []
    assert r["wrong_stock"] == ["P0000", "P0001", "P0002"]
    assert len(approvals.problems({**r, "errors": 0})) == 3

    async def sign(s, number, names):
        for name in names:
            await decide(s, settings, number, Actor(await by_name(s, name), "wecom", "test"), approve=True,
                         now=datetime.now(UTC))

    everyone = [name for name, _, _ in approvals.APPROVERS]
    await db.write(lambda s: sign(s, numbers[0], everyone))
    await db.write(lambda s: sign(s, numbers[1], everyone))
    await db.write(lambda s: sign(s, numbers[2], everyone[:2]))  # the sales approver has not clicked

    async def post_again(s):  # a second posting of the first document: its event and its stock move once more
        doc = await s.scalar(select(Document).where(Document.number == numbers[0]))
        move = await s.scalar(select(StockMove).where(StockMove.document_id == doc.id))
        event = await s.scalar(select(ApprovalEvent).join(Approval, Approval.id == ApprovalEvent.approval_id)
                               .where(Approval.document_id == doc.id, ApprovalEvent.action == "posted"))
        s.add(ApprovalEvent(approval_id=event.approval_id, action="posted", at=event.at))
        s.add(StockMove(document_id=doc.id, line_id=move.line_id, product_id=move.product_id,
                        warehouse_id=move.warehouse_id, batch_id=move.batch_id, qty=move.qty,
                        balance_after=move.balance_after - 2, posted_at=move.posted_at))

    await db.write(post_again)
    r = await approvals.verify(db, numbers)
    assert r["undecided"] == [numbers[2]] and r["not_posted"] == [numbers[2]]
    assert r["posted_twice"] == [numbers[0]] and r["wrong_stock"] == ["P0002"]  # P0000's cached balance was not touched
    found = approvals.problems({**r, "errors": 0})
    assert any("posted more than once" in p and numbers[0] in p for p in found)
    assert any("not decided" in p and numbers[2] in p for p in found)


def test_an_anomaly_is_reported_and_the_run_exits_non_zero(monkeypatch, capsys):
    real = approvals.verify

    async def double_posted(db, numbers):  # what verify would say had the document been posted twice
        r = await real(db, numbers)
        return {**r, "posted_twice": list(numbers)}

    monkeypatch.setattr(approvals, "verify", double_posted)
    argv = ["--docs", "1", "--warmup-docs", "0", "--senders", "3", "--json"]
    assert approvals.main(argv + (["--database-url", PG_URL] if PG_URL else [])) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["problems"] == [f"1 documents posted more than once ({json.loads(out)['posted_twice'][0]})"]
    assert "ANOMALY" in err and "posted more than once" in err
