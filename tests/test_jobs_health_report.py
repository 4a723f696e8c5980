"""The monthly health report against a hand-computed November, its plan tasks, 改进计划, and the weekly reminder."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from cards.parts import split_message
from core.config import ConfigError, load_config
from core.ledger.borrow import ReturnWant, post_return, return_rates
from core.ledger.documents import create_document, post_document
from core.messaging.outbound import Outbound
from core.models import DocumentLine, HealthPlan, OutboxMessage, Product, User
from core.reports.health import health_report
from jobs.registry import JOBS
from jobs.runner import Deps, run_job
from tests.chat import Chat, reply
from tests.factories import line, seed
from tests.ledger_history import dated

RUN = date(2026, 12, 5)


def at(settings, day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), settings.timezone)


async def scanned(s, number_or_doc, scanned_lines: set[int]) -> None:
    """Mark lines (by line_no) of a document as entered by scan, the rest as typed."""
    doc_id = number_or_doc.id
    await s.execute(update(DocumentLine).where(DocumentLine.document_id == doc_id).values(entry="text"))
    if scanned_lines:
        await s.execute(update(DocumentLine).where(DocumentLine.document_id == doc_id,
                                                   DocumentLine.line_no.in_(scanned_lines)).values(entry="scan"))


async def november(db, settings) -> None:
    """仓储部 (张库管): RK receipt, QT other issue of 3 lines (2 scanned), a draft QT, discrepancies closed in 10 h and
    100 h and one still open → closure 4/6, scan 2/3, p90 100 h → 48/100 = 0.48, no loans:
    (30 × 2/3 + 30 × 2/3 + 25 × 0.48) / 85 × 100 = 61.2.
    销售部 (赵销售): a sales issue (2 lines scanned), JH1 10 kg due 11-10 (6 back 11-09, 4 back 11-12), JH2 due in
    December, JH3 4 kg due 11-30 never returned (typed); all 6 documents posted → closure 1, scan 4/5, return
    6/14 → (30 + 24 + 15 × 6/14) / 75 × 100 = 80.6. 管理部 (陈经理): one receipt posted → 100."""

    async def work(s) -> None:
        await seed(s)
        s.add_all([User(name="王主管", department="仓储部", roles="manager,warehouse"),
                   User(name="赵销售", department="销售部", roles="sales"),
                   User(name="陈经理", department="管理部", roles="manager"),
                   Product(sku="FLOUR", name="面粉", category="原料", stock_unit="kg", purchase_unit="kg")])
        await s.flush()
        sales = await s.scalar(select(User).where(User.name == "赵销售"))
        cream = await s.scalar(select(Product).where(Product.sku == "CREAM"))

        def nov(day: int, hour: int = 10) -> datetime:
            return at(settings, date(2026, 11, day), hour)

        async def slip(day: int, qty: int, due: date, scan: bool):
            doc = await dated(s, settings, "borrow", [line("CREAM", qty, "kg")], nov(day), warehouse="WH1",
                              customer="C2", created_by="赵销售", due_date=due)
            await scanned(s, doc, {1} if scan else set())
            return doc

        await dated(s, settings, "purchase_receipt", [line("CREAM", 100, "kg"), line("SUGAR", 50, "kg")], nov(1, 8),
                    warehouse="WH1", supplier="SUP1", created_by="张库管")
        jh1 = await slip(1, 10, date(2026, 11, 10), True)
        await dated(s, settings, "purchase_receipt", [line("FLOUR", 10, "kg")], nov(2), warehouse="WH1",
                    supplier="SUP1", created_by="陈经理")
        await slip(3, 4, date(2026, 11, 30), False)
        qt = await dated(s, settings, "other_issue", [line("CREAM", 1, "kg"), line("SUGAR", 1, "kg"),
                                                      line("CREAM", 1, "kg")], nov(4), warehouse="WH1",
                         created_by="张库管")
        await scanned(s, qt, {1, 2})
        ck = await dated(s, settings, "sales_issue", [line("CREAM", 1, "kg"), line("SUGAR", 1, "kg")], nov(5),
                         warehouse="WH1", customer="C2", created_by="赵销售")
        await scanned(s, ck, {1, 2})
        await create_document(s, settings, "other_issue", [line("SUGAR", 1, "kg")], warehouse="WH1",
                              created_by="张库管", now=nov(6))
        await post_return(s, settings, jh1.number, [ReturnWant(cream, Decimal(6))], sales.id, nov(9))
        cy1 = await dated(s, settings, "discrepancy", [line("SUGAR", -1, "kg")], nov(10), post=False,
                          warehouse="WH1", created_by="张库管")
        await post_document(s, settings, cy1, now=nov(10, 20))  # 10 h
        cy2 = await dated(s, settings, "discrepancy", [line("SUGAR", -1, "kg")], nov(12), post=False,
                          warehouse="WH1", created_by="张库管")
        await post_return(s, settings, jh1.number, [ReturnWant(cream, Decimal(4))], sales.id, nov(12, 11))
        await slip(15, 5, date(2026, 12, 10), True)
        await post_document(s, settings, cy2, now=nov(16, 14))  # 100 h
        await dated(s, settings, "discrepancy", [line("SUGAR", -1, "kg")], nov(20), post=False, warehouse="WH1",
                    created_by="张库管")  # still open

    await db.write(work)


def now_(settings) -> datetime:
    return at(settings, RUN, 9).replace(minute=3).astimezone(UTC)


async def test_the_metrics_and_scores_match_the_hand_computed_month(db, settings):
    await november(db, settings)
    async with db.read() as s:
        report = await health_report(s, settings, date(2026, 11, 1), now_(settings))
        overall = await return_rates(s, settings.timezone, date(2026, 11, 1), date(2026, 11, 30), RUN)
    rows = {r.department: r for r in report.departments}
    assert [r.department for r in report.departments] == ["仓储部", "销售部", "管理部"]  # lowest score first
    wh, sales, mgmt = rows["仓储部"], rows["销售部"], rows["管理部"]
    assert (wh.documents, wh.closed, wh.scan_lines, wh.scanned) == (6, 4, 3, 2)
    assert sorted(wh.hours) == [10, 100] and (wh.median_hours, wh.p90_hours, wh.open_discrepancies) == (55, 100, 1)
    assert wh.metrics["discrepancy"] == Decimal("0.48") and wh.metrics["borrow"] is None
    assert wh.score == Decimal("61.2")
    assert (sales.documents, sales.closed, sales.scan_lines, sales.scanned) == (6, 6, 5, 4)
    assert (sales.borrow.lent, sales.borrow.on_time, sales.borrow.late, sales.borrow.slips) == (14, 6, 4, 2)
    assert sales.metrics["discrepancy"] is None and sales.score == Decimal("80.6")
    assert (mgmt.documents, mgmt.closed, mgmt.score) == (1, 1, Decimal("100.0"))
    assert (overall.overall.lent, overall.overall.on_time) == (sales.borrow.lent, sales.borrow.on_time)
    assert [r.department for r in report.below()] == ["仓储部", "销售部"]


async def _rows(db) -> list[tuple[str, str, str]]:
    async with db.read() as s:
        return [(r.dedupe_key, json.loads(r.target)["address"], json.loads(r.message)["text"])
                for r in await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]


async def test_the_report_and_plan_tasks_go_once_and_the_plan_is_submitted_and_reminded(db, settings):
    await november(db, settings)
    deps = Deps(db, settings, Outbound(split_message), owner="t", clock=lambda: now_(settings))
    assert JOBS["health_report"].period(at(settings, RUN, 9)) == "2026-11"
    done = await run_job(JOBS["health_report"], "2026-11", deps)
    assert done.ok and done.result == "3 个部门，低于 85 分：仓储部 61.2、销售部 80.6", done
    rows = await _rows(db)
    report = [t for k, to, t in rows if k.startswith("job:health_report:2026-11:report")]
    assert len(report) == 1
    assert "**仓储部：61.2 分**（低于 85，需提交改进计划）" in report[0]
    assert ("单据闭环率 66.7%（4/6）；扫码执行率 66.7%（2/3 行）；"
            "差异闭环时长 中位 55.0h / P90 100.0h（2 张），未闭环 1 张") in report[0]
    assert "借货归还率 42.9%（2 张到期借条）" in report[0] and "**管理部：100.0 分**" in report[0]
    assert "权重：单据闭环率 30、扫码执行率 30、差异闭环时长 25、借货归还率 15" in report[0]
    tasks = sorted((k.split(":plan:")[1].split(">")[0], to) for k, to, t in rows if ":plan:" in k)
    assert tasks == [("仓储部", "王主管"), ("销售部", "王主管"), ("销售部", "陈经理")]  # 销售部 has no head: managers
    told = next(t for k, to, t in rows if ":plan:仓储部" in k)
    assert "仓储部 在 2026-11 库存健康度诊断中得 61.2 分" in told and "改进计划 <内容>" in told
    again = await run_job(JOBS["health_report"], "2026-11", Deps(db, settings, Outbound(split_message), owner="u",
                                                                 clock=lambda: now_(settings)))
    assert not again.ran and len(await _rows(db)) == len(rows)

    week = JOBS["health_plan_reminder"].period(at(settings, date(2026, 12, 7), 9))
    remind = await run_job(JOBS["health_plan_reminder"], week, deps)
    assert remind.result == "催交 2 份改进计划"
    chat = Chat(db, settings, at=now_(settings) + timedelta(days=3))
    try:
        listed = reply(await chat.send("王主管", "改进计划"), "王主管")["text"]
        assert "仓储部：2026-11 库存健康度诊断 61.2 分" in listed
        assert "销售部：2026-11" in listed  # a manager writes the plan of a department without a head
        todo = [r["text"] for r in await chat.send("王主管", "待办") if r["to"] == "王主管"]
        assert todo == ["你目前没有待签核的单据。",
                        "待提交的改进计划：仓储部 2026-11（61.2 分）；销售部 2026-11（80.6 分）。发送：改进计划 <内容>"]
        body = reply(await chat.send("王主管", "改进计划 出库一律扫码"), "王主管")["text"]
        assert "2 份改进计划待提交" in body  # two owed: which one?
        body = reply(await chat.send("王主管", "改进计划 仓储部 出库一律扫码，差异单 48 小时内闭环"), "王主管")["text"]
        assert body == "已提交 仓储部 2026-11 的改进计划，主管会收到通知。"
        todo = [r["text"] for r in await chat.send("王主管", "待办") if r["to"] == "王主管"]
        assert todo[1:] == ["待提交的改进计划：销售部 2026-11（80.6 分）。发送：改进计划 <内容>"]  # submitted: gone
        body = reply(await chat.send("赵销售", "改进计划 我们会改"), "赵销售")["text"]
        assert "你目前没有需要提交的改进计划" in body  # 销售部 has no head: a manager writes it
    finally:
        await chat.close()
    async with db.read() as s:
        plans = {p.department: p for p in await s.scalars(select(HealthPlan))}
    assert plans["仓储部"].plan == "出库一律扫码，差异单 48 小时内闭环" and plans["仓储部"].submitted_at is not None
    assert plans["销售部"].submitted_at is None and plans["销售部"].head_id is None
    next_week = JOBS["health_plan_reminder"].period(at(settings, date(2026, 12, 14), 9))
    before = len(await _rows(db))
    remind = await run_job(JOBS["health_plan_reminder"], next_week, deps)
    assert remind.result == "催交 1 份改进计划"
    new = (await _rows(db))[before:]
    assert {to for _, to, _ in new} == {"王主管", "陈经理"} and all("销售部" in t for _, _, t in new)


def test_health_weights_are_checked(tmp_path):
    cfg = tmp_path / "jxcbot.toml"
    cfg.write_text("[health]\nweights = { closure = 50, scan = 30, discrepancy = 20, borrow = 0 }\nthreshold = 80\n",
                   encoding="utf-8")
    s = load_config(cfg, env={})
    assert dict(s.health_weights) == {"closure": 50, "scan": 30, "discrepancy": 20, "borrow": 0}
    assert s.health_threshold == 80
    for body, says in (("weights = { closure = 50 }", "权重之和必须是 100（现在是 120"),
                       ("weights = { clsure = 30 }", "未知的指标「clsure」"),
                       ("threshold = 120", "[health] threshold"),
                       ("weight = 1", "[health] weight")):
        cfg.write_text(f"[health]\n{body}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r".*") as e:
            load_config(cfg, env={})
        assert says in str(e.value) and "第 2 行" in str(e.value)
