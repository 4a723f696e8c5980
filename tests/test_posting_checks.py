"""Each posting check, in order, and that a failed posting changes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.errors import DomainError
from core.ledger.documents import create_document, post_document, submit_document
from core.ledger.freeze import freeze, unfreeze
from core.models import Document, FreezeEvent, Product, StockBalance, StockMove, Warehouse
from tests.factories import line, post, seed

D = Decimal


async def on_hand(session, sku: str, wh: str) -> Decimal:
    stmt = (
        select(func.coalesce(func.sum(StockBalance.qty), 0))
        .join(Product, Product.id == StockBalance.product_id)
        .join(Warehouse, Warehouse.id == StockBalance.warehouse_id)
        .where(Product.sku == sku, Warehouse.code == wh)
    )
    return D(await session.scalar(stmt))


async def move_count(session) -> int:
    return await session.scalar(select(func.count()).select_from(StockMove))


async def test_receipt_and_issue_update_balance_and_moves(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", "12.5", "kg")], warehouse="WH1", supplier="SUP1")
        doc = await post(s, settings, "sales_issue", [line("CREAM", 2, "kg")], warehouse="WH1", customer="C2")
        assert await on_hand(s, "CREAM", "WH1") == D("10.5")
        moves = list(await s.scalars(select(StockMove).order_by(StockMove.id)))
        assert [m.qty for m in moves] == [D("12.5"), D(-2)]
        assert [m.balance_after for m in moves] == [D("12.5"), D("10.5")]
        assert doc.status == "posted" and doc.number.startswith("CK")


async def test_purchase_unit_converts_and_must_be_whole(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("MILK", 2, "箱", batch="B1")], warehouse="WH1")
        assert await on_hand(s, "MILK", "WH1") == D(48)
        with pytest.raises(DomainError) as e:
            await create_document(s, settings, "purchase_receipt", [line("MILK", "1.5", "箱", batch="B1")],
                                  warehouse="WH1")
        assert e.value.code == "UNIT_NOT_WHOLE" and "整数" in e.value.message_zh
        with pytest.raises(DomainError) as e:
            await create_document(s, settings, "sales_issue", [line("MILK", "2.5", "瓶")], warehouse="WH1")
        assert e.value.code == "UNIT_NOT_WHOLE"


@pytest.mark.parametrize(("unit", "code"), [(None, "UNIT_MISSING"), ("", "UNIT_MISSING"), ("g", "UNIT_UNKNOWN")])
async def test_blank_or_unknown_unit_is_an_error_never_the_smallest_unit(db, settings, unit, code):
    async with db.session() as s:
        await seed(s)
        with pytest.raises(DomainError) as e:
            await create_document(s, settings, "opening", [line("CREAM", 5, unit)], warehouse="WH1")
        assert e.value.code == code
        assert "kg" in e.value.fix_zh
        assert await s.scalar(select(func.count()).select_from(Document)) == 0


async def test_factor_changed_after_draft_fails_unit_check(db, settings):
    async with db.session() as s:
        await seed(s)
        doc = await create_document(s, settings, "purchase_receipt", [line("SUGAR", 2, "袋")], warehouse="WH1")
        await submit_document(s, settings, doc)
        (await s.scalar(select(Product).where(Product.sku == "SUGAR"))).purchase_factor = 20
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "UNIT_FACTOR_CHANGED"


async def test_unapproved_opening_blocks_then_counts_once_approved(db, settings):
    async with db.session() as s:
        await seed(s)
        opening = await create_document(s, settings, "opening", [line("CREAM", 10, "kg")], warehouse="WH1")
        await submit_document(s, settings, opening)
        doc = await create_document(s, settings, "purchase_receipt", [line("CREAM", 1, "kg")], warehouse="WH1")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "OPENING_NOT_APPROVED" and opening.number in e.value.fix_zh
        assert await move_count(s) == 0
        await post_document(s, settings, opening)
        await post_document(s, settings, doc)
        assert await on_hand(s, "CREAM", "WH1") == D(11)


async def test_loose_mode_turns_opening_check_into_review_flag(db, settings):
    loose = replace(settings, validation={**settings.validation, "purchase_receipt": "loose"})
    async with db.session() as s:
        await seed(s)
        opening = await create_document(s, loose, "opening", [line("CREAM", 10, "kg")], warehouse="WH1")
        await submit_document(s, loose, opening)
        doc = await create_document(s, loose, "purchase_receipt", [line("CREAM", 1, "kg")], warehouse="WH1")
        await submit_document(s, loose, doc)
        result = await post_document(s, loose, doc)
        assert doc.status == "posted" and doc.needs_review
        assert [w.code for w in result.warnings] == ["OPENING_NOT_APPROVED"]


async def test_pending_loss_locks_product_warehouse(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 10, "kg")], warehouse="WH1")
        loss = await create_document(s, settings, "loss", [line("CREAM", 1, "kg")], warehouse="WH1")
        await submit_document(s, settings, loss)
        issue = await create_document(s, settings, "sales_issue", [line("CREAM", 1, "kg")], warehouse="WH1")
        await submit_document(s, settings, issue)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, issue)
        assert e.value.code == "PENDING_LOCK" and loss.number in e.value.message_zh
        # other warehouses are not locked
        await post(s, settings, "purchase_receipt", [line("CREAM", 3, "kg")], warehouse="S02")
        await post_document(s, settings, loss)  # the pending document itself may post
        await post_document(s, settings, issue)
        assert await on_hand(s, "CREAM", "WH1") == D(8)


async def test_negative_stock_strict_warehouse_refused_and_nothing_changes(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 3, "kg")], warehouse="WH1")
        before = await move_count(s)
        doc = await create_document(s, settings, "sales_issue", [line("CREAM", 5, "kg")], warehouse="WH1")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert await move_count(s) == before
        assert await on_hand(s, "CREAM", "WH1") == D(3)
    assert e.value.code == "NEGATIVE_STOCK"
    assert e.value.fields["needed"] == "5" and "缺 2kg" in e.value.message_zh


async def test_failed_posting_in_committed_state_leaves_balances(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 3, "kg")], warehouse="WH1")
        doc = await create_document(s, settings, "sales_issue", [line("CREAM", 5, "kg")], warehouse="WH1")
        await submit_document(s, settings, doc)
        number = doc.number
    async def attempt(session):
        from core.ledger.documents import get_document
        await post_document(session, settings, await get_document(session, number))
    with pytest.raises(DomainError):
        await db.write(attempt)
    async with db.read() as s:
        assert await on_hand(s, "CREAM", "WH1") == D(3)
        assert await move_count(s) == 1
        assert (await s.scalar(select(Document).where(Document.number == number))).status == "submitted"


async def test_negative_floor_of_a_warehouse_that_allows_negatives(db, settings):
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "sales_issue", [line("CREAM", 4, "kg")], warehouse="S01")
        assert await on_hand(s, "CREAM", "S01") == D(-4)
        doc = await create_document(s, settings, "sales_issue", [line("CREAM", 2, "kg")], warehouse="S01")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "NEGATIVE_FLOOR"


async def test_freeze_blocks_until_unfrozen_and_logs_events(db, settings):
    async with db.session() as s:
        await seed(s)
        p = await s.scalar(select(Product).where(Product.sku == "CREAM"))
        w = await s.scalar(select(Warehouse).where(Warehouse.code == "WH1"))
        await freeze(s, p.id, w.id, "期初单位错误")
        await freeze(s, p.id, w.id, "再次触发")
        doc = await create_document(s, settings, "purchase_receipt", [line("CREAM", 1, "kg")], warehouse="WH1")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "FROZEN"
        # smallest scope: the same product elsewhere is not frozen
        await post(s, settings, "purchase_receipt", [line("CREAM", 1, "kg")], warehouse="S02")
        await unfreeze(s, "CREAM", "WH1", actor="admin", note="单位已修正")
        await post_document(s, settings, doc)
        events = [e.event for e in await s.scalars(select(FreezeEvent).order_by(FreezeEvent.id))]
        assert events == ["freeze", "trigger", "unfreeze"]
        with pytest.raises(DomainError):
            await unfreeze(s, "CREAM", "WH1", actor="admin")


async def test_named_expired_batch_refused_and_fefo_skips_expired(db, settings):
    today = date.today()
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt",
                   [line("MILK", 24, "瓶", batch="OLD", expiry=today + timedelta(days=1)),
                    line("MILK", 24, "瓶", batch="NEW", expiry=today + timedelta(days=20)),
                    line("MILK", 24, "瓶", batch="MID", expiry=today + timedelta(days=10))], warehouse="WH1")
        from core.models import Batch
        (await s.scalar(select(Batch).where(Batch.code == "OLD"))).expiry = today - timedelta(days=1)
        await s.flush()
        doc = await create_document(s, settings, "sales_issue", [line("MILK", 2, "瓶", batch="OLD")],
                                    warehouse="WH1")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "BATCH_EXPIRED"
        await post(s, settings, "sales_issue", [line("MILK", 30, "瓶")], warehouse="WH1")
        rows = dict((await s.execute(
            select(Batch.code, StockBalance.qty).join(Batch, Batch.id == StockBalance.batch_id)
            .where(Batch.code != "")
        )).all())
        assert rows == {"OLD": D(24), "MID": D(0), "NEW": D(18)}


async def test_expired_stock_cannot_be_sold_when_only_expired_left(db, settings):
    today = date.today()
    async with db.session() as s:
        await seed(s)
        li = line("MILK", 24, "瓶", batch="B", expiry=today + timedelta(days=5))
        await post(s, settings, "purchase_receipt", [li], warehouse="WH1")
        from core.models import Batch
        (await s.scalar(select(Batch).where(Batch.code == "B"))).expiry = today - timedelta(days=3)
        doc = await create_document(s, settings, "sales_issue", [line("MILK", 1, "瓶")], warehouse="WH1")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "NEGATIVE_STOCK"
        # scrapping the expired batch is allowed
        await post(s, settings, "loss", [line("MILK", 24, "瓶", batch="B")], warehouse="WH1")


async def test_magnitude_guard_holds_g_vs_kg_mistake(db, settings):
    async with db.session() as s:
        await seed(s)
        for q in (10, 12, 8):
            await post(s, settings, "purchase_receipt", [line("CREAM", q, "kg")], warehouse="WH1")
        doc = await create_document(s, settings, "purchase_receipt", [line("CREAM", 5000, "kg")], warehouse="WH1")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "MAGNITUDE_GUARD" and "g 与 kg" in e.value.fix_zh
        assert doc.status == "submitted"
        await post(s, settings, "purchase_receipt", [line("CREAM", 900, "kg")], warehouse="WH1")


async def test_checks_run_in_documented_order(db, settings):
    """A frozen pair with insufficient stock reports the negative-stock check first."""
    async with db.session() as s:
        await seed(s)
        p = await s.scalar(select(Product).where(Product.sku == "CREAM"))
        w = await s.scalar(select(Warehouse).where(Warehouse.code == "WH1"))
        await freeze(s, p.id, w.id, "测试")
        doc = await create_document(s, settings, "sales_issue", [line("CREAM", 1, "kg")], warehouse="WH1")
        await submit_document(s, settings, doc)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "NEGATIVE_STOCK"
        from core.ledger.diagnose import diagnose_document
        diag = await diagnose_document(s, settings, doc.number)
        assert [f.code for f in diag.failures] == ["NEGATIVE_STOCK", "FROZEN"]
        assert all(f.fix_zh for f in diag.failures)


async def test_double_post_is_refused(db, settings):
    async with db.session() as s:
        await seed(s)
        doc = await post(s, settings, "purchase_receipt", [line("CREAM", 1, "kg")], warehouse="WH1")
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc)
        assert e.value.code == "BAD_STATUS"
        assert await move_count(s) == 1


async def test_backdating_refused_by_default(db, settings):
    from datetime import UTC, datetime
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 5, "kg")], warehouse="WH1")
        past = datetime(2025, 1, 1, tzinfo=UTC)
        doc = await create_document(s, settings, "sales_issue", [line("CREAM", 1, "kg")], warehouse="WH1", now=past)
        await submit_document(s, settings, doc, now=past)
        with pytest.raises(DomainError) as e:
            await post_document(s, settings, doc, now=past)
        assert e.value.code == "BACKDATED"
        allowing = replace(settings, allow_backdating=True)
        await post_document(s, allowing, doc, now=past)


async def test_a_posting_a_moment_behind_the_last_move_is_not_backdating(db, settings):
    """Concurrent postings take their time before the pair's lock: one may find a move committed a few seconds
    'later'. Within BACKDATING_GRACE that is accepted; beyond it, refused."""
    from datetime import UTC, datetime, timedelta

    from core.ledger.checks import BACKDATING_GRACE

    now = datetime.now(UTC)
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 5, "kg")], warehouse="WH1", now=now)
        for behind, ok in ((timedelta(seconds=3), True), (BACKDATING_GRACE + timedelta(minutes=1), False)):
            at = now - behind
            doc = await create_document(s, settings, "sales_issue", [line("CREAM", 1, "kg")], warehouse="WH1", now=at)
            await submit_document(s, settings, doc, now=at)
            if ok:
                await post_document(s, settings, doc, now=at)
            else:
                with pytest.raises(DomainError) as e:
                    await post_document(s, settings, doc, now=at)
                assert e.value.code == "BACKDATED"


async def test_integrity_sweep_freezes_only_the_broken_pair(db, settings):
    from sqlalchemy import update

    from core.ledger.freeze import sweep_integrity
    from core.models import Freeze
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 5, "kg"), line("SUGAR", 2, "袋")], warehouse="WH1")
        cream = await s.scalar(select(Product.id).where(Product.sku == "CREAM"))
        await s.execute(update(StockBalance).where(StockBalance.product_id == cream).values(qty=D(-5000)))
        found = await sweep_integrity(s)
        assert [(a.product_id, "不一致" in a.reason) for a in found] == [(cream, True)]
        frozen = list(await s.scalars(select(Freeze).where(Freeze.active.is_(True))))
        assert [(f.product_id) for f in frozen] == [cream]
        doc = await create_document(s, settings, "purchase_receipt", [line("SUGAR", 1, "袋")], warehouse="WH1")
        await submit_document(s, settings, doc)
        await post_document(s, settings, doc)  # the other product in the same warehouse still works


async def test_integrity_sweep_finds_each_kind_of_anomaly_and_nothing_else(db, settings):
    """On-hand and on-loan sums checked per batch, a balance without moves, a negative balance in a strict warehouse
    (its moves agree) — each found once; the consistent pairs are left alone."""
    from sqlalchemy import update

    from core.ledger.freeze import sweep_integrity
    from core.models import Batch, Document, StockMove, Warehouse
    async with db.session() as s:
        await seed(s)
        await post(s, settings, "purchase_receipt", [line("CREAM", 5, "kg"), line("SUGAR", 2, "袋")], warehouse="WH1")
        await post(s, settings, "purchase_receipt", [line("CREAM", 3, "kg")], warehouse="S01")
        assert await sweep_integrity(s) == []
        ids = {p.sku: p.id for p in await s.scalars(select(Product))}
        wh = {w.code: w.id for w in await s.scalars(select(Warehouse))}
        batch = await s.scalar(select(Batch.id).where(Batch.product_id == ids["SUGAR"]))
        await s.execute(update(StockBalance).where(StockBalance.product_id == ids["SUGAR"]).values(on_loan=D(1)))
        s.add(StockBalance(product_id=ids["MILK"], warehouse_id=wh["S02"], batch_id=batch, qty=D(3)))
        doc = await s.scalar(select(Document.id).limit(1))
        # CREAM in WH1 driven below zero by a move the balance follows: agreeing, but negative in a strict warehouse
        s.add(StockMove(document_id=doc, product_id=ids["CREAM"], warehouse_id=wh["WH1"],
                        batch_id=await s.scalar(select(StockBalance.batch_id).where(
                            StockBalance.product_id == ids["CREAM"], StockBalance.warehouse_id == wh["WH1"])),
                        bucket="stock", qty=D(-7), balance_after=D(-2)))
        await s.execute(update(StockBalance).where(StockBalance.product_id == ids["CREAM"],
                                                   StockBalance.warehouse_id == wh["WH1"]).values(qty=D(-2)))
        await s.flush()
        found = {(a.product_id, a.warehouse_id): a.reason for a in await sweep_integrity(s)}
    assert set(found) == {(ids["SUGAR"], wh["WH1"]), (ids["MILK"], wh["S02"]), (ids["CREAM"], wh["WH1"])}
    assert "不一致" in found[(ids["SUGAR"], wh["WH1"])] and "不一致" in found[(ids["MILK"], wh["S02"])]
    assert "负数" in found[(ids["CREAM"], wh["WH1"])]  # CREAM in S01 (3 kg, agreeing) is not listed
